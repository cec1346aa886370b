"""The Python entry points that mirror the CLI: the same stages, no argument parsing."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from slidestream.extraction import ExtractOptions
from slidestream.io import find_slide_entries
from slidestream.pipeline.batch import BatchResult, run_batch
from slidestream.pipeline.manifest import ManifestRecorder, check_output_folder
from slidestream.pipeline.stages import SlideSource, check_unique_ids, run_extract
from slidestream.tiling.params import TilingParams


def extract_features(
    slides: str | Path | Iterable[str | Path],
    encoder: str | Any = "handcrafted",
    out: str | Path = "out",
    *,
    weights: str | Path | None = None,
    random_init: bool = False,
    device: str = "cpu",
    precision: str = "fp32",
    channels_last: bool = False,
    compile: bool = False,
    tiling: TilingParams | dict[str, Any] | None = None,
    default_mpp: float | None = None,
    backend: str = "auto",
    overwrite: bool = False,
    show_progress: bool = True,
    **options: Any,
) -> BatchResult:
    """Tissue → tiles → features for each slide into ``out/<slide_id>.zarr``; returns the outcomes.

    ``encoder`` is a registry name (weights from ``weights`` or the local caches) or an already
    loaded :class:`~slidestream.encoders.Encoder`. ``options`` are :class:`ExtractOptions` fields
    (``batch_size``, ``workers``, ``selection``, ``dtype``, ...). A slide that fails is recorded
    (``result.failed``, ``out/manifest.csv``) and the others go on.
    """
    if isinstance(encoder, str):
        from slidestream.encoders import load_encoder

        encoder = load_encoder(encoder, weights, random_init=random_init, device=device, precision=precision,
                               channels_last=channels_last, compile=compile)
    inputs = [slides] if isinstance(slides, str | Path) else list(slides)
    entries = find_slide_entries(inputs)
    check_unique_ids([e.path for e in entries])
    sources = {e.path: SlideSource(e.path, backend, e.mpp if e.mpp is not None else default_mpp, e.problem) for e in entries}
    if isinstance(tiling, dict):
        tiling = TilingParams(**tiling)
    opts = ExtractOptions(**options)
    out = check_output_folder(out)
    recorder = ManifestRecorder(out, f"features/{encoder.spec.name}")   # each slide's row as it finishes
    result = run_batch(list(sources), lambda p: run_extract(sources[p], out, encoder, opts, tiling=tiling, overwrite=overwrite),
                       description="extract", show_progress=show_progress, on_outcome=recorder)
    recorder.raise_if_failed()
    return result
