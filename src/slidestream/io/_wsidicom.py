"""Backend over wsidicom (+ pydicom): DICOM WSI series, TILED_FULL and TILED_SPARSE, JPEG,
JPEG 2000 and uncompressed frames, without openslide."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import wsidicom

from slidestream.io._base import LevelGridBackend
from slidestream.io.dicom import series_at


class WsiDicomBackend(LevelGridBackend):
    name = "wsidicom"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.series = series_at(path)
        # Only this series' files: a folder may hold other series, which wsidicom would mix in.
        self._wsi = wsidicom.WsiDicom.open(self.series.files)
        self._levels = sorted(self._wsi.levels, key=lambda lvl: -lvl.size.width * lvl.size.height)
        w0, h0 = self._levels[0].size.width, self._levels[0].size.height
        self.level_dimensions = tuple((lvl.size.width, lvl.size.height) for lvl in self._levels)
        # openslide's convention: the mean of the two axes' ratios
        self.level_downsamples = tuple((w0 / w + h0 / h) / 2.0 for w, h in self.level_dimensions)

    @property
    def properties(self) -> Mapping[str, object]:
        props: dict[str, object] = {"slidestream.vendor": "dicom", "dicom.SeriesInstanceUID": self.series.uid}
        spacing = self._levels[0].pixel_spacing  # millimetres (width, height)
        if spacing is not None:
            props["dicom.PixelSpacing"] = f"{spacing.height}\\{spacing.width}"  # DICOM order: row\column
        container = next((i.container_id for i in self.series.instances if i.container_id), None)
        if container:
            props["dicom.ContainerIdentifier"] = container
        return props

    @property
    def associated_images(self) -> tuple[str, ...]:
        flavors = {i.flavor for i in self.series.instances}
        return tuple(n for f, n in (("LABEL", "label"), ("OVERVIEW", "macro"), ("THUMBNAIL", "thumbnail")) if f in flavors)

    def read_level(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        image = self._wsi.read_region((x, y), self._levels[level].level, (w, h))
        return np.asarray(image.convert("RGB") if image.mode != "RGB" else image)

    def close(self) -> None:
        self._wsi.close()


def library_version() -> str:
    return f"wsidicom {wsidicom.__version__}"
