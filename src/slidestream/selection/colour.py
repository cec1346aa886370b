"""Cheap per-tile descriptors from the low-resolution image (no full-resolution reads).

Mean and spread of each RGB channel over a tile's footprint, from integral images: one pass over
the thumbnail, then four lookups per tile and channel, whatever the number of tiles.
"""

from __future__ import annotations

import numpy as np


def _integral(values: np.ndarray) -> np.ndarray:
    out = np.zeros((values.shape[0] + 1, values.shape[1] + 1), dtype=np.float64)
    out[1:, 1:] = values.cumsum(0).cumsum(1)
    return out


def tile_colour_features(
    image: np.ndarray, level0_size: tuple[int, int], coords: np.ndarray, extent0: tuple[int, int]
) -> np.ndarray:
    """(N, 6) mean and std of R, G, B in [0, 1] over each tile's footprint in ``image``."""
    coords = np.asarray(coords, dtype=np.float64).reshape(-1, 2)
    h, w = image.shape[:2]
    sx, sy = w / level0_size[0], h / level0_size[1]
    c0 = np.clip(np.floor(coords[:, 0] * sx), 0, w - 1).astype(np.int64)
    r0 = np.clip(np.floor(coords[:, 1] * sy), 0, h - 1).astype(np.int64)
    c1 = np.clip(np.ceil((coords[:, 0] + extent0[0]) * sx), c0 + 1, w).astype(np.int64)
    r1 = np.clip(np.ceil((coords[:, 1] + extent0[1]) * sy), r0 + 1, h).astype(np.int64)
    area = ((c1 - c0) * (r1 - r0)).astype(np.float64)
    rgb = image.astype(np.float64) / 255.0
    feats = []
    for ch in range(3):
        s1, s2 = _integral(rgb[..., ch]), _integral(rgb[..., ch] ** 2)
        total = s1[r1, c1] - s1[r0, c1] - s1[r1, c0] + s1[r0, c0]
        total_sq = s2[r1, c1] - s2[r0, c1] - s2[r1, c0] + s2[r0, c0]
        mean = total / area
        feats.append((mean, np.sqrt(np.clip(total_sq / area - mean**2, 0, None))))
    return np.column_stack([m for m, _ in feats] + [s for _, s in feats])
