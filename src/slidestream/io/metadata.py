"""Physical resolution, objective power and vendor from whatever a slide file carries.

Microns per pixel come first: they are what makes tiles from different scanners comparable.
Sources are tried from the most to the least specific, and each answer records where it came
from, so a user can see *why* a slide was read at the resolution it was.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass

# Plausible range for brightfield WSI pixels (0.05 um: beyond any optical scanner; 100 um: a
# macro photo). Outside it, a resolution tag is a placeholder (e.g. 1 px/inch), not a measurement.
MPP_PLAUSIBLE = (0.05, 100.0)

_UNIT_TO_UM = {"centimeter": 1e4, "cm": 1e4, "inch": 25400.0, "millimeter": 1e3, "mm": 1e3,
               "micrometer": 1.0, "um": 1.0}
# OME-XML length units (UnitsLength) in micrometres; the micro sign and the Greek mu both occur.
_OME_UNIT_TO_UM = {"pm": 1e-6, "Å": 1e-4, "nm": 1e-3, "µm": 1.0, "μm": 1.0, "um": 1.0, "mm": 1e3,
                   "cm": 1e4, "dm": 1e5, "m": 1e6}


@dataclass(frozen=True)
class Resolution:
    mpp_x: float
    mpp_y: float
    source: str


def _as_float(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, tuple | list) and len(value) == 2:  # TIFF RATIONAL (num, den)
        num, den = value
        return float(num) / float(den) if float(den) else None
    try:
        number = float(str(value).strip())
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _plausible(mpp: float | None) -> bool:
    return mpp is not None and MPP_PLAUSIBLE[0] <= mpp <= MPP_PLAUSIBLE[1]


def resolution_from_properties(props: Mapping[str, object]) -> Resolution | None:
    """Microns per pixel at level 0, or None when the file carries no trustworthy value."""
    pairs = [
        ("openslide.mpp-x", "openslide.mpp-y"),
        ("tiffslide.mpp-x", "tiffslide.mpp-y"),
    ]
    for kx, ky in pairs:
        x, y = _as_float(props.get(kx)), _as_float(props.get(ky))
        if _plausible(x):
            return Resolution(x, y if _plausible(y) else x, kx.rsplit("-", 1)[0])
    aperio = _as_float(props.get("aperio.MPP"))
    if _plausible(aperio):
        return Resolution(aperio, aperio, "aperio.MPP")
    spacing = props.get("dicom.PixelSpacing") or props.get("dicom.PixelSpacing[0]")
    if spacing is not None:  # DICOM: row spacing \ column spacing, in millimetres
        parts = [p for p in str(spacing).replace("\\", " ").replace(",", " ").strip("[]() ").split() if p]
        values = [_as_float(p) for p in parts]
        if values and all(v is not None for v in values):
            row_mm = values[0]
            col_mm = values[1] if len(values) > 1 else values[0]
            if _plausible(col_mm * 1e3) and _plausible(row_mm * 1e3):
                return Resolution(col_mm * 1e3, row_mm * 1e3, "dicom.PixelSpacing")
    czi = _czi_resolution(props)
    if czi is not None:
        return czi
    ome = ome_resolution(props.get("tiff.ImageDescription"))
    if ome is not None:
        return ome
    return _resolution_from_tiff_tags(props)


def _czi_resolution(props: Mapping[str, object]) -> Resolution | None:
    """CZI ``Scaling/Items/Distance`` values are metres per pixel (as ZEN writes them)."""
    x, y = _as_float(props.get("czi.scaling-x-m")), _as_float(props.get("czi.scaling-y-m"))
    if x is None:
        return None
    mx = x * 1e6
    my = y * 1e6 if y is not None else mx
    if _plausible(mx) and _plausible(my):
        return Resolution(mx, my, "czi.Scaling.Distance")
    return None


def ome_resolution(description: object) -> Resolution | None:
    """mpp from an OME-XML ``Pixels`` element (``PhysicalSizeX/Y`` + unit, default µm)."""
    if not isinstance(description, str) or "<OME" not in description[:4096]:
        return None
    try:
        root = ET.fromstring(description)
    except ET.ParseError:
        return None
    pixels = next((el for el in root.iter() if re.sub(r"^\{.*\}", "", el.tag) == "Pixels"), None)
    if pixels is None:
        return None
    values = []
    for axis in ("X", "Y"):
        size = _as_float(pixels.get(f"PhysicalSize{axis}"))
        factor = _OME_UNIT_TO_UM.get(pixels.get(f"PhysicalSize{axis}Unit", "µm").strip())
        values.append(None if size is None or factor is None else size * factor)
    mx, my = values
    if not _plausible(mx):
        return None
    unit = pixels.get("PhysicalSizeXUnit", "µm")
    return Resolution(mx, my if _plausible(my) else mx, f"ome.PhysicalSizeX ({unit})")


def _resolution_from_tiff_tags(props: Mapping[str, object]) -> Resolution | None:
    unit = str(props.get("tiff.ResolutionUnit", "")).strip().lower()
    factor = _UNIT_TO_UM.get(unit)
    if factor is None:  # unit "none" or absent: the numbers are an aspect ratio, not a size
        return None
    xres, yres = _as_float(props.get("tiff.XResolution")), _as_float(props.get("tiff.YResolution"))
    if not xres or not yres:
        return None
    mpp_x, mpp_y = factor / xres, factor / yres
    if _plausible(mpp_x) and _plausible(mpp_y):
        return Resolution(mpp_x, mpp_y, f"tiff.XResolution ({unit})")
    return None


def objective_power(props: Mapping[str, object]) -> float | None:
    for key in ("openslide.objective-power", "tiffslide.objective-power", "slidestream.objective-power", "aperio.AppMag",
                "hamamatsu.SourceLens", "philips.DICOM_MAGNIFICATION"):
        value = _as_float(props.get(key))
        if value is not None and 0 < value <= 200:
            return value
    return None


def vendor(props: Mapping[str, object]) -> str | None:
    for key in ("openslide.vendor", "tiffslide.vendor", "slidestream.vendor"):
        value = props.get(key)
        if value and str(value) != "None":
            return str(value)
    return None
