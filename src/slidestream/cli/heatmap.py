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
from slidestream.cli._common import JsonOpt, finite, print_error, print_summary


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
        float, typer.Option(min=0.0, max=1.0, callback=finite, help="Opacity of the tile colours.")
    ] = 0.55,
    geojson: Annotated[
        bool, typer.Option(help="Also write QuPath GeoJSON (tiles as detections).")
    ] = True,
    as_json: JsonOpt = False,
) -> None:
    """Draw tile_scores/<name> of each store over its thumbnail; categorical scores as prototype maps."""
    from slidestream.errors import ConfigError
    from slidestream.pipeline.maps import check_style, draw_score_maps, store_paths

    try:
        check_style(cmap=cmap, normalize=normalize)
    except ConfigError as exc:
        print_error(exc.reason)
        raise typer.Exit(2) from None
    paths = store_paths(stores)
    if not paths:
        print_error(f"no slide stores in {stores}")
        raise typer.Exit(2)
    result = draw_score_maps(
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
