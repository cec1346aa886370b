"""Small pieces every batch command shares: slide discovery, summaries, exit codes.

Streams: stdout carries only machine-readable results (``--json``); progress, tables, warnings
and errors for people go to stderr, so ``slidestream tile ... --json | jq`` always parses.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from slidestream.errors import ConfigError

if TYPE_CHECKING:  # command modules stay cheap to import: the stages load when a command runs
    from slidestream.io import SlideEntry
    from slidestream.pipeline.batch import BatchResult

# Logs and CI captures are not terminals; give them room instead of Rich's 80-column default.
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)

JsonOpt = Annotated[bool, typer.Option("--json", help="Also print the results as JSON on stdout (the table stays on stderr).")]


def print_error(message: object) -> None:
    """``error <message>`` on stderr; the message is user text (paths, YAML snippets): never markup."""
    err_console.print(f"[red]error[/red] {escape(str(message))}", soft_wrap=True, highlight=False)


def print_warning(message: object) -> None:
    err_console.print(f"[yellow]warning[/yellow] {escape(str(message))}", soft_wrap=True, highlight=False)


def finite(value: float | None) -> float | None:
    """Typer callback for every float option: ``inf`` and ``nan`` parse as floats but mean nothing."""
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"must be a finite number, got {value}")
    return value


def prepare_out(out: Path) -> Path:
    """The output folder, created and proven writable, or exit 2 with what is wrong with it."""
    try:
        from slidestream.pipeline.manifest import check_output_folder

        return check_output_folder(out)
    except ConfigError as exc:
        print_error(exc)
        raise typer.Exit(2) from None


def collect_slides(inputs: list[Path]) -> list[Path]:
    """Expand CLI inputs; a run with nothing to do is an error, not a silent success."""
    return [entry.path for entry in collect_entries(inputs)]


def collect_entries(inputs: list[Path]) -> list[SlideEntry]:
    """Slides (with per-slide mpp from CSV lists); missing inputs stay in, to fail as rows."""
    from slidestream.io import SlideEntry, find_slide_entries

    missing = [SlideEntry(p) for p in inputs if not _exists(p)]
    notes: list[str] = []
    try:
        entries = find_slide_entries([p for p in inputs if _exists(p)], notes=notes)
    except (ValueError, OSError) as exc:
        print_error(exc)
        raise typer.Exit(2) from None
    for note in notes:
        print_warning(note)
    if not entries and not missing:
        print_error(f"no slide files found in {', '.join(map(str, inputs))}")
        raise typer.Exit(2)
    return entries + missing


def _exists(path: Path) -> bool:
    """True for anything there, a broken or looping symlink too (it fails as its own row)."""
    return path.exists() or path.is_symlink()


def batch_json(result: BatchResult, command: str) -> dict[str, Any]:
    """The machine-readable form of a batch: counts, then one record per slide (no tracebacks)."""
    return {
        "command": command,
        "summary": {status: result.count(status) for status in ("ok", "skipped", "failed", "busy")},
        "exit_code": result.exit_code,
        "slides": [{k: v for k, v in o.row().items() if k != "traceback"} for o in result.outcomes],
    }


def print_json(data: Any) -> None:
    """``data`` as JSON on stdout (paths and numpy scalars as strings/numbers)."""
    typer.echo(json.dumps(data, indent=2, default=lambda v: v.item() if hasattr(v, "item") else str(v)))


def print_summary(result: BatchResult, title: str, columns: list[str] | None = None, *,
                  as_json: bool = False, command: str | None = None) -> None:
    """Per-slide table (ok / skipped / failed with reason) and one summary line on stderr; with
    ``as_json`` also the results as JSON on stdout."""
    if as_json:
        print_json(batch_json(result, command or title))
    from rich.table import Table

    columns = columns or []
    table = Table(title=title, show_lines=False)
    table.add_column("slide", no_wrap=True)
    table.add_column("status")
    for col in columns:
        table.add_column(col, justify="right")
    table.add_column("seconds", justify="right")
    table.add_column("reason", overflow="ellipsis", no_wrap=True, max_width=60)
    colour = {"ok": "green", "skipped": "yellow", "failed": "red", "busy": "magenta"}
    for o in result.outcomes:
        table.add_row(escape(o.path.name), f"[{colour[o.status]}]{o.status}[/]",
                      *[escape(_fmt(o.details.get(c))) for c in columns], f"{o.seconds:.2f}", escape(o.reason))
    err_console.print(table)
    for o in result.failed + result.busy:
        err_console.print(f"[red]{o.status}[/red] {escape(str(o.path))}: {escape(o.reason)}", soft_wrap=True,
                          highlight=False)
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
        print_warning(f"run report not written: {type(exc).__name__}: {exc}")
        return
    err_console.print(f"report: {escape(str(path))}", highlight=False, soft_wrap=True)
