"""Backend over openslide-python (+ openslide-bin): vendor formats, MRXS, NDPI, DICOM."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import openslide

from slidestream.io.backend import OpenSlideLikeBackend


class OpenSlideBackend(OpenSlideLikeBackend):
    name = "openslide"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._slide = openslide.OpenSlide(str(path))

    def read_rgba_or_rgb(self, location: tuple[int, int], level: int, size: tuple[int, int]) -> np.ndarray:
        return np.asarray(self._slide.read_region(location, level, size))


def library_version() -> str:
    return f"openslide-python {openslide.__version__}, libopenslide {openslide.__library_version__}"
