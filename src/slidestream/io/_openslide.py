"""Backend over openslide-python (+ openslide-bin): vendor formats, MRXS, NDPI, DICOM WSI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import openslide

from slidestream.io._base import OpenSlideLikeBackend


class OpenSlideBackend(OpenSlideLikeBackend):
    name = "openslide"

    def __init__(self, path: Path) -> None:
        self.path = path
        target = path
        if path.is_dir() or path.suffix.lower() == ".dcm":
            from slidestream.io.dicom import series_at

            # Openslide opens a whole DICOM series from any one of its files (it finds the
            # others in the folder by series UID); a folder is named by its level-0 instance.
            target = series_at(path).volumes[0].path
        self._slide = openslide.OpenSlide(str(target))

    def read_rgba_or_rgb(self, location: tuple[int, int], level: int, size: tuple[int, int]) -> np.ndarray:
        # openslide samples at the fractional level position itself (see _base)
        return np.asarray(self._slide.read_region(location, level, size))


def library_version() -> str:
    return f"openslide-python {openslide.__version__}, libopenslide {openslide.__library_version__}"
