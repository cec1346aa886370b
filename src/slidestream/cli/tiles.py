"""``slidestream tissue`` and ``slidestream tile``: the front half of the pipeline."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from slidestream.cli._app import app
from slidestream.cli._common import (
    JsonOpt,
    collect_entries,
    err_console,
    finite,
    prepare_out,
    print_error,
    print_summary,
    write_run_report,
)
from slidestream.errors import ConfigError, WeightsError
from slidestream.pipeline.batch import DEFAULT_BUSY_WAIT_S  # rich only: cheap
from slidestream.tissue import TissueParams  # its defaults are shown in --help

if TYPE_CHECKING:  # the stages load when a command runs, not when the CLI starts
    from slidestream.pipeline.batch import BatchResult
    from slidestream.pipeline.manifest import ManifestRecorder
    from slidestream.pipeline.stages import SlideSource

SlidesArg = Annotated[list[Path], typer.Argument(help="Slide files, folders (walked), or .txt/.csv slide lists (CSV: 'path' and optional 'mpp' columns).")]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Output folder: one <slide_id>.zarr store per slide.")]
BackendOpt = Annotated[str, typer.Option(help="Reader backend: auto, openslide, tiffslide, wsidicom (DICOM) or czi.")]
DefaultMppOpt = Annotated[float | None, typer.Option("--default-mpp", callback=finite, help="Level-0 um/px for slides whose metadata has none (slides with metadata keep theirs).")]
OverwriteOpt = Annotated[bool, typer.Option(help="Recompute finished work (and what depends on it).")]
ShardOpt = Annotated[str | None, typer.Option("--shard", help="Only shard i/n of the slides (deterministic split by slide id, e.g. 2/8): n GPUs or nodes share one list with no coordinator.")]
WaitOpt = Annotated[float, typer.Option("--wait", min=0, callback=finite, help="Slides another live process is working on are waited for, after the others, at most this many seconds in all; still busy then: exit 1.")]


def _validated(model, options: dict[str, str] | None = None, **values):
    """``model(**values)``, or exit 2 naming the option as the user typed it (``options`` maps a
    field to its option where the names differ: method -> --select) and the value given."""
    from pydantic import ValidationError

    try:
        return model(**values)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        option = (options or {}).get(field, f"--{field.replace('_', '-')}")
        key = f"{option} ({field})" if field else "options"
        got = f" (got {first['input']!r})" if field and not isinstance(first.get("input"), dict) else ""
        print_error(f"invalid {key}: {str(first['msg']).removeprefix('Value error, ')}{got}")
        raise typer.Exit(2) from None


def _sources(slides: list[Path], backend: str, default_mpp: float | None, shard: str | None = None) -> list[SlideSource]:
    """Slide sources; a slide list's ``mpp`` column wins over ``--default-mpp`` for its slide.

    Ids are checked unique over the whole list before sharding, so every shard agrees on them.
    """
    from slidestream.io.discovery import check_mpp
    from slidestream.pipeline.shard import apply_shard
    from slidestream.pipeline.stages import SlideSource, check_unique_ids

    entries = collect_entries(slides)
    if default_mpp is not None and (why := check_mpp(default_mpp, "--default-mpp")):
        print_error(why)
        raise typer.Exit(2)
    try:
        check_unique_ids([e.path for e in entries])
        sources = [SlideSource(e.path, backend, e.mpp if e.mpp is not None else default_mpp, e.problem) for e in entries]
        mine = apply_shard(sources, shard, key=lambda s: s.slide_id)
    except ConfigError as exc:
        print_error(exc)
        raise typer.Exit(2) from None
    if shard is not None:
        err_console.print(f"shard {shard}: {len(mine)} of {len(sources)} slides")
    return mine


def _check_weights(params: TissueParams) -> None:
    """Missing deep weights fail the command once, up front, not once per slide."""
    if params.random_init:
        return
    from slidestream.tissue.models import SPECS
    from slidestream.tissue.seg_weights import resolve

    wanted = [] if params.method == "classical" else [(SPECS[params.method], params.weights)]
    if params.run_artifacts:
        wanted.append((SPECS["grandqc_artifact"], params.artifact_weights))
    for spec, given in wanted:
        try:
            resolve(spec, given)
        except WeightsError as exc:
            print_error(exc)
            raise typer.Exit(2) from exc


def run_slides(out: Path, sources: list[SlideSource], task: Callable[[SlideSource], dict], *, stage: str,
               description: str, wait: float) -> tuple[BatchResult, ManifestRecorder]:
    """``task`` for every source under its slide lock, each slide's manifest row written as it finishes."""
    from slidestream.pipeline.batch import run_batch
    from slidestream.pipeline.manifest import ManifestRecorder
    from slidestream.pipeline.stages import locked

    by_path = {s.path: s for s in sources}
    recorder = ManifestRecorder(out, stage)
    result = run_batch([s.path for s in sources], lambda p: locked(out, by_path[p], lambda: task(by_path[p])),
                       description=description, busy_wait_s=wait, on_outcome=recorder)
    return result, recorder


def finish(out: Path, result: BatchResult, recorder: ManifestRecorder, title: str, columns: list[str], *,
           as_json: bool = False, command: str | None = None) -> None:
    """Summary, report, then the exit code: 1 when a slide failed or is busy, or its row is not on disk."""
    print_summary(result, title, columns=columns, as_json=as_json, command=command)
    write_run_report(out)
    recorder.raise_if_failed()
    raise typer.Exit(result.exit_code)


@app.command("tissue")
def tissue_command(
    slides: SlidesArg,
    out: OutOpt,
    backend: BackendOpt = "auto",
    default_mpp: DefaultMppOpt = None,
    overwrite: OverwriteOpt = False,
    shard: ShardOpt = None,
    no_pen_removal: Annotated[bool, typer.Option("--keep-pen", help="Do not exclude pen marks.")] = False,
    min_object_um2: Annotated[float, typer.Option(callback=finite, help="Smallest tissue piece kept, in um^2.")] = TissueParams().min_object_um2,
    wait: WaitOpt = DEFAULT_BUSY_WAIT_S,
    as_json: JsonOpt = False,
    method: Annotated[str, typer.Option(help="classical (saturation/Otsu, fast), hest (HEST DeepLabV3, 1 um/px) or grandqc (GrandQC UNet++, 10 um/px).")] = "classical",
    weights: Annotated[str | None, typer.Option(help="Deep method weights: the release file or a folder holding it (else $SLIDESTREAM_WEIGHTS, then the Hugging Face cache).")] = None,
    combine: Annotated[str | None, typer.Option(help="With a deep method: intersect or union with the classical mask (IoU recorded).")] = None,
    threshold: Annotated[float, typer.Option(help="Deep methods: minimum tissue probability.")] = 0.5,
    model_mpp: Annotated[float | None, typer.Option(help="Deep methods: input um/px instead of the release's (e.g. 2 for HEST's fast mode).")] = None,
    artifacts: Annotated[bool, typer.Option("--artifacts", help="Also segment GrandQC artifacts (fold, darkspot, pen, edge, oof) inside the tissue.")] = False,
    exclude_artifacts: Annotated[str | None, typer.Option(help="Comma-separated artifact classes cut out of the tissue, e.g. fold,pen (implies --artifacts).")] = None,
    artifact_weights: Annotated[str | None, typer.Option(help="GrandQC artifact weights (GrandQC_MPP1_state_dict.pth) or a folder holding it.")] = None,
    device: Annotated[str, typer.Option(help="Deep methods: torch device (cpu, cuda, cuda:1).")] = "cpu",
    batch_size: Annotated[int, typer.Option(help="Deep methods: tiles per forward pass.")] = 8,
    random_init: Annotated[bool, typer.Option("--random-init", hidden=True, help="Tests only: random weights.")] = False,
) -> None:
    """Detect tissue: <id>.geojson (QuPath), <id>.tissue.png, and the store's tissue node."""
    from slidestream.pipeline.stages import run_tissue

    excluded = tuple(x.strip() for x in exclude_artifacts.split(",") if x.strip()) if exclude_artifacts else ()
    params = _validated(TissueParams, remove_pen=not no_pen_removal, min_object_um2=min_object_um2, method=method,
                        weights=weights, combine=combine, threshold=threshold, model_mpp=model_mpp, artifacts=artifacts,
                        exclude_artifacts=excluded, artifact_weights=artifact_weights, device=device,
                        batch_size=batch_size, random_init=random_init)
    _check_weights(params)
    sources = _sources(slides, backend, default_mpp, shard)
    prepare_out(out)
    result, recorder = run_slides(out, sources, lambda s: run_tissue(s, out, params, overwrite=overwrite),
                                  stage="tissue", description="tissue", wait=wait)
    finish(out, result, recorder, "tissue", ["tissue_pieces", "tissue_area_mm2", "pen_fraction"], as_json=as_json)


@app.command("tile")
def tile_command(
    slides: SlidesArg,
    out: OutOpt,
    mpp: Annotated[float | None, typer.Option(callback=finite, help="Target um/px of the tiles  [default: 0.5 unless --magnification]")] = None,
    magnification: Annotated[float | None, typer.Option("--magnification", "--mag", callback=finite, help="Target magnification instead of --mpp (uses the objective power).")] = None,
    tile_size: Annotated[int, typer.Option(help="Tile side in px at the target resolution.")] = 224,
    overlap: Annotated[int, typer.Option(help="Overlap in px at the target resolution.")] = 0,
    min_tissue: Annotated[float, typer.Option(callback=finite, help="Minimum tissue fraction of a kept tile.")] = 0.25,
    allow_upsample: Annotated[bool, typer.Option(help="Allow a target finer than the slide.")] = False,
    min_focus_ratio: Annotated[float | None, typer.Option(callback=finite, help="Drop out-of-focus tiles: sharpness below this share of the slide's sharp tiles (e.g. 0.1).")] = None,
    tile_qc: Annotated[bool, typer.Option("--tile-qc", help="Store each tile's white/black/grey pixel shares (measured at --qc-mpp, one whole-slide read).")] = False,
    qc_mpp: Annotated[float, typer.Option(callback=finite, help="Resolution of the tile QC image, um/px.")] = 4.0,
    max_white: Annotated[float | None, typer.Option(callback=finite, help="Drop tiles with a larger white (glass) share, e.g. 0.5 (implies --tile-qc).")] = None,
    max_black: Annotated[float | None, typer.Option(callback=finite, help="Drop tiles with a larger black share, e.g. 0.1 (implies --tile-qc).")] = None,
    max_grey: Annotated[float | None, typer.Option(callback=finite, help="Drop tiles with a larger grey (achromatic) share, e.g. 0.6 (implies --tile-qc).")] = None,
    select: Annotated[str | None, typer.Option(help="Also choose a subset: mosaic, fps, random or grid.")] = None,
    fraction: Annotated[float | None, typer.Option(callback=finite, help="Share of tiles to select.")] = 0.1,
    count: Annotated[int | None, typer.Option(help="Number of tiles to select (instead of --fraction).")] = None,
    seed: Annotated[int, typer.Option(help="Seed for the selection.")] = 0,
    backend: BackendOpt = "auto",
    default_mpp: DefaultMppOpt = None,
    overwrite: OverwriteOpt = False,
    shard: ShardOpt = None,
    wait: WaitOpt = DEFAULT_BUSY_WAIT_S,
    as_json: JsonOpt = False,
) -> None:
    """Tile slides at a target resolution (tissue first when missing); optionally select a subset."""
    from slidestream.pipeline.stages import run_tiles
    from slidestream.tiling.params import SelectionParams, TilingParams

    if mpp is not None and magnification is not None:
        print_error(f"--mpp {mpp:g} and --magnification {magnification:g} contradict each other: give one")
        raise typer.Exit(2)
    tiling = _validated(TilingParams, mpp=0.5 if mpp is None and magnification is None else mpp, magnification=magnification,
                        tile_size=tile_size, overlap=overlap, min_tissue=min_tissue, allow_upsample=allow_upsample,
                        min_focus_ratio=min_focus_ratio, tile_qc=tile_qc, qc_mpp=qc_mpp, max_white=max_white,
                        max_black=max_black, max_grey=max_grey)
    selection = None
    if select is not None:
        selection = _validated(SelectionParams, {"method": "--select"}, method=select, fraction=None if count else fraction, count=count, seed=seed)
    sources = _sources(slides, backend, default_mpp, shard)
    prepare_out(out)
    result, recorder = run_slides(out, sources, lambda s: run_tiles(s, out, tiling, None, selection=selection,
                                                                    overwrite=overwrite),
                                  stage="tiles", description="tiles", wait=wait)
    qc_filter = any(m is not None for m in (max_white, max_black, max_grey))
    finish(out, result, recorder, "tiles", ["tiles", "read_level", "selected", *(["qc_dropped"] if qc_filter else [])],
           as_json=as_json)
