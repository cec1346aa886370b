"""The input contract of a slide foundation encoder, checked against a store's own records.

A slide encoder fed the wrong tile features still returns a vector: a plausible-looking, useless
one. So before a slide is embedded, the store's records are compared with the spec's
:class:`~.spec.InputRequirement`: the patch encoder (``features/<name>`` attrs record which one
produced them), the feature width, the resolution and tile size at which the tiles were cut
(``tiles`` attrs), and for models that place tiles on a grid, non-overlapping tiles and their
level-0 size. Any mismatch is a :class:`~slidestream.errors.StoreError` that names what the
model needs and how to extract it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from slidestream.errors import StoreError
from slidestream.slide_encoders.foundation.spec import InputRequirement, SlideEncoderSpec

__all__ = ["check_records", "read_slide_input"]


def _hint(req: InputRequirement) -> str:
    return (
        f"extract with --encoder {req.patch_encoders[0]} --mpp {req.mpp:g} "
        f"--tile-size {req.tile_size}" + (" --overlap 0" if req.uses_coords else "")
    )


def _producer(feature_attrs: Mapping[str, Any], store_encoder: str) -> str:
    prov = feature_attrs.get("encoder_provenance") or {}
    return str(prov.get("name") or feature_attrs.get("encoder") or store_encoder)


def check_records(
    spec: SlideEncoderSpec,
    store_encoder: str,
    feature_attrs: Mapping[str, Any],
    tiles_attrs: Mapping[str, Any],
    dim: int,
    where: str | Path | None = None,
) -> float | None:
    """Raise :class:`StoreError` unless the records match ``spec``'s input; returns the level-0
    tile size (for models that use coordinates, else ``None``)."""
    req = spec.requirement
    need = f"{spec.name} needs {req.describe()}"
    producer = _producer(feature_attrs, store_encoder)
    if not req.accepts(producer):
        raise StoreError(
            where, f"{need}; features/{store_encoder} come from {producer!r} ({_hint(req)})"
        )
    if dim != req.feature_dim:
        raise StoreError(where, f"{need}; features/{store_encoder} are {dim}-d")
    mpp = feature_attrs.get("mpp", tiles_attrs.get("target_mpp"))
    tile = feature_attrs.get("tile_size", tiles_attrs.get("tile_size_px"))
    if mpp is None or tile is None:
        raise StoreError(where, f"{need}; the store does not record the tile geometry")
    if abs(float(mpp) - req.mpp) > req.mpp_tolerance * req.mpp or int(tile) != req.tile_size:
        raise StoreError(
            where,
            f"{need}; these tiles are {int(tile)} px at {float(mpp):g} um/px ({_hint(req)})",
        )
    if not req.uses_coords:
        return None
    if int(tiles_attrs.get("overlap_px", 0) or 0) != 0:
        raise StoreError(where, f"{need}; these tiles overlap ({_hint(req)})")
    level0 = tiles_attrs.get("level0_size")
    if not level0:
        raise StoreError(where, f"{need}; the store does not record the level-0 tile size")
    return float(level0[0])


def read_slide_input(
    store: Path, spec: SlideEncoderSpec, store_encoder: str
) -> dict[str, np.ndarray]:
    """The bag of one store for ``spec``: ``{'features', 'coords', 'patch_size_level0'}``.

    Features come first (the cohort code counts tiles on the first entry). Raises
    :class:`StoreError` (recorded per slide by the batch) when the input contract is broken.
    """
    from slidestream.store import SlideStore  # lazy: the array API works without stores

    s = SlideStore.open(store)
    feats, coords, attrs = s.read_features(store_encoder)
    feats = np.asarray(feats, np.float32)
    dim = int(feats.shape[1]) if feats.ndim == 2 else int(attrs.get("dim", 0))
    level0 = check_records(spec, store_encoder, attrs, s.node_attrs("tiles"), dim, store)
    bag = {"features": feats, "coords": np.asarray(coords, np.int64)}
    if level0 is not None:
        bag["patch_size_level0"] = np.asarray([level0], np.float64)
    return bag
