"""Backend over pylibCZIrw, Zeiss's own CZI library (Axioscan / ZEN files).

Chosen over bioio-czi (which wraps the same libCZI through aicspylibczi plus the bioio stack)
because it installs as one wheel and reads a region in one call at any zoom; see
``benchmarks/results/formats.md``. Levels are the pyramid layers the file actually stores
(sub-blocks at zoom 1, 1/2, 1/4, ...); a file without a pyramid is one level.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from pylibCZIrw import czi as pyczi

from slidestream.io._base import LevelGridBackend

_WHITE = (1.0, 1.0, 1.0)


class CziBackend(LevelGridBackend):
    name = "czi"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._czi = pyczi.CziReader(str(path))
        try:
            self._setup()
        except Exception:
            self.close()
            raise

    def _setup(self) -> None:
        rect = self._czi.total_bounding_rectangle
        self._x0, self._y0 = rect.x, rect.y  # CZI coordinates may start anywhere, even < 0
        w0, h0 = rect.w, rect.h
        if w0 <= 0 or h0 <= 0:
            raise ValueError("CZI has an empty bounding rectangle")
        types = set(self._czi.pixel_types.values())
        if not types <= {"Bgr24", "Gray8"}:
            raise ValueError(f"pixel types {sorted(types)} are not supported (8-bit BGR or grey only)")
        bbox = self._czi.total_bounding_box
        if any(bbox.get(d, (0, 1))[1] - bbox.get(d, (0, 1))[0] > 1 for d in ("C", "Z", "T")):
            raise ValueError(f"multi-channel / z / time CZI ({bbox}) is not a brightfield slide")
        zooms: set[float] = set()

        def collect(_index: int, info: object) -> bool:
            zooms.add(round(float(info.get_zoom()), 4))  # type: ignore[attr-defined]
            return True

        self._czi.enumerate_subblocks(collect)
        # pyramid layers: stored zooms, each at least 1.5x coarser than the previous one
        layers: list[float] = []
        for z in sorted(zooms or {1.0}, reverse=True):
            if z > 0 and (not layers or z < layers[-1] / 1.5):
                layers.append(z)
        if layers[0] < 0.999:
            layers.insert(0, 1.0)
        self._zooms = layers
        self.level_dimensions = tuple((max(1, round(w0 * z)), max(1, round(h0 * z))) for z in layers)
        self.level_downsamples = tuple((w0 / w + h0 / h) / 2.0 for w, h in self.level_dimensions)
        self._props = self._read_properties()

    def _read_properties(self) -> dict[str, object]:
        props: dict[str, object] = {"slidestream.vendor": "zeiss-czi"}
        with contextlib.suppress(Exception):  # metadata layouts vary; mpp is then simply absent
            items = self._czi.metadata["ImageDocument"]["Metadata"]["Scaling"]["Items"]["Distance"]
            for item in items if isinstance(items, list) else [items]:
                axis = str(item.get("@Id", "")).lower()
                if axis in ("x", "y") and item.get("Value") is not None:
                    props[f"czi.scaling-{axis}-m"] = item["Value"]
        with contextlib.suppress(Exception):
            objective = self._czi.metadata["ImageDocument"]["Metadata"]["Information"]["Instrument"]["Objectives"]["Objective"]
            objective = objective[0] if isinstance(objective, list) else objective
            if objective.get("NominalMagnification"):
                props["slidestream.objective-power"] = objective["NominalMagnification"]
        return props

    @property
    def properties(self) -> Mapping[str, object]:
        return self._props

    @property
    def associated_images(self) -> tuple[str, ...]:
        return ()

    def read_level(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        down = self.level_downsamples[level]
        if level == 0:
            roi = (self._x0 + x, self._y0 + y, w, h)
            data = self._czi.read(roi=roi, background_pixel=_WHITE)
        else:
            roi = (self._x0 + round(x * down), self._y0 + round(y * down), round(w * down), round(h * down))
            data = self._czi.read(roi=roi, zoom=self._zooms[level], background_pixel=_WHITE)
            if data.shape[:2] != (h, w):  # libCZI rounds the zoomed size; keep the asked-for grid
                from PIL import Image

                data = np.asarray(Image.fromarray(np.ascontiguousarray(data[..., ::-1] if data.shape[2] == 3 else data[..., 0]))
                                  .resize((w, h)))
                return data if data.ndim == 3 else np.repeat(data[..., None], 3, axis=2)
        if data.shape[2] == 1:
            return np.repeat(data, 3, axis=2)
        return np.ascontiguousarray(data[..., ::-1])  # BGR -> RGB

    def close(self) -> None:
        if getattr(self, "_czi", None) is not None:
            with contextlib.suppress(Exception):
                self._czi.close()
            self._czi = None


def library_version() -> str:
    import importlib.metadata

    return f"pylibCZIrw {importlib.metadata.version('pylibCZIrw')}"
