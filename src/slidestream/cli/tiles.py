"""``slidestream tissue`` and ``slidestream tile``: the front half of the pipeline."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from slidestream.cli._app import app
from slidestream.cli._common import collect_entries, err_console, print_summary, write_run_report
from slidestream.errors import ConfigError
from slidestream.tissue import TissueParams  # its defaults are shown in --help

if TYPE_CHECKING:  # the stages load when a command runs, not when the CLI starts
    from slidestream.pipeline.stages import SlideSource

SlidesArg = Annotated[list[Path], typer.Argument(help="Slide files, folders (walked), or .txt/.csv slide lists (CSV: 'path' and optional 'mpp' columns).")]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Output folder: one <slide_id>.zarr store per slide.")]
BackendOpt = Annotated[str, typer.Option(help="Reader backend: auto, openslide or tiffslide.")]
DefaultMppOpt = Annotated[float | None, typer.Option("--default-mpp", help="Level-0 um/px for slides whose metadata has none (slides with metadata keep theirs).")]
OverwriteOpt = Annotated[bool, typer.Option(help="Recompute finished work (and what depends on it).")]
ShardOpt = Annotated[str | None, typer.Option("--shard", help="Only shard i/n of the slides (deterministic split by slide id, e.g. 2/8): n GPUs or nodes share one list with no coordinator.")]


def _validated(model, **values):
    from pydantic import ValidationError

    try:
        return model(**values)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"]) or model.__name__
        err_console.print(f"[red]error[/red] invalid {key}: {first['msg']}")
        raise typer.Exit(2) from exc


def _sources(slides: list[Path], backend: str, default_mpp: float | None, shard: str | None = None) -> list[SlideSource]:
    """Slide sources; a slide list's ``mpp`` column wins over ``--default-mpp`` for its slide.

    Ids are checked unique over the whole list before sharding, so every shard agrees on them.
    """
    from slidestream.pipeline.shard import apply_shard
    from slidestream.pipeline.stages import SlideSource, check_unique_ids

    entries = collect_entries(slides)
    try:
        check_unique_ids([e.path for e in entries])
        sources = [SlideSource(e.path, backend, e.mpp if e.mpp is not None else default_mpp) for e in entries]
        mine = apply_shard(sources, shard, key=lambda s: s.slide_id)
    except ConfigError as exc:
        err_console.print(f"[red]error[/red] {exc}")
        raise typer.Exit(2) from exc
    if shard is not None:
        err_console.print(f"shard {shard}: {len(mine)} of {len(sources)} slides")
    return mine


@app.command("tissue")
def tissue_command(
    slides: SlidesArg,
    out: OutOpt,
    backend: BackendOpt = "auto",
    default_mpp: DefaultMppOpt = None,
    overwrite: OverwriteOpt = False,
    shard: ShardOpt = None,
    no_pen_removal: Annotated[bool, typer.Option("--keep-pen", help="Do not exclude pen marks.")] = False,
    min_object_um2: Annotated[float, typer.Option(help="Smallest tissue piece kept, in um^2.")] = TissueParams().min_object_um2,
) -> None:
    """Detect tissue: <id>.geojson (QuPath), <id>.tissue.png, and the store's tissue node."""
    from slidestream.pipeline.batch import run_batch
    from slidestream.pipeline.run import record_manifest
    from slidestream.pipeline.stages import locked, run_tissue

    params = _validated(TissueParams, remove_pen=not no_pen_removal, min_object_um2=min_object_um2)
    sources = _sources(slides, backend, default_mpp, shard)
    by_path = {s.path: s for s in sources}
    result = run_batch([s.path for s in sources],
                       lambda p: locked(out, by_path[p], lambda: run_tissue(by_path[p], out, params, overwrite=overwrite)),
                       description="tissue")
    print_summary(result, "tissue", columns=["tissue_pieces", "tissue_area_mm2", "pen_fraction"])
    record_manifest(out, result, "tissue")
    write_run_report(out)
    raise typer.Exit(result.exit_code)


@app.command("tile")
def tile_command(
    slides: SlidesArg,
    out: OutOpt,
    mpp: Annotated[float | None, typer.Option(help="Target um/px of the tiles.")] = 0.5,
    magnification: Annotated[float | None, typer.Option("--magnification", "--mag", help="Target magnification instead of --mpp (uses the objective power).")] = None,
    tile_size: Annotated[int, typer.Option(help="Tile side in px at the target resolution.")] = 224,
    overlap: Annotated[int, typer.Option(help="Overlap in px at the target resolution.")] = 0,
    min_tissue: Annotated[float, typer.Option(help="Minimum tissue fraction of a kept tile.")] = 0.25,
    allow_upsample: Annotated[bool, typer.Option(help="Allow a target finer than the slide.")] = False,
    min_focus_ratio: Annotated[float | None, typer.Option(help="Drop out-of-focus tiles: sharpness below this share of the slide's sharp tiles (e.g. 0.1).")] = None,
    select: Annotated[str | None, typer.Option(help="Also choose a subset: mosaic, fps, random or grid.")] = None,
    fraction: Annotated[float | None, typer.Option(help="Share of tiles to select.")] = 0.1,
    count: Annotated[int | None, typer.Option(help="Number of tiles to select (instead of --fraction).")] = None,
    seed: Annotated[int, typer.Option(help="Seed for the selection.")] = 0,
    backend: BackendOpt = "auto",
    default_mpp: DefaultMppOpt = None,
    overwrite: OverwriteOpt = False,
    shard: ShardOpt = None,
) -> None:
    """Tile slides at a target resolution (tissue first when missing); optionally select a subset."""
    from slidestream.pipeline.batch import run_batch
    from slidestream.pipeline.run import record_manifest
    from slidestream.pipeline.stages import locked, run_tiles
    from slidestream.tiling.params import SelectionParams, TilingParams

    tiling = _validated(TilingParams, mpp=None if magnification else mpp, magnification=magnification,
                        tile_size=tile_size, overlap=overlap, min_tissue=min_tissue, allow_upsample=allow_upsample,
                        min_focus_ratio=min_focus_ratio)
    selection = None
    if select is not None:
        selection = _validated(SelectionParams, method=select, fraction=None if count else fraction, count=count, seed=seed)
    sources = _sources(slides, backend, default_mpp, shard)
    by_path = {s.path: s for s in sources}
    result = run_batch([s.path for s in sources],
                       lambda p: locked(out, by_path[p], lambda: run_tiles(by_path[p], out, tiling, None, selection=selection,
                                                                           overwrite=overwrite)),
                       description="tiles")
    print_summary(result, "tiles", columns=["tiles", "read_level", "selected"])
    record_manifest(out, result, "tiles")
    write_run_report(out)
    raise typer.Exit(result.exit_code)
