"""DICOM WSI: which ``.dcm`` instances make up one slide.

A DICOM whole-slide image is a *series* of instances: one per pyramid level (image type
``VOLUME``), plus ``THUMBNAIL``, ``LABEL`` and ``OVERVIEW`` images, often in one folder with
other series. Users think of the series as the slide, so everything here works on series:
a folder, any one file, or all files of a series name the same slide. Only headers are read
(pydicom, stopping before the pixel data), so grouping a folder costs milliseconds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

WSI_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.77.1.6"  # VL Whole Slide Microscopy Image Storage
_TAGS = ["SOPClassUID", "SeriesInstanceUID", "StudyInstanceUID", "ImageType", "TotalPixelMatrixColumns",
         "TotalPixelMatrixRows", "ContainerIdentifier", "SeriesNumber", "SOPInstanceUID"]
# Placeholders converters write when the source had no identifier: never a slide id.
_NO_ID = {"", "unknown", "none", "n/a", "na", "null", "-"}


@dataclass(frozen=True)
class DicomInstance:
    """The header facts of one WSI instance that decide its place in a slide."""

    path: Path
    series_uid: str
    study_uid: str
    flavor: str  # VOLUME, THUMBNAIL, LABEL or OVERVIEW (ImageType value 3)
    width: int
    height: int
    container_id: str | None
    series_number: str | None


@dataclass(frozen=True)
class DicomSeries:
    """One slide: the instances of one series, and where they live."""

    uid: str
    folder: Path
    instances: tuple[DicomInstance, ...]
    folder_series_count: int  # WSI series in the same folder (decides the id and the path)
    id_suffix: str = ""  # set when the folder holds several series: the series number, or a UID tail

    @property
    def volumes(self) -> list[DicomInstance]:
        """Pyramid levels, largest first."""
        return sorted((i for i in self.instances if i.flavor == "VOLUME"), key=lambda i: (-i.width * i.height, str(i.path)))

    @property
    def files(self) -> list[Path]:
        return sorted(i.path for i in self.instances)

    @property
    def path(self) -> Path:
        """The canonical path of this slide: its folder when it has the folder to itself,
        else its level-0 instance (any file of a series opens the whole series)."""
        return self.folder if self.folder_series_count == 1 else self.volumes[0].path

    @property
    def slide_id(self) -> str:
        """Stable and readable: the container (slide) identifier when the file has a real one,
        else the folder name; suffixed with the series number when the folder holds several."""
        ids = {i.container_id for i in self.instances if i.container_id}
        base = _safe(sorted(ids)[0]) if ids else _safe(self.folder.name) or "dicom"
        return f"{base}-{self.id_suffix}" if self.id_suffix else base


def _safe(text: str | None) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", (text or "").strip()).strip("._")


def is_dicom_path(path: Path) -> bool:
    """A ``.dcm`` file, or a folder that directly holds ``.dcm`` files."""
    if path.suffix.lower() == ".dcm":
        return True
    return path.is_dir() and _has_dcm(path)


def _has_dcm(folder: Path) -> bool:
    return any(c.suffix.lower() == ".dcm" and c.is_file() for c in folder.iterdir())


def read_instance(path: Path) -> DicomInstance | None:
    """The instance's header facts, or None when the file is not a DICOM WSI instance."""
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=_TAGS)
    except Exception:  # not DICOM, or damaged: not an instance (opening it later says why)
        return None
    if str(ds.get("SOPClassUID", "")) != WSI_SOP_CLASS or "SeriesInstanceUID" not in ds:
        return None
    image_type = [str(v).upper() for v in (ds.get("ImageType") or [])]
    flavor = image_type[2] if len(image_type) > 2 else "VOLUME"
    container = str(ds.get("ContainerIdentifier", "") or "").strip()
    number = ds.get("SeriesNumber")
    return DicomInstance(
        path=path, series_uid=str(ds.SeriesInstanceUID), study_uid=str(ds.get("StudyInstanceUID", "")),
        flavor=flavor, width=int(ds.get("TotalPixelMatrixColumns") or 0), height=int(ds.get("TotalPixelMatrixRows") or 0),
        container_id=None if container.lower() in _NO_ID else container,
        series_number=None if number in (None, "") else str(number),
    )


@lru_cache(maxsize=256)
def folder_series(folder: Path) -> tuple[DicomSeries, ...]:
    """Every WSI series with at least one VOLUME instance among ``folder``'s ``.dcm`` files."""
    instances = [i for p in sorted(folder.iterdir()) if p.suffix.lower() == ".dcm" and p.is_file()
                 if (i := read_instance(p)) is not None]
    groups: dict[str, list[DicomInstance]] = {}
    for inst in instances:
        groups.setdefault(inst.series_uid, []).append(inst)
    slides = {uid: insts for uid, insts in groups.items() if any(i.flavor == "VOLUME" for i in insts)}
    numbers = {uid: next((i.series_number for i in insts if i.series_number), None) for uid, insts in slides.items()}
    unique_numbers = len(set(numbers.values())) == len(numbers) and None not in numbers.values()
    series = []
    for uid, insts in slides.items():
        suffix = ""
        if len(slides) > 1:  # several slides share the folder: tell them apart, stably
            suffix = f"s{_safe(numbers[uid])}" if unique_numbers else uid.rsplit(".", 1)[-1][-10:]
        series.append(DicomSeries(uid, folder, tuple(insts), len(slides), suffix))
    return tuple(sorted(series, key=lambda s: (s.instances[0].series_number or "", s.uid)))


def series_at(path: Path) -> DicomSeries:
    """The one series ``path`` names: a folder holding exactly one, or a file of it.

    Raises ``ValueError`` with the reason (no WSI instances; several series in the folder).
    """
    path = Path(path).absolute()
    if path.is_dir():
        found = folder_series(path)
        if not found:
            raise ValueError("no DICOM WSI instances with a pyramid level (VOLUME) in this folder")
        if len(found) > 1:
            raise ValueError(f"folder holds {len(found)} DICOM series ({', '.join(s.slide_id for s in found)}); "
                             "pass the folder to discovery (one slide per series) or one file of the series")
        return found[0]
    inst = read_instance(path)
    if inst is None:
        raise ValueError("not a DICOM whole-slide image instance")
    for series in folder_series(path.parent):
        if series.uid == inst.series_uid:
            return series
    raise ValueError(f"DICOM series {inst.series_uid} has no pyramid level (VOLUME instance), only {inst.flavor}")
