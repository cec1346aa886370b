"""``slidestream info``: what is in these slide files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from slidestream.cli._app import app
from slidestream.cli._common import collect_slides, print_summary


@app.command("info")
def info(
    paths: Annotated[list[Path], typer.Argument(help="Slide files, folders (walked), or .txt/.csv slide lists.")],
    as_json: Annotated[bool, typer.Option("--json", help="Also print a JSON array of records on stdout (the table stays on stderr).")] = False,
    backend: Annotated[str, typer.Option(help="auto, openslide, tiffslide, wsidicom (DICOM) or czi.")] = "auto",
) -> None:
    """Dimensions, levels, mpp, objective power and vendor of each slide."""
    from slidestream.io import open_slide
    from slidestream.pipeline.batch import run_batch

    slides = collect_slides(paths)
    records: list[dict] = []

    def describe(path: Path) -> dict:
        with open_slide(path, backend=backend) as slide:  # type: ignore[arg-type]
            record = slide.info()
        records.append(record)
        return {"mpp": record["mpp_x"], "levels": record["level_count"], "backend": record["backend"]}

    result = run_batch(slides, describe, description="info", show_progress=False)
    if as_json:
        typer.echo(json.dumps(records, indent=2))
    print_summary(result, "slides", columns=["backend", "levels", "mpp"])
    raise typer.Exit(result.exit_code)
