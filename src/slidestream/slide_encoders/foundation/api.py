"""Running a loaded slide foundation encoder on arrays, and as a cohort slide function."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from slidestream.errors import StoreError
from slidestream.slide_encoders.foundation.spec import SlideEncoderSpec, SlideInput

__all__ = ["embed_slide", "encode_cohort", "foundation_slide_fn"]


@torch.inference_mode()
def embed_slide(
    model: nn.Module,
    features: np.ndarray | torch.Tensor,
    coords: np.ndarray | torch.Tensor | None = None,
    patch_size_level0: float | None = None,
    *,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """One slide's tile features ``(N, D)`` (+ level-0 ``coords (N, 2)``) → float32 ``(D_slide,)``.

    Runs in float32 (the official tools autocast to fp16 on GPU; fp32 is the reference).
    """
    x = torch.as_tensor(np.asarray(features), dtype=torch.float32, device=device)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"features must be a non-empty (N, D) array, got shape {tuple(x.shape)}")
    c = None if coords is None else torch.as_tensor(np.asarray(coords), dtype=torch.int64, device=device)
    model = model.to(device).eval()
    z = model.embed(SlideInput(x, c, patch_size_level0))  # type: ignore[operator]
    return z.float().cpu().numpy().reshape(-1)


def foundation_slide_fn(
    spec: SlideEncoderSpec,
    model: nn.Module,
    provenance: Mapping[str, Any] | None = None,
    *,
    device: str = "cpu",
):
    """``bag -> (embedding, attrs)`` for bags from :func:`.inputs.read_slide_input`."""

    def run(bag: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, Any]]:
        level0 = bag.get("patch_size_level0")
        size = None if level0 is None else float(level0[0])
        if spec.requirement.uses_coords and size is None:
            raise StoreError(None, f"{spec.name} needs tile coordinates and their level-0 size")
        try:
            z = embed_slide(model, bag["features"], bag.get("coords"), size, device=device)
        except ValueError as exc:  # e.g. a tile grid beyond GigaPath's position table
            raise StoreError(None, f"{spec.name}: {exc}") from exc
        attrs = {
            "slide_encoder": spec.name,
            "input": spec.requirement.describe(),
            "patch_size_level0": size,
            "precision": "fp32",
            **(provenance or {}),
        }
        return z, attrs

    return run


def encode_cohort(
    stores: list,
    name: str | SlideEncoderSpec,
    encoder: str,
    weights: str | None = None,
    *,
    device: str = "cpu",
    write: bool = True,
):
    """Embed every store with slide foundation encoder ``name`` → one row per slide (DataFrame).

    ``name`` is a registry name or a spec (e.g. a reduced-depth one in tests).
    The patch encoder named by ``encoder`` must be one the model was trained on (refused up front,
    before weights are read); each store's records are then checked (:mod:`.inputs`) and a store
    that breaks the contract becomes a failed row naming what is needed. Embeddings land in
    ``slide_embeddings/<name>`` with provenance (weights file and SHA-256, input contract).
    """
    from slidestream.errors import ConfigError
    from slidestream.slide_encoders import cohort
    from slidestream.slide_encoders.foundation.inputs import read_slide_input
    from slidestream.slide_encoders.foundation.loading import load_slide_encoder
    from slidestream.slide_encoders.foundation.registry import get_slide_spec

    spec = name if isinstance(name, SlideEncoderSpec) else get_slide_spec(name)
    enc = cohort.EncoderSpec.parse(encoder)
    if not spec.requirement.accepts(enc.store_name):
        raise ConfigError(
            None, f"--encoder {enc.store_name}: {spec.name} needs {spec.requirement.describe()}"
        )
    model, provenance = load_slide_encoder(spec, weights)
    slide_fn = foundation_slide_fn(spec, model, provenance, device=device)
    return cohort.encode_stores(
        stores, spec.name, [enc], slide_fn, provenance=provenance, write=write,
        reader=lambda store, encoders: read_slide_input(store, spec, encoders[0].store_name),
    )
