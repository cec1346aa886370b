"""Tile readers: a store's tile table in, uint8 (B, S, S, 3) batches out, in parallel.

Two implementations behind one small interface:

- :class:`JpegTileReader` for JPEG-tiled TIFF pyramids (SVS, most generic TIFFs, OME-TIFF
  SubIFDs) and DICOM series with JPEG baseline frames: each JPEG tile
  decoded once for every output tile it covers, at a reduced DCT scale when the target is
  coarser, and copied straight into the batch, all in threads (OpenCV's decoder releases the GIL;
  :mod:`slidestream.io.jpeg_batch`).
- :class:`BackendTileReader` for everything else (JPEG 2000 SVS and DICOM, MRXS, NDPI, CZI,
  strip TIFFs, remote slides): the slide backend's ``read_region`` + antialiased resize, one handle per thread.

Which one ran is recorded with the features (``reader``), so a tile can always be re-read with
the exact pixels the encoder saw.
"""

from __future__ import annotations

import math
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from slidestream.io import Slide, SlideSpec, open_slide, resize_rgb
from slidestream.io.jpeg_batch import read_windows
from slidestream.io.jpeg_tiles import DecodedTileCache, JpegPyramid, dct_scale


class TileReader(Protocol):
    name: str

    def read_batch(self, coords: np.ndarray) -> np.ndarray: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class TileGeometry:
    """What the store says about how its tiles are read (see ``tiles`` attrs)."""

    level: int
    read_size: tuple[int, int]
    tile_size: int
    target_mpp: float

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any]) -> TileGeometry:
        return cls(int(attrs["read_level"]), tuple(attrs["read_size"]), int(attrs["tile_size_px"]),
                   float(attrs["target_mpp"]))


class BackendTileReader:
    """``read_region`` + resize through the slide backend, one slide handle per thread."""

    def __init__(self, spec: SlideSpec, geometry: TileGeometry, workers: int = 4) -> None:
        self.spec = spec
        self.geometry = geometry
        self.name = f"backend:{spec.backend}"
        self._local = threading.local()
        self._handles: list[Slide] = []
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="tile-read")

    def _slide(self) -> Slide:
        slide = getattr(self._local, "slide", None)
        if slide is None:
            slide = open_slide(self.spec.path, backend=self.spec.backend, mpp=self.spec.mpp,  # type: ignore[arg-type]
                               default_mpp=self.spec.default_mpp)
            self._local.slide = slide
            with self._lock:
                self._handles.append(slide)
        return slide

    def _read_one(self, xy: np.ndarray) -> np.ndarray:
        slide = self._slide()
        g = self.geometry
        region = slide.read_region((int(xy[0]), int(xy[1])), g.level, g.read_size)
        return resize_rgb(region, (g.tile_size, g.tile_size))

    def read_batch(self, coords: np.ndarray) -> np.ndarray:
        tiles = list(self._pool.map(self._read_one, np.asarray(coords)))
        return np.stack(tiles) if tiles else np.zeros((0, self.geometry.tile_size, self.geometry.tile_size, 3), np.uint8)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        with self._lock:
            for slide in self._handles:
                slide.close()
            self._handles.clear()


class JpegTileReader:
    """Batches from a JPEG-tiled pyramid: decode each JPEG tile once, at the coarsest DCT scale."""

    def __init__(self, pyramid: JpegPyramid, downsample: float, geometry: TileGeometry, workers: int = 4) -> None:
        self.pyramid = pyramid
        self.geometry = geometry
        self.downsample = downsample
        rw, rh = geometry.read_size
        self.scale = min(dct_scale(rw, geometry.tile_size), dct_scale(rh, geometry.tile_size))
        # round the read size up to the DCT grid so the scaled output grid is exact
        s = self.scale
        self.read_w, self.read_h = math.ceil(rw / s) * s, math.ceil(rh / s) * s
        self.name = f"jpeg-dct-1/{s}" if s > 1 else "jpeg"
        self.workers = max(1, workers)
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="jpeg-decode")

    def read_batch(self, coords: np.ndarray) -> np.ndarray:
        """Each JPEG tile under the batch decoded once (or taken from the cache) and its pieces
        copied straight into the batch, all in the threads (:func:`read_windows`)."""
        coords = np.asarray(coords, dtype=np.float64).reshape(-1, 2)
        g = self.geometry
        run = self._pool.map if self.workers > 1 else map
        return read_windows(self.pyramid, g.level, coords[:, 0] / self.downsample, coords[:, 1] / self.downsample,
                            self.read_w, self.read_h, self.scale, g.tile_size, run=run, parts=4 * self.workers)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self.pyramid.close()


def open_tile_reader(spec: SlideSpec, tiles_attrs: dict[str, Any], *, fast: bool = True, workers: int = 4,
                     cache_bytes: int | None = None, span0: int | None = None) -> TileReader:
    """The fastest exact-enough reader for this slide and tile geometry.

    ``span0`` is the level-0 width the tiles to read cover (their x-extent); the decoded-tile
    cache is sized to two rows of JPEG tiles across it, not across the whole slide.
    """
    geometry = TileGeometry.from_attrs(tiles_attrs)
    with open_slide(spec.path, backend=spec.backend, mpp=spec.mpp, default_mpp=spec.default_mpp) as slide:  # type: ignore[arg-type]
        dims = list(slide.level_dimensions)
        downsample = slide.level_downsamples[geometry.level]
        level_width = dims[geometry.level][0]
    if fast:
        pyramid = JpegPyramid.open(spec.path, dims, DecodedTileCache())
        if pyramid is not None:
            reader = JpegTileReader(pyramid, downsample, geometry, workers)
            # Enough decoded tiles that each JPEG tile is decoded once in row-major order: the JPEG
            # rows under two rows of output tiles (the lower row reuses the upper one's last JPEG
            # row) and one more, across the tiles' span of the level; bounded, so RAM stays flat.
            level = pyramid.levels[geometry.level]
            s = reader.scale
            width = level_width if span0 is None else min(level_width, int(span0 / downsample) + reader.read_w)
            rows = 2 * (math.ceil(reader.read_h / level.tile_h) + 1) + 1
            tile_bytes = -(-level.tile_w // s) * -(-level.tile_h // s) * 3
            needed = rows * (width // level.tile_w + 2) * tile_bytes
            pyramid.cache.max_bytes = cache_bytes or int(min(1 << 30, max(64 << 20, needed)))
            return reader
    return BackendTileReader(spec, geometry, workers)
