"""``Encoder``: a spec, a model with its weights, and the two steps between tiles and vectors.

The extraction stage sees only this object: ``encoder(tiles_uint8)`` gives float32 embeddings,
``encoder.provenance()`` gives what must be written next to them so a feature file can always be
traced to the exact weights (by SHA-256), preprocessing and library versions that produced it.
Preprocessing and embedding are also exposed separately so a loader can run the first in worker
processes or on the GPU and batch the second.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import asdict
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from slidestream._version import __version__
from slidestream.encoders.devices import resolve_device
from slidestream.encoders.pooling import pool
from slidestream.encoders.preprocess import preprocess as _preprocess
from slidestream.encoders.registry import get_spec
from slidestream.encoders.spec import EncoderSpec
from slidestream.encoders.weights import (
    build_with_weights,
    resolve_weights,
    searched_locations,
)
from slidestream.errors import ConfigError, WeightsError
from slidestream.weight_files import sha256_file

PRECISIONS: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
}
RANDOM_INIT = "random-init"
NO_WEIGHTS = "no-weights"
RANDOM_INIT_SEED = 0


class Encoder:
    """A loaded patch encoder. Build it with ``load_encoder``."""

    def __init__(
        self,
        spec: EncoderSpec,
        model: nn.Module,
        *,
        device: torch.device,
        precision: str,
        weights_path: Path | None,
        weights_sha256: str,
        channels_last: bool = False,
        compile: bool = False,
    ) -> None:
        self.spec = spec
        self.model = model
        self.device = device
        self.precision = precision
        self.weights_path = weights_path
        self.weights_sha256 = weights_sha256
        self.channels_last = channels_last
        # The compiled wrapper is kept apart so ``model`` keeps its plain state-dict key names.
        self._forward: Callable[[torch.Tensor], torch.Tensor] = (
            torch.compile(model) if compile else model
        )

    @property
    def embed_dim(self) -> int:
        return self.spec.embed_dim

    def __repr__(self) -> str:
        return (
            f"Encoder({self.spec.name!r}, dim={self.spec.embed_dim}, device={self.device}, "
            f"precision={self.precision}, weights={self.weights_sha256[:12]})"
        )

    def preprocess(self, tiles: Any) -> torch.Tensor:
        """uint8 (B, H, W, 3) numpy/torch → normalised float32 (B, 3, S, S) on the device."""
        return _preprocess(tiles, self.spec, self.device, channels_last=self.channels_last)

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=PRECISIONS[self.precision])

    def embed(self, batch: torch.Tensor) -> torch.Tensor:
        """Preprocessed batch → (B, D) float32 embeddings on the device."""
        batch = batch.to(self.device, non_blocking=True)
        with torch.inference_mode(), self._autocast():
            out = pool(self._forward(batch), self.spec)
        return out.float()

    def __call__(self, tiles: Any) -> np.ndarray:
        """uint8 tiles → (B, D) float32 numpy embeddings."""
        return self.embed(self.preprocess(tiles)).cpu().numpy()

    def provenance(self) -> dict[str, Any]:
        """Everything needed to reproduce (or refuse to mix) these embeddings."""
        spec = self.spec
        return {
            "name": spec.name,
            "family": spec.family,
            "weights_sha256": self.weights_sha256,
            "weights_path": None if self.weights_path is None else str(self.weights_path),
            "dim": spec.embed_dim,
            "pooling": spec.pooling,
            "native_mpp": spec.native_mpp,
            "tile_size": spec.tile_size,
            "input_size": spec.input_size,
            "mean": list(spec.mean),
            "std": list(spec.std),
            "resize": asdict(spec.resize),
            "precision": self.precision,
            "timm_version": _timm_version(),
            "torch_version": torch.__version__,
            "slidestream_version": __version__,
        }


@cache
def _timm_version() -> str:
    """timm's version without importing timm (it imports torchvision): a non-timm encoder never loads it."""
    try:
        return metadata.version("timm")
    except metadata.PackageNotFoundError:
        return "not installed"


def _missing_weights_error(spec: EncoderSpec) -> WeightsError:
    if not spec.weights_public:
        return WeightsError(
            None,
            f"{spec.name}: weights are not publicly released. Pass a local checkpoint with "
            f"--weights PATH (weights=...), or use --random-init for benchmarking.",
        )
    looked = "; ".join(searched_locations(spec))
    gate = " (gated: accept the licence on the hub first)" if spec.gated else ""
    return WeightsError(
        None,
        f"no local weights for encoder {spec.name!r}. Looked in: {looked}. Download them from "
        f"{spec.weights_source}{gate} and pass --weights PATH (a file or folder), set "
        f"$SLIDESTREAM_WEIGHTS, or use --random-init for a smoke test.",
    )


def load_encoder(
    name: str,
    weights: str | os.PathLike[str] | None = None,
    *,
    random_init: bool = False,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    channels_last: bool = False,
    compile: bool = False,
) -> Encoder:
    """Build encoder ``name`` with its weights from local disk (never the network).

    ``random_init=True`` skips weights and uses a fixed seed, for benchmarking and tests; the
    provenance then says ``"random-init"`` so such features can never pass for real ones.
    """
    spec = get_spec(name)
    torch_device = resolve_device(device)   # a bad or absent device fails before any model is built
    if precision not in PRECISIONS:
        raise ConfigError(None, f"precision={precision!r}; allowed: {', '.join(PRECISIONS)}")
    if random_init and weights is not None:
        raise ConfigError(None, "pass either weights or random_init=True, not both")
    weights_path: Path | None = None
    if not spec.requires_weights:
        if weights is not None:
            raise ConfigError(None, f"encoder {spec.name!r} has no weights; do not pass any")
        model, sha = spec.build(), NO_WEIGHTS
    elif random_init:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_INIT_SEED)
            model = spec.build()
        sha = RANDOM_INIT
    else:
        weights_path = resolve_weights(spec, weights)
        if weights_path is None:
            raise _missing_weights_error(spec)
        model = build_with_weights(spec, weights_path)
        sha = sha256_file(weights_path)

    model = model.float().eval().to(torch_device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return Encoder(
        spec,
        model,
        device=torch_device,
        precision=precision,
        weights_path=weights_path,
        weights_sha256=sha,
        channels_last=channels_last,
        compile=compile,
    )
