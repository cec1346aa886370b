"""`Slide`: the one reader interface every stage uses.

Backends differ in how they treat out-of-slide pixels (transparent, black, error) and in what
metadata they surface. This class removes those differences: reads are clipped to the level,
composited on white, and the resolution is resolved once, with its source recorded.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from slidestream.errors import MissingMppError, ResolutionError, SlideReadError
from slidestream.io._base import Backend, composite_on_white
from slidestream.io.geometry import MPP_TOLERANCE, ReadPlan, plan_read
from slidestream.io.jpeg_tiles import DecodedTileCache, JpegPyramid, dct_scale
from slidestream.io.metadata import Resolution, objective_power, resolution_from_properties, vendor
from slidestream.io.remote import remote_size, remote_url

# Largest block read in one call when assembling a low-resolution image: bounds RAM whatever
# the slide size (a 100k x 100k level is never materialised).
_BLOCK = 4096
# Threads decoding the JPEG tiles of a whole-slide image (tissue detection, thumbnails).
_DECODE_THREADS = max(1, min(4, os.cpu_count() or 1))


@dataclass(frozen=True)
class SlideSpec:
    """What a worker needs to open its own handle to the same slide (picklable)."""

    path: Path
    backend: str
    mpp: float | tuple[float, float] | None = None
    default_mpp: float | None = None


class Slide:
    """A whole-slide image opened through one backend. Use :func:`slidestream.open_slide`."""

    def __init__(self, backend: Backend, *, mpp_override: float | tuple[float, float] | None = None,
                 default_mpp: float | None = None) -> None:
        self._backend = backend
        self.path: Path = backend.path
        self.backend_name: str = backend.name
        self.properties: dict[str, object] = dict(backend.properties)
        self.level_dimensions: tuple[tuple[int, int], ...] = backend.level_dimensions
        self.level_downsamples: tuple[float, ...] = backend.level_downsamples
        self.objective_power: float | None = objective_power(self.properties)
        self.vendor: str | None = vendor(self.properties)
        self._mpp_override = mpp_override
        if mpp_override is not None:
            mx, my = (mpp_override, mpp_override) if np.isscalar(mpp_override) else mpp_override
            if not (mx > 0 and my > 0):
                raise ValueError(f"{self.path}: mpp override must be positive, got {mpp_override}")
            self.resolution: Resolution | None = Resolution(float(mx), float(my), "override")
        else:
            self.resolution = resolution_from_properties(self.properties)
            if self.resolution is None and default_mpp is not None:
                if not default_mpp > 0:
                    raise ValueError(f"{self.path}: default mpp must be positive, got {default_mpp}")
                self.resolution = Resolution(float(default_mpp), float(default_mpp), "default (file has none)")
        self._default_mpp = default_mpp

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> Slide:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._backend.close()

    def __repr__(self) -> str:
        mpp = f"{self.resolution.mpp_x:.4g}" if self.resolution else "unknown"
        return f"Slide({str(self.path)!r}, {self.width}x{self.height}, levels={self.level_count}, mpp={mpp}, backend={self.backend_name})"

    @property
    def spec(self) -> SlideSpec:
        return SlideSpec(self.path, self.backend_name, self._mpp_override, self._default_mpp)

    # ------------------------------------------------------------------ geometry
    @property
    def dimensions(self) -> tuple[int, int]:
        return self.level_dimensions[0]

    @property
    def width(self) -> int:
        return self.level_dimensions[0][0]

    @property
    def height(self) -> int:
        return self.level_dimensions[0][1]

    @property
    def level_count(self) -> int:
        return len(self.level_dimensions)

    @property
    def associated_images(self) -> tuple[str, ...]:
        return self._backend.associated_images

    @property
    def mpp(self) -> tuple[float, float]:
        """Level-0 microns per pixel (x, y); raises :class:`MissingMppError` when unknown."""
        if self.resolution is None:
            raise MissingMppError(
                self.path,
                "no microns-per-pixel in the file's metadata; if you know the scan resolution, give it as "
                "mpp=<value> (CLI --default-mpp, run config default_mpp, or an mpp column in a slide list)",
            )
        return (self.resolution.mpp_x, self.resolution.mpp_y)

    @property
    def mpp_or_none(self) -> tuple[float, float] | None:
        return None if self.resolution is None else (self.resolution.mpp_x, self.resolution.mpp_y)

    def level_mpps(self) -> list[float]:
        """Mean microns per pixel at each level (x and y differ by < 1% on real scanners)."""
        mx, my = self.mpp
        base = (mx + my) / 2.0
        return [base * d for d in self.level_downsamples]

    def mpp_for_magnification(self, magnification: float) -> float:
        """Convert a magnification (20x, 40x) to microns per pixel through the objective power.

        The slide's own objective power and mpp define the scale: a 40x scan at 0.25 um/px gives
        20x = 0.5 um/px. Without both, magnification has no physical meaning and this raises.
        """
        if magnification <= 0:
            raise ValueError(f"magnification must be positive, got {magnification}")
        if self.objective_power is None:
            raise MissingMppError(self.path, "no objective power in the metadata, so a magnification cannot be converted; use an mpp target")
        return self.mpp[0] * self.objective_power / magnification

    # ------------------------------------------------------------------ reading
    def read_region(self, location: tuple[int, int], level: int, size: tuple[int, int]) -> np.ndarray:
        """Read ``size`` (w, h) pixels at ``level`` from level-0 ``location``: uint8 (H, W, 3).

        Pixels outside the slide are white, for every backend.
        """
        if not 0 <= level < self.level_count:
            raise ValueError(f"{self.path}: level {level} does not exist (slide has {self.level_count})")
        w, h = int(size[0]), int(size[1])
        if w <= 0 or h <= 0:
            raise ValueError(f"{self.path}: region size must be positive, got {size}")
        x0, y0 = int(location[0]), int(location[1])
        down = self.level_downsamples[level]
        lw, lh = self.level_dimensions[level]
        # Region in level coordinates; clip to the level, read the inside, pad with white.
        lx, ly = math.floor(x0 / down), math.floor(y0 / down)
        ix0, iy0 = max(lx, 0), max(ly, 0)
        ix1, iy1 = min(lx + w, lw), min(ly + h, lh)
        if ix0 == lx and iy0 == ly and ix1 == lx + w and iy1 == ly + h:
            return self._read_inside((x0, y0), level, (w, h))
        out = np.full((h, w, 3), 255, dtype=np.uint8)
        if ix1 > ix0 and iy1 > iy0:
            inner_loc0 = (x0 + round((ix0 - lx) * down), y0 + round((iy0 - ly) * down))
            inner = self._read_inside(inner_loc0, level, (ix1 - ix0, iy1 - iy0))
            out[iy0 - ly : iy1 - ly, ix0 - lx : ix1 - lx] = inner
        return out

    def _read_inside(self, location: tuple[int, int], level: int, size: tuple[int, int]) -> np.ndarray:
        try:
            region = self._backend.read_rgba_or_rgb(location, level, size)
        except Exception as exc:  # backends raise their own types for corrupt data
            raise SlideReadError(self.path, f"cannot read {size} at level {level}, {location}: {type(exc).__name__}: {exc}") from exc
        return composite_on_white(region)

    def plan(self, mpp: float, size: tuple[int, int] | int, *, allow_upsample: bool = False,
             tolerance: float = MPP_TOLERANCE) -> ReadPlan:
        """How a ``size`` tile at ``mpp`` is read: level, size at that level, level-0 footprint."""
        out = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
        plan = plan_read(self.level_mpps(), list(self.level_downsamples), mpp, out,
                         tolerance=tolerance, allow_upsample=allow_upsample)
        if plan is None:
            raise ResolutionError(
                self.path,
                f"target {mpp:g} um/px is finer than the slide's best {self.level_mpps()[0]:.4g} um/px; "
                "refusing to upsample (allow it explicitly if you must)",
            )
        return plan

    def read_at_mpp(self, x0: int, y0: int, mpp: float, size: tuple[int, int] | int, *,
                    allow_upsample: bool = False) -> np.ndarray:
        """Read a region whose top-left is level-0 (x0, y0) as ``size`` pixels at ``mpp``."""
        plan = self.plan(mpp, size, allow_upsample=allow_upsample)
        return self.read_plan(x0, y0, plan)

    def read_plan(self, x0: int, y0: int, plan: ReadPlan) -> np.ndarray:
        region = self.read_region((x0, y0), plan.level, plan.read_size)
        return resize_rgb(region, plan.out_size) if plan.needs_resize else region

    def read_whole(self, mpp: float) -> tuple[np.ndarray, tuple[float, float]]:
        """The whole slide at about ``mpp`` (clamped to level 0), read block by block.

        Returns the image and its true (x, y) microns per pixel, which differ slightly from the
        request because the output has an integer number of pixels.
        """
        mx, my = self.mpp
        scale = min(1.0, ((mx + my) / 2.0) / mpp)  # output px per level-0 px
        out_w, out_h = max(1, round(self.width * scale)), max(1, round(self.height * scale))
        image = self._assemble(out_w, out_h)
        return image, (mx * self.width / out_w, my * self.height / out_h)

    def thumbnail(self, max_size: int = 1024) -> np.ndarray:
        """Whole slide with its longest side at most ``max_size`` px, from the coarsest level that suffices."""
        scale = min(1.0, max_size / max(self.width, self.height))
        out_w, out_h = max(1, round(self.width * scale)), max(1, round(self.height * scale))
        return self._assemble(out_w, out_h)

    def _assemble(self, out_w: int, out_h: int) -> np.ndarray:
        """Build an (out_h, out_w) image of the whole slide from the coarsest sufficient level.

        Blocks of the level are read and shrunk one at a time, so a single-level gigapixel file
        costs one block of RAM, not the whole level. On JPEG-tiled pyramids the level's JPEG
        tiles are decoded directly (OpenCV's libjpeg-turbo, no RGBA round trip through the
        backend: 3-4x faster than openslide's ``read_region`` of the same pixels, which they
        equal), at a reduced DCT scale when the output is at least 2x smaller than the level:
        the thumbnail of a 100k-pixel slide then decodes a few MB instead of a few hundred.
        """
        scale_needed = self.width / out_w  # level-0 px per output px
        level = max((i for i, d in enumerate(self.level_downsamples) if d <= scale_needed * (1 + 1e-6)), default=0)
        lw, lh = self.level_dimensions[level]
        s = min(dct_scale(lw, out_w), dct_scale(lh, out_h))
        # a one-level pyramid of just that level: the file's other levels are never parsed
        pyramid = JpegPyramid.open(self.path, [(lw, lh)], DecodedTileCache(32 << 20))
        if pyramid is not None:
            with pyramid, ThreadPoolExecutor(_DECODE_THREADS) as pool:
                def read_scaled(bx: int, by: int, bw: int, bh: int) -> np.ndarray:
                    rw, rh = -(-bw // s), -(-bh // s)
                    try:
                        # decode the block's JPEG tiles in threads (the decoder releases the GIL)
                        # into the cache, then assemble from it
                        tiles = pyramid.tiles_touched(0, bx, by, rw * s, rh * s)
                        if len(tiles) > 1 and rw * rh * 3 <= pyramid.cache.max_bytes // 2:
                            for _ in pool.map(lambda t: pyramid.decode_tile(0, t[0], t[1], s), tiles):
                                pass
                        return pyramid.read(0, bx, by, rw * s, rh * s, s)[:rh, :rw]
                    except OSError as exc:  # a short read (truncated file), reported as the backend's are
                        raise SlideReadError(self.path, f"cannot read level {level} at ({bx}, {by}): "
                                                        f"{type(exc).__name__}: {exc}") from exc

                return self._assemble_blocks(level, out_w, out_h, _BLOCK * s, read_scaled)
        if lw * lh <= _BLOCK * _BLOCK:
            return shrink_rgb(self.read_region((0, 0), level, (lw, lh)), (out_w, out_h))
        down = self.level_downsamples[level]

        def read_full(bx: int, by: int, bw: int, bh: int) -> np.ndarray:
            return self.read_region((round(bx * down), round(by * down)), level, (bw, bh))

        return self._assemble_blocks(level, out_w, out_h, _BLOCK, read_full)

    def _assemble_blocks(self, level: int, out_w: int, out_h: int, step: int,
                         read: Callable[[int, int, int, int], np.ndarray]) -> np.ndarray:
        """Tile the level in ``step``-pixel blocks; ``read`` returns a block at any resolution."""
        lw, lh = self.level_dimensions[level]
        sx, sy = out_w / lw, out_h / lh
        out = np.empty((out_h, out_w, 3), dtype=np.uint8)
        for by in range(0, lh, step):
            for bx in range(0, lw, step):
                bw, bh = min(step, lw - bx), min(step, lh - by)
                tx0, ty0 = round(bx * sx), round(by * sy)
                tx1, ty1 = round((bx + bw) * sx), round((by + bh) * sy)
                if tx1 <= tx0 or ty1 <= ty0:
                    continue
                out[ty0:ty1, tx0:tx1] = shrink_rgb(read(bx, by, bw, bh), (tx1 - tx0, ty1 - ty0))
        return out

    # ------------------------------------------------------------------ description
    def info(self) -> dict[str, Any]:
        """A JSON-ready record of the slide's geometry and metadata."""
        res = self.resolution
        return {
            "path": remote_url(self.path) or str(self.path),
            "backend": self.backend_name,
            "vendor": self.vendor,
            "width": self.width,
            "height": self.height,
            "level_count": self.level_count,
            "level_dimensions": [list(d) for d in self.level_dimensions],
            "level_downsamples": [round(d, 6) for d in self.level_downsamples],
            "mpp_x": None if res is None else res.mpp_x,
            "mpp_y": None if res is None else res.mpp_y,
            "mpp_source": None if res is None else res.source,
            "objective_power": self.objective_power,
            "associated_images": list(self.associated_images),
            "size_bytes": _size_bytes(self.path),
            **({"dicom_series_uid": str(self.properties["dicom.SeriesInstanceUID"])}
               if self.properties.get("dicom.SeriesInstanceUID") else {}),
        }


def _size_bytes(path: Path) -> int:
    url = remote_url(path)
    if url is not None:
        return remote_size(url)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def shrink_rgb(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize to a smaller (w, h) for whole-slide overviews (thumbnails, tissue detection).

    OpenCV throughout, ~10x faster than Pillow's antialiased bilinear on a megapixel: below a
    2x reduction a light Gaussian (sigma 0.5 sqrt(f^2 - 1) for factor f, the blur the coarser
    grid lacks) then bilinear; from 2x on the area average (at fractional factors below 2,
    OpenCV's area average costs 15x the bilinear). JPEG pyramids reach the output within 2x by
    their level and DCT scale, so they take the first. Tissue masks on the result keep an IoU
    of 0.995 or more with those on Pillow's (benchmarks/results/tiling_ab_table.md).
    """
    if (image.shape[1], image.shape[0]) == tuple(size):
        return image
    import cv2  # here, not at module import: commands that never shrink start lean

    image = np.ascontiguousarray(image)
    factor = min(image.shape[1] / size[0], image.shape[0] / size[1])
    if factor >= 2:
        return cv2.resize(image, tuple(size), interpolation=cv2.INTER_AREA)
    sigma = 0.5 * math.sqrt(max(factor * factor - 1.0, 0.0))
    if sigma > 0.1:
        image = cv2.GaussianBlur(image, (0, 0), sigma)
    return cv2.resize(image, tuple(size), interpolation=cv2.INTER_LINEAR)


def resize_rgb(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Antialiased resize to (w, h). Pillow's filters widen their support when shrinking."""
    if (image.shape[1], image.shape[0]) == tuple(size):
        return image
    resized = Image.fromarray(image).resize(size, Image.Resampling.BILINEAR, reducing_gap=None)
    return np.asarray(resized)
