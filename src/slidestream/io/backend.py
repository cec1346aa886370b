"""The small surface every reader backend provides.

Backends only move pixels and metadata out of a file; level choice, mpp, clipping and
compositing live in :class:`slidestream.io.slide.Slide` so that both backends agree pixel for
pixel on everything above this line.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np


class Backend(Protocol):
    name: str
    path: Path

    @property
    def level_dimensions(self) -> tuple[tuple[int, int], ...]: ...

    @property
    def level_downsamples(self) -> tuple[float, ...]: ...

    @property
    def properties(self) -> Mapping[str, object]: ...

    @property
    def associated_images(self) -> tuple[str, ...]: ...

    def read_rgba_or_rgb(self, location: tuple[int, int], level: int, size: tuple[int, int]) -> np.ndarray:
        """Read a region that lies fully inside the level; returns (H, W, 3|4) uint8."""
        ...

    def close(self) -> None: ...


class OpenSlideLikeBackend:
    """Shared plumbing for backends whose handle has openslide's API (openslide, tiffslide)."""

    name: str
    path: Path
    _slide: Any

    @property
    def level_dimensions(self) -> tuple[tuple[int, int], ...]:
        return tuple((int(w), int(h)) for w, h in self._slide.level_dimensions)

    @property
    def level_downsamples(self) -> tuple[float, ...]:
        return tuple(float(d) for d in self._slide.level_downsamples)

    @property
    def properties(self) -> Mapping[str, object]:
        return dict(self._slide.properties)

    @property
    def associated_images(self) -> tuple[str, ...]:
        return tuple(self._slide.associated_images.keys())

    def close(self) -> None:
        self._slide.close()


def composite_on_white(region: np.ndarray) -> np.ndarray:
    """Turn an RGBA region into RGB over white; an RGB region passes through untouched.

    Openslide returns un-premultiplied RGBA where alpha marks pixels outside the scanned area;
    users and models expect glass-white there, never raw alpha or black.
    """
    if region.ndim != 3:
        raise ValueError(f"expected an (H, W, C) image, got shape {region.shape}")
    if region.shape[2] == 3:
        return np.ascontiguousarray(region)
    rgb = region[..., :3]
    alpha = region[..., 3]
    if alpha.min() == 255:
        return np.ascontiguousarray(rgb)
    a = alpha.astype(np.uint16)[..., None]
    out = (rgb.astype(np.uint16) * a + 255 * (255 - a) + 127) // 255
    return out.astype(np.uint8)
