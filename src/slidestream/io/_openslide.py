"""Backend over openslide-python (+ openslide-bin): vendor formats, MRXS, NDPI, DICOM."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import openslide


class OpenSlideBackend:
    name = "openslide"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._slide = openslide.OpenSlide(str(path))

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

    def read_rgba_or_rgb(self, location: tuple[int, int], level: int, size: tuple[int, int]) -> np.ndarray:
        image = self._slide.read_region(location, level, size)
        return np.asarray(image)

    def close(self) -> None:
        self._slide.close()


def library_version() -> str:
    return f"openslide-python {openslide.__version__}, libopenslide {openslide.__library_version__}"
