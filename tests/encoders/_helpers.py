"""Synthetic tiles shared by the encoder tests."""

from __future__ import annotations

import numpy as np

from slidestream.encoders import get_spec


def random_tiles(name: str, n: int = 1, seed: int = 0, size: int | None = None) -> np.ndarray:
    """uint8 (n, S, S, 3) noise tiles at the encoder's native tile size."""
    size = size or get_spec(name).tile_size
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def he_like_tile(size: int = 224, seed: int = 0) -> np.ndarray:
    """A pink eosin background with purple haematoxylin 'nuclei' and mild noise."""
    rng = np.random.default_rng(seed)
    tile = np.empty((size, size, 3), np.float64)
    tile[:] = (228, 150, 196)  # eosin pink
    yy, xx = np.mgrid[:size, :size]
    for _ in range(40):
        cy, cx, r = rng.integers(0, size), rng.integers(0, size), rng.integers(4, 10)
        tile[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = (92, 58, 148)  # haematoxylin purple
    tile += rng.normal(0, 6, tile.shape)
    return np.clip(tile, 0, 255).astype(np.uint8)


def white_tile(size: int = 224, seed: int = 0) -> np.ndarray:
    """Glass background: near-white, unsaturated, with sensor noise."""
    rng = np.random.default_rng(seed)
    tile = 243 + rng.normal(0, 3, (size, size, 3))
    return np.clip(tile, 0, 255).astype(np.uint8)
