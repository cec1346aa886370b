"""``slidestream heatmap``: pictures and QuPath GeoJSON of stored per-tile scores.

Draws whatever ``tile_scores/<name>`` holds: MIL attention written by ``slidestream predict
--heatmaps`` (a colour ramp), PANTHER prototype ids written by ``slide-encode --method panther``
(a prototype map). Only thumbnails are read, so re-styling a cohort's heatmaps takes seconds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from slidestream.cli._app import app
from slidestream.cli._common import JsonOpt, err_console, print_error, print_summary
from slidestream.pipeline.batch import BatchResult, run_batch

STYLE_NORMALIZE = ("percentile", "minmax", "none")


def draw_maps(
    stores: list[Path],
    name: str,
    out: Path,
    *,
    slides_dir: Path | None = None,
    max_size: int = 1024,
    geojson: bool = True,
    **style: object,
) -> BatchResult:
    """One PNG (+ GeoJSON) per store into ``out``; a store that fails is a row, not a crash."""
    from slidestream.store import SlideStore
    from slidestream.viz.heatmap import write_score_maps

    def one(path: Path) -> dict:
        return write_score_maps(
            SlideStore.open(path),
            name,
            out,
            geojson=geojson,
            max_size=max_size,
            slides_dir=slides_dir,
            **style,
        )

    return run_batch(stores, one, description=f"maps {name}", show_progress=False)


def store_paths(stores: Path) -> list[Path]:
    """``stores`` itself when it is one store, else its ``*.zarr`` children."""
    if (stores / "zarr.json").exists() and stores.suffix == ".zarr":
        return [stores]
    return sorted(p for p in stores.glob("*.zarr") if (p / "zarr.json").exists())


@app.command("heatmap")
def heatmap_command(
    stores: Annotated[
        Path, typer.Argument(help="Folder of <slide_id>.zarr stores (or one store).")
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for <slide_id>.<scores>.png/.geojson.")
    ],
    scores: Annotated[str, typer.Option(help="Which tile_scores/<name> to draw.")] = "attention",
    slides: Annotated[
        Path | None, typer.Option(help="Folder holding the slide files, if they moved.")
    ] = None,
    max_size: Annotated[
        int, typer.Option(min=64, help="Longest side of the thumbnail, pixels.")
    ] = 1024,
    cmap: Annotated[
        str, typer.Option(help="Matplotlib colour map for continuous scores.")
    ] = "coolwarm",
    normalize: Annotated[
        str, typer.Option(help="percentile (rank), minmax or none.")
    ] = "percentile",
    alpha: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Opacity of the tile colours.")
    ] = 0.55,
    geojson: Annotated[
        bool, typer.Option(help="Also write QuPath GeoJSON (tiles as detections).")
    ] = True,
    as_json: JsonOpt = False,
) -> None:
    """Draw tile_scores/<name> of each store over its thumbnail; categorical scores as prototype maps."""
    if normalize not in STYLE_NORMALIZE:
        err_console.print(
            f"[red]error[/red] --normalize {normalize!r}: choose {', '.join(STYLE_NORMALIZE)}"
        )
        raise typer.Exit(2)
    try:
        from slidestream.viz.heatmap import colour_lut

        colour_lut(cmap)
    except ValueError as exc:
        print_error(f"--cmap: {exc}")
        raise typer.Exit(2) from None
    paths = store_paths(stores)
    if not paths:
        print_error(f"no slide stores in {stores}")
        raise typer.Exit(2)
    result = draw_maps(
        paths,
        scores,
        out,
        slides_dir=slides,
        max_size=max_size,
        geojson=geojson,
        cmap=cmap,
        normalize=normalize,
        alpha=alpha,
    )
    print_summary(result, f"maps of tile_scores/{scores} → {out}", columns=["tiles", "background"],
                  as_json=as_json, command="heatmap")
    raise typer.Exit(result.exit_code)
