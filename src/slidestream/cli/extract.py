"""``slidestream extract`` and ``slidestream export``: features into stores, and out to h5."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from slidestream.cli._app import app
from slidestream.cli._common import err_console, print_summary, write_run_report
from slidestream.cli.tiles import (
    BackendOpt,
    DefaultMppOpt,
    OutOpt,
    OverwriteOpt,
    ShardOpt,
    SlidesArg,
    _sources,
    _validated,
)
from slidestream.errors import SlideStreamError


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
    mpp: Annotated[float | None, typer.Option(help="Tile mpp when the store has no tiles yet (default: the encoder's).")] = None,
    tile_size: Annotated[int | None, typer.Option(help="Tile size when the store has no tiles yet (default: the encoder's).")] = None,
    backend: BackendOpt = "auto",
    default_mpp: DefaultMppOpt = None,
    overwrite: OverwriteOpt = False,
    shard: ShardOpt = None,
) -> None:
    """Embed every tile (or a selection) of each slide; tissue and tiling run first when missing."""
    from slidestream.encoders import load_encoder  # torch import only for commands that need it
    from slidestream.extraction import ExtractOptions
    from slidestream.pipeline.batch import run_batch
    from slidestream.pipeline.run import record_manifest
    from slidestream.pipeline.stages import locked, run_extract
    from slidestream.tiling.params import TilingParams

    if dtype not in ("float32", "float16"):
        err_console.print(f"[red]error[/red] invalid dtype {dtype!r}: choose float32 or float16")
        raise typer.Exit(2)
    try:
        model = load_encoder(encoder, weights, random_init=random_init, device=device, precision=precision,
                             channels_last=channels_last, compile=compile)
    except (SlideStreamError, ValueError) as exc:
        err_console.print(f"[red]error[/red] {exc}")
        raise typer.Exit(2) from exc
    tiling = None
    if mpp is not None or tile_size is not None:
        tiling = _validated(TilingParams, mpp=mpp or model.spec.native_mpp, tile_size=tile_size or model.spec.tile_size)
    options = ExtractOptions(batch_size=batch_size, workers=workers, selection=selection, dtype=dtype, fast_read=fast_read)
    sources = _sources(slides, backend, default_mpp, shard)
    by_path = {s.path: s for s in sources}
    err_console.print(f"encoder {model.spec.name}: dim {model.embed_dim}, weights {model.weights_sha256[:16]}, "
                      f"device {device}, {precision}")
    result = run_batch([s.path for s in sources],
                       lambda p: locked(out, by_path[p], lambda: run_extract(by_path[p], out, model, options, tiling=tiling,
                                                                             overwrite=overwrite)),
                       description="extract")
    print_summary(result, f"features/{model.spec.name}", columns=["features", "dim", "reader"])
    record_manifest(out, result, f"features/{model.spec.name}")
    write_run_report(out)
    raise typer.Exit(result.exit_code)


export_app = typer.Typer(help="Export stores to other tools' formats.", no_args_is_help=True)
app.add_typer(export_app, name="export")


@export_app.command("h5")
def export_h5_command(
    stores: Annotated[Path, typer.Argument(help="Folder of <slide_id>.zarr stores (or one store).")],
    encoder: Annotated[str, typer.Option(help="Which features/<encoder> to export.")],
    dest: Annotated[Path, typer.Option("--dest", "-d", help="Output folder for <slide_id>.h5 files.")],
    layout: Annotated[str, typer.Option(help="trident (features+coords with attrs) or clam (h5_files/ + pt_files/, no attrs).")] = "trident",
) -> None:
    """Write CLAM/TRIDENT-compatible .h5 feature files so existing MIL code reads our output."""
    from slidestream.pipeline.batch import run_batch
    from slidestream.store import export_h5, iter_stores

    if layout not in ("trident", "clam"):
        err_console.print(f"[red]error[/red] invalid layout {layout!r}: choose trident or clam")
        raise typer.Exit(2)
    paths = [stores] if (stores / "zarr.json").exists() else [s.path for s in iter_stores(stores)]
    if not paths:
        err_console.print(f"[red]error[/red] no slide stores in {stores}")
        raise typer.Exit(2)
    from slidestream.store import SlideStore

    def one(path: Path) -> dict:
        written = export_h5(SlideStore.open(path), encoder, dest, layout)  # type: ignore[arg-type]
        return {"file": written.name}

    result = run_batch(paths, one, description="export", show_progress=False)
    print_summary(result, f"h5 ({layout})", columns=["file"])
    raise typer.Exit(result.exit_code)
