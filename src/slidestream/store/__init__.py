"""The slide store (zarr v3, one group per slide) and its h5 export. Knows no torch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from slidestream.store.dimensions import name_dimensions
from slidestream.store.slide_store import (
    FORMAT_VERSION,
    FeatureWriter,
    SlideStore,
    Tiles,
    iter_stores,
    selection_digest,
    store_path,
)


def __getattr__(name: str) -> Any:
    """``export_h5`` on first use: h5py is needed by exports only, not by every job that writes a store."""
    if name == "export_h5":
        from slidestream.store.h5export import export_h5

        return export_h5
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load_features(store: str | Path | SlideStore, encoder: str) -> tuple[np.ndarray, np.ndarray]:
    """Features (N, D) float32 and level-0 coords (N, 2) int64 of one slide for ``encoder``."""
    s = store if isinstance(store, SlideStore) else SlideStore.open(store)
    features, coords, _ = s.read_features(encoder)
    return features.astype(np.float32, copy=False), coords.astype(np.int64, copy=False)


def write_slide_embedding(store: str | Path | SlideStore, method: str, embedding: np.ndarray,
                          attrs: dict[str, Any]) -> None:
    """Store one slide-level embedding under ``slide_embeddings/<method>``, atomically."""
    s = store if isinstance(store, SlideStore) else SlideStore.open(store)
    s.write_slide_embedding(method, embedding, attrs)


__all__ = [
    "FORMAT_VERSION",
    "FeatureWriter",
    "SlideStore",
    "Tiles",
    "export_h5",
    "iter_stores",
    "load_features",
    "name_dimensions",
    "selection_digest",
    "store_path",
    "write_slide_embedding",
]
