"""Backend over tiffslide: pure-Python TIFF reading, covers plain/strip TIFFs openslide rejects."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import tiffslide

from slidestream.io.backend import OpenSlideLikeBackend


class TiffSlideBackend(OpenSlideLikeBackend):
    name = "tiffslide"

    def __init__(self, path: Path) -> None:
        self.path = path
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._slide = tiffslide.TiffSlide(str(path))
        # Touch the level structure now so a broken file fails at open, not at first read.
        _ = self._slide.level_dimensions

    def read_rgba_or_rgb(self, location: tuple[int, int], level: int, size: tuple[int, int]) -> np.ndarray:
        region = self._slide.read_region(location, level, size, as_array=True, padding=False)
        if region.ndim == 2:  # greyscale TIFF
            region = np.repeat(region[..., None], 3, axis=2)
        if region.dtype != np.uint8:
            raise TypeError(f"{self.path}: {region.dtype} pixels are not supported (8-bit RGB only)")
        return region


def library_version() -> str:
    return f"tiffslide {tiffslide.__version__}"
