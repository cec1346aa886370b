"""The small surface every reader backend provides, and the plumbing they share.

Backends only move pixels and metadata out of a file; level choice, mpp, clipping and
compositing live in :class:`slidestream.io.slide.Slide` so that every backend agrees with the
others on everything above this line.

Sub-pixel positions: a level-0 location ``x`` falls at level position ``x / downsample``, which
is fractional on levels whose downsample is not an integer (4.0015, 2.0005: most real
pyramids). Openslide samples there (a bilinear sub-pixel shift); a reader that rounds down
instead is up to one level pixel off. Backends that address whole level pixels derive from
:class:`LevelGridBackend`, which samples at the fractional position the same way, so every
backend returns the same pixels for the same location (to rounding).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np

# Fractions below this (1/512 px) are position noise from rounding level-0 coordinates, not a shift.
_SUBPIXEL_EPS = 1.0 / 512


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
        """Read a region that lies fully inside the level, sampled at level position
        ``location / downsample`` (fractional: openslide's convention); (H, W, 3|4) uint8."""
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


class LevelGridBackend:
    """Mixin for backends that read whole level pixels: ``read_level`` in, fractional sampling out."""

    level_dimensions: tuple[tuple[int, int], ...]
    level_downsamples: tuple[float, ...]

    def read_level(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        """Level pixels [x, x+w) x [y, y+h), inside the level: (h, w, 3|4) uint8."""
        raise NotImplementedError

    def read_rgba_or_rgb(self, location: tuple[int, int], level: int, size: tuple[int, int]) -> np.ndarray:
        down = self.level_downsamples[level]
        lw, lh = self.level_dimensions[level]
        return sample_at(lambda x, y, w, h: self.read_level(level, x, y, w, h),
                         location[0] / down, location[1] / down, size[0], size[1], (lw, lh))


def split_position(f: float) -> tuple[int, float]:
    """Integer pixel and the fraction past it, with fractions within eps of a pixel snapped to it."""
    i = math.floor(f)
    frac = f - i
    if frac < _SUBPIXEL_EPS:
        return i, 0.0
    if frac > 1.0 - _SUBPIXEL_EPS:
        return i + 1, 0.0
    return i, frac


def sample_at(read: Callable[[int, int, int, int], np.ndarray], fx: float, fy: float, w: int, h: int,
              level_size: tuple[int, int]) -> np.ndarray:
    """A ``w`` x ``h`` window whose top-left lies at fractional level position (fx, fy).

    ``read(x, y, w, h)`` returns whole level pixels inside the level. At an integer position
    this is one plain read; otherwise one more column/row is read and blended bilinearly
    (openslide's result to within one grey level; mean 0.2 on real slides). Beyond the level's
    last pixel is white, as openslide's transparent border composited on white is.
    """
    ix, ax = split_position(fx)
    iy, ay = split_position(fy)
    lw, lh = level_size
    if ax == 0.0 and ay == 0.0 and ix + w <= lw and iy + h <= lh:
        return read(ix, iy, w, h)
    ew, eh = w + (ax > 0), h + (ay > 0)
    x0, y0 = min(max(ix, 0), lw - 1), min(max(iy, 0), lh - 1)
    rw, rh = max(1, min(ix + ew, lw) - x0), max(1, min(iy + eh, lh) - y0)
    region = read(x0, y0, rw, rh)
    pad = ((y0 - iy, iy + eh - y0 - rh), (x0 - ix, ix + ew - x0 - rw), (0, 0))
    if any(p != (0, 0) for p in pad[:2]):
        region = np.pad(region, [(max(a, 0), max(b, 0)) for a, b in pad], mode="constant", constant_values=255)
    if ax == 0.0 and ay == 0.0:
        return region
    return blend_shift(region, ax, ay)


def blend_shift(region: np.ndarray, ax: float, ay: float) -> np.ndarray:
    """Shift ``region`` left/up by (ax, ay) < 1 px, bilinearly; it loses its last column/row
    where the shift is non-zero (that extra pixel is what the blend consumed)."""
    p = region.astype(np.float32)
    if ax > 0:
        p = p[:, :-1] * (1.0 - ax) + p[:, 1:] * ax
    if ay > 0:
        p = p[:-1] * (1.0 - ay) + p[1:] * ay
    return np.clip(np.rint(p), 0, 255).astype(np.uint8)


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
