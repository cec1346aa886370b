"""Backend over tiffslide: pure-Python TIFF reading, covers plain/strip TIFFs openslide rejects,
OME-TIFF SubIFD pyramids, and files behind fsspec URLs."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import tiffslide

from slidestream.io._base import LevelGridBackend, OpenSlideLikeBackend
from slidestream.io.remote import remote_url


class _LevelCoordinateTiffSlide(tiffslide.TiffSlide):
    """``read_region`` locations in level pixels (tiffslide's documented override point), so the
    sub-pixel sampling in :class:`LevelGridBackend` addresses exact level pixels."""

    def _read_region_loc_transform(self, location: tuple[int, int], level: int) -> tuple[int, int]:
        return int(location[0]), int(location[1])


class TiffSlideBackend(LevelGridBackend, OpenSlideLikeBackend):
    name = "tiffslide"

    def __init__(self, path: Path | str) -> None:
        self.path = path  # type: ignore[assignment]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # a URL (possibly squeezed through Path) is read through fsspec with range requests
            self._slide = _LevelCoordinateTiffSlide(remote_url(path) or str(path))
        # Touch the level structure now so a broken file fails at open, not at first read.
        _ = self._slide.level_dimensions

    def read_level(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        region = self._slide.read_region((x, y), level, (w, h), as_array=True, padding=False)
        if region.ndim == 2 or region.shape[2] == 1:  # greyscale TIFF
            region = np.repeat(region.reshape(h, w, 1), 3, axis=2)
        if region.dtype != np.uint8:
            raise TypeError(f"{self.path}: {region.dtype} pixels are not supported (8-bit RGB only)")
        return region


def library_version() -> str:
    return f"tiffslide {tiffslide.__version__}"
