"""Small pieces every batch command shares: slide discovery, summaries, exit codes."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console

if TYPE_CHECKING:  # command modules stay cheap to import: the stages load when a command runs
    from slidestream.io import SlideEntry
    from slidestream.pipeline.batch import BatchResult

# Logs and CI captures are not terminals; give them room instead of Rich's 80-column default.
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)


def collect_slides(inputs: list[Path]) -> list[Path]:
    """Expand CLI inputs; a run with nothing to do is an error, not a silent success."""
    return [entry.path for entry in collect_entries(inputs)]


def collect_entries(inputs: list[Path]) -> list[SlideEntry]:
    """Slides (with per-slide mpp from CSV lists); missing inputs stay in, to fail as rows."""
    from slidestream.io import SlideEntry, find_slide_entries

    missing = [SlideEntry(p) for p in inputs if not p.exists()]
    try:
        entries = find_slide_entries([p for p in inputs if p.exists()])
    except ValueError as exc:
        err_console.print(f"[red]error[/red] {exc}")
        raise typer.Exit(2) from exc
    if not entries and not missing:
        err_console.print(f"[red]error[/red] no slide files found in {', '.join(map(str, inputs))}")
        raise typer.Exit(2)
    return entries + missing


def print_summary(result: BatchResult, title: str, columns: list[str] | None = None) -> None:
    """Per-slide table (ok / skipped / failed with reason), then one summary line."""
    from rich.table import Table

    columns = columns or []
    table = Table(title=title, show_lines=False)
    table.add_column("slide", no_wrap=True)
    table.add_column("status")
    for col in columns:
        table.add_column(col, justify="right")
    table.add_column("seconds", justify="right")
    table.add_column("reason", overflow="ellipsis", no_wrap=True, max_width=60)
    colour = {"ok": "green", "skipped": "yellow", "failed": "red"}
    for o in result.outcomes:
        table.add_row(o.path.name, f"[{colour[o.status]}]{o.status}[/]",
                      *[_fmt(o.details.get(c)) for c in columns], f"{o.seconds:.2f}", o.reason)
    err_console.print(table)
    for o in result.failed:
        err_console.print(f"[red]failed[/red] {o.path}: {o.reason}", soft_wrap=True)
    err_console.print(f"[bold]{result.summary_line()}[/bold]")


def _fmt(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def write_run_report(out: Path) -> None:
    """Refresh ``OUT/report/index.html`` after a batch; a report problem never fails the batch."""
    try:
        from slidestream.viz.report import write_report

        path = write_report(out)
    except Exception as exc:  # the batch's result stands whatever happens to its picture book
        err_console.print(f"[yellow]warning[/yellow] run report not written: {type(exc).__name__}: {exc}")
        return
    err_console.print(f"report: {path}")
