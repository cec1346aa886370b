"""Fast patch selection: small representative subsets of a tile grid (indices into it)."""

from __future__ import annotations

from typing import Literal

import numpy as np

from slidestream.selection.colour import tile_colour_features
from slidestream.selection.methods import select_fps, select_grid, select_mosaic, select_random

Method = Literal["mosaic", "fps", "random", "grid"]
METHODS: tuple[str, ...] = ("mosaic", "fps", "random", "grid")


def select_tiles(
    method: Method,
    coords: np.ndarray,
    *,
    extent0: tuple[int, int],
    tissue_fraction: np.ndarray | None = None,
    image: np.ndarray | None = None,
    level0_size: tuple[int, int] | None = None,
    fraction: float | None = 0.1,
    count: int | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Indices of a representative subset of ``coords`` by ``method`` (see each method's docs).

    ``mosaic`` needs the low-resolution ``image`` of the slide and its ``level0_size``; ``fps``
    needs ``tissue_fraction``.
    """
    coords = np.asarray(coords)
    if method == "random":
        return select_random(len(coords), fraction=fraction, count=count, seed=seed)
    if method == "grid":
        return select_grid(coords, fraction=fraction, count=count)
    if method == "mosaic":
        if image is None or level0_size is None:
            raise ValueError("mosaic selection needs the low-resolution image and the level-0 size")
        return select_mosaic(coords, extent0, image, level0_size, fraction=fraction, count=count, seed=seed)
    if method == "fps":
        if tissue_fraction is None:
            raise ValueError("fps selection needs the tiles' tissue fractions")
        return select_fps(coords, extent0, tissue_fraction, fraction=fraction, count=count, seed=seed)
    raise ValueError(f"unknown selection method {method!r}; choose one of {', '.join(METHODS)}")


__all__ = ["METHODS", "select_fps", "select_grid", "select_mosaic", "select_random", "select_tiles",
           "tile_colour_features"]
