"""``slidestream extract`` and ``slidestream export``: features into stores, and out to h5."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from slidestream.cli._app import app
from slidestream.cli._common import (
    JsonOpt,
    err_console,
    finite,
    prepare_out,
    print_error,
    print_summary,
)
from slidestream.cli.tiles import (
    BackendOpt,
    DefaultMppOpt,
    OutOpt,
    OverwriteOpt,
    ShardOpt,
    SlidesArg,
    WaitOpt,
    _sources,
    _validated,
    finish,
    run_slides,
)
from slidestream.errors import EmptyBagError, SlideStreamError
from slidestream.pipeline.batch import (  # rich only: cheap
    DEFAULT_BUSY_WAIT_S,
    BatchResult,
    Skip,
    run_batch,
)

if TYPE_CHECKING:  # zarr loads when an export runs, torch in the encoder's loading thread
    from slidestream.encoders.encoder import Encoder
    from slidestream.encoders.loading import EncoderLoad
    from slidestream.store import SlideStore


@app.command("extract")
def extract_command(
    slides: SlidesArg,
    out: OutOpt,
    encoder: Annotated[str, typer.Option(help="Patch encoder (see `slidestream encoders`).")] = "handcrafted",
    weights: Annotated[Path | None, typer.Option(help="Local weights: a file or a folder (HF cache folders work).")] = None,
    random_init: Annotated[bool, typer.Option(help="Random weights, for benchmarks and tests only (recorded as such).")] = False,
    batch_size: Annotated[int, typer.Option(min=1, help="Tiles per model call.")] = 64,
    workers: Annotated[int, typer.Option(min=1, help="Threads reading and decoding tiles.")] = 4,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:1 or mps.")] = "cpu",
    precision: Annotated[str, typer.Option(help="fp32, bf16 or fp16 (autocast).")] = "fp32",
    channels_last: Annotated[bool, typer.Option(help="channels_last memory format (CNNs on GPU).")] = False,
    compile: Annotated[bool, typer.Option("--compile", help="torch.compile the model.")] = False,
    selection: Annotated[str | None, typer.Option(help="Embed only this stored selection (e.g. mosaic).")] = None,
    dtype: Annotated[str, typer.Option(help="Stored dtype: float32 or float16.")] = "float32",
    fast_read: Annotated[bool, typer.Option(help="Read JPEG tiles directly where possible.")] = True,
    mpp: Annotated[float | None, typer.Option(callback=finite, help="Tile mpp when the store has no tiles yet (default: the encoder's).")] = None,
    tile_size: Annotated[int | None, typer.Option(help="Tile size when the store has no tiles yet (default: the encoder's).")] = None,
    backend: BackendOpt = "auto",
    default_mpp: DefaultMppOpt = None,
    overwrite: OverwriteOpt = False,
    shard: ShardOpt = None,
    wait: WaitOpt = DEFAULT_BUSY_WAIT_S,
    as_json: JsonOpt = False,
) -> None:
    """Embed every tile (or a selection) of each slide; tissue and tiling run first when missing."""
    from slidestream.pipeline.config import check_device
    from slidestream.tiling.params import TilingParams

    if dtype not in ("float32", "float16"):
        print_error(f"invalid dtype {dtype!r}: choose float32 or float16")
        raise typer.Exit(2)
    if precision not in ("fp32", "bf16", "fp16"):
        print_error(f"invalid precision {precision!r}: choose fp32, bf16 or fp16")
        raise typer.Exit(2)
    if why := check_device(device):
        print_error(f"invalid --device: {why}")
        raise typer.Exit(2)
    # 0 is not "the default": only an absent option is (TilingParams refuses 0 and negatives)
    tiling_args = {"mpp": mpp, "tile_size": tile_size}
    if mpp is not None or tile_size is not None:
        _validated(TilingParams, **{k: v for k, v in tiling_args.items() if v is not None})
    loading = _start_loading(encoder, weights=weights, random_init=random_init, device=device, precision=precision,
                             channels_last=channels_last, compile=compile)
    # torch (and timm) import in the loading thread while this one imports the stages and tiles
    from slidestream.encoders.loading import EncoderLoadFailed
    from slidestream.extraction import ExtractOptions
    from slidestream.pipeline.stages import run_extract

    sources = _sources(slides, backend, default_mpp, shard)
    if device != "cpu":   # a GPU that is absent or busy is found before any slide is touched
        _loaded(loading, device, wait=loading.check_device)
    prepare_out(out)
    tiling = None
    if mpp is not None or tile_size is not None:
        tiling = _validated(TilingParams, mpp=loading.native_mpp if mpp is None else mpp,
                            tile_size=loading.tile_size if tile_size is None else tile_size)
    options = ExtractOptions(batch_size=batch_size, workers=workers, selection=selection, dtype=dtype, fast_read=fast_read)
    stage = f"features/{loading.name}"
    with contextlib.suppress(EncoderLoadFailed):   # _loaded reports it below, as a load in the foreground did
        result, recorder = run_slides(out, sources, lambda s: run_extract(s, out, loading, options, tiling=tiling,
                                                                          overwrite=overwrite),
                                      stage=stage, description="extract", wait=wait)
    _loaded(loading, device)   # also when no slide got as far as the encoder: its errors still count
    finish(out, result, recorder, stage, ["features", "dim", "reader"], as_json=as_json, command="extract")


def _start_loading(encoder: str, **kwargs: object) -> EncoderLoad:
    """The encoder's load, started in the background (an unknown name fails here, at once)."""
    from slidestream.encoders.loading import EncoderLoad

    def announce(model: Encoder) -> None:
        err_console.print(escape(f"encoder {model.spec.name}: dim {model.embed_dim}, weights {model.weights_sha256[:16]}, "
                                 f"device {kwargs['device']}, {kwargs['precision']}"), highlight=False)

    try:
        return EncoderLoad(encoder, on_ready=announce, **kwargs)
    except (SlideStreamError, ValueError) as exc:
        print_error(exc)
        raise typer.Exit(2) from None


def _loaded(loading: EncoderLoad, device: str, wait: Callable[[], object] | None = None) -> object:
    """Wait for the encoder (or for ``wait``); a failed load is a one-line usage error (exit 2),
    as it always was. On a CPU the job tiles its first slide meanwhile, so an error that needs
    the encoder's family to be found (weights missing or not matching) comes after that slide's
    tissue and tiles are written: valid outputs, reused by the next run."""
    try:
        return (wait or loading.result)()
    except (SlideStreamError, ValueError) as exc:
        print_error(exc)
        raise typer.Exit(2) from None
    except (RuntimeError, AssertionError) as exc:   # e.g. --device cuda on a machine without one
        print_error(f"--device {device}: {str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}")
        raise typer.Exit(2) from None


export_app = typer.Typer(help="Export stores to other tools' formats.", no_args_is_help=True,
                         context_settings={"help_option_names": ["-h", "--help"]})
app.add_typer(export_app, name="export")

H5_LAYOUTS = ("trident", "clam", "stamp")
StoresArg = Annotated[Path, typer.Argument(help="Folder of <slide_id>.zarr stores (or one store).")]


def export_stores(stores: Path) -> list[Path]:
    """``stores`` itself when it is one store, else the stores inside it; none is a usage error."""
    from slidestream.store import iter_stores

    paths = [stores] if (stores / "zarr.json").exists() else [s.path for s in iter_stores(stores)]
    if not paths:
        print_error(f"no slide stores in {stores}")
        raise typer.Exit(2)
    return paths


def export_batch(paths: list[Path], write: Callable[[SlideStore], Path]) -> BatchResult:
    """Run one export per store; a slide without tiles is skipped with its reason, as CLAM,
    TRIDENT and STAMP write no file for it (and MIL models crash on an empty bag)."""
    from slidestream.store import SlideStore

    def one(path: Path) -> dict:
        try:
            written = write(SlideStore.open(path))
        except EmptyBagError as exc:
            raise Skip(exc.reason) from exc
        return {"file": str(written)}

    return run_batch(paths, one, description="export", show_progress=False)


@export_app.command("h5")
def export_h5_command(
    stores: StoresArg,
    encoder: Annotated[str, typer.Option(help="Which features/<encoder> to export.")],
    dest: Annotated[Path, typer.Option("--dest", "-d", help="Output folder for <slide_id>.h5 files.")],
    layout: Annotated[str, typer.Option(help="trident (features+coords with attrs), clam (h5_files/ + pt_files/, "
                                             "no attrs) or stamp (fp16 feats, coords in um, STAMP attrs).")] = "trident",
    as_json: JsonOpt = False,
) -> None:
    """Write CLAM/TRIDENT/STAMP-compatible .h5 feature files so existing MIL code reads our output."""
    from slidestream.store import export_h5
    from slidestream.store.stamp_export import export_stamp

    if layout not in H5_LAYOUTS:
        err_console.print(f"[red]error[/red] invalid layout {layout!r}: choose {', '.join(H5_LAYOUTS)}")
        raise typer.Exit(2)
    paths = export_stores(stores)
    if layout == "stamp":
        result = export_batch(paths, lambda store: export_stamp(store, encoder, dest))
    else:
        result = export_batch(paths, lambda store: export_h5(store, encoder, dest, layout))  # type: ignore[arg-type]
    print_summary(result, f"h5 ({layout})", columns=["file"], as_json=as_json, command="export h5")
    raise typer.Exit(result.exit_code)


@export_app.command("spatialdata")
def export_spatialdata_command(
    stores: StoresArg,
    dest: Annotated[Path, typer.Option("--dest", "-d", help="Output folder for <slide_id>.zarr SpatialData stores "
                                                            "(not the folder of the slide stores).")],
    encoder: Annotated[list[str] | None, typer.Option(help="Only these features/<encoder> (repeatable; default: all).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Write SpatialData zarr stores (tissues, tiles, feature tables) that LazySlide's wsidata opens."""
    from slidestream.store.spatialdata_export import (
        MissingDependencyError,
        export_spatialdata,
        require_spatialdata,
    )

    try:
        require_spatialdata()
    except MissingDependencyError as exc:
        print_error(exc.reason)
        raise typer.Exit(2) from None
    paths = export_stores(stores)
    result = export_batch(paths, lambda store: export_spatialdata(store, dest, encoder or None))
    print_summary(result, "spatialdata", columns=["file"], as_json=as_json, command="export spatialdata")
    raise typer.Exit(result.exit_code)
