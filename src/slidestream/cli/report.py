"""``slidestream report``: one HTML page about a run folder, to look at rather than read logs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from slidestream.cli._app import app
from slidestream.cli._common import err_console, print_error


@app.command("report")
def report_command(
    out: Annotated[Path, typer.Argument(help="Run folder (the --out of tile/extract/...): manifest.csv and <slide_id>.zarr stores.")],
    open_browser: Annotated[bool, typer.Option("--open", help="Open the report in the default browser.")] = False,
) -> None:
    """Write OUT/report/index.html: per-slide pictures and numbers, failures, timings, configuration."""
    from slidestream.viz.report import open_report, write_report

    if not out.is_dir():
        print_error(f"{out} is not a folder")
        raise typer.Exit(2)
    try:
        path = write_report(out)
    except FileNotFoundError as exc:
        print_error(exc)
        raise typer.Exit(2) from exc
    err_console.print(f"report: {path}", soft_wrap=True, markup=False, highlight=False)
    if open_browser and not open_report(path):
        err_console.print("[yellow]no browser found[/yellow]; open the file above by hand")
