"""``slidestream verify``: is every store in a run folder intact? (``--repair`` recomputes what is not.)"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from slidestream.cli._app import app
from slidestream.cli._common import err_console


@app.command("verify")
def verify_command(
    out: Annotated[Path, typer.Argument(help="Run folder of <slide_id>.zarr stores (or one store).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the verdict as JSON on stdout.")] = False,
    repair: Annotated[bool, typer.Option("--repair", help="Recompute damaged nodes from the slide files the stores record.")] = False,
    quick: Annotated[bool, typer.Option("--quick", help="Metadata and chunk presence only: skip decoding every chunk's checksum.")] = False,
    device: Annotated[str, typer.Option(help="Device for recomputing features with --repair.")] = "cpu",
) -> None:
    """Check checksums, shapes, row alignment, completion and provenance of every store; exit 1 if any is damaged."""
    from slidestream.store.verify import store_paths, summary_json, verify_out

    if not out.exists():
        err_console.print(f"[red]error[/red] {escape(str(out))}: no such folder")
        raise typer.Exit(2)
    if not store_paths(out):
        err_console.print(f"[red]error[/red] {escape(str(out))}: no <slide_id>.zarr stores to verify")
        raise typer.Exit(2)
    checks = verify_out(out, deep=not quick)
    damaged = [c for c in checks if c.damaged]
    unrepaired = len(damaged)
    if repair and damaged:
        from slidestream.pipeline.repair import repair_store

        unrepaired = 0
        for check in damaged:
            result = repair_store(check, device=device)
            for line in result.problems + ([i.text() for i in result.after.issues] if result.after else []):
                err_console.print(f"[red]not repaired[/red] {escape(check.path.name)}: {escape(line)}", soft_wrap=True)
            if result.ok:
                err_console.print(f"[green]repaired[/green] {escape(check.path.name)}: recomputed "
                                  f"{escape(', '.join(result.recomputed) or 'nothing')}", soft_wrap=True)
            else:
                unrepaired += 1
        checks = verify_out(out, deep=not quick)
    if as_json:
        typer.echo(summary_json(checks))
    for check in checks:
        for issue in check.issues:
            err_console.print(f"[red]damaged[/red] {escape(str(check.path))}: {escape(issue.text())}", soft_wrap=True)
        for warning in check.warnings:
            err_console.print(f"[yellow]warning[/yellow] {escape(str(check.path))}: {escape(warning.text())}",
                              soft_wrap=True)
    still = sum(1 for c in checks if c.damaged)
    repaired = f" ({len(damaged) - unrepaired} repaired, {unrepaired} not fully)" if repair and damaged else ""
    err_console.print(f"[bold]{len(checks)} stores, {len(checks) - still} intact, {still} damaged{repaired}[/bold]")
    raise typer.Exit(1 if still or (repair and unrepaired) else 0)
