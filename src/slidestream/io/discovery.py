"""Finding slides: directory walks, slide lists, DICOM series, and each slide's id.

A slide is what a user thinks of as one: a file for TIFF-family formats, a *series* for DICOM
(whatever was passed: its folder, any of its files, all of them, or a folder of series folders).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from slidestream.io.dicom import DicomSeries, folder_series, series_at

SLIDE_SUFFIXES = (
    ".svs", ".tif", ".tiff", ".ndpi", ".mrxs", ".scn", ".vms", ".vmu", ".bif", ".svslide",
    ".dcm", ".qptiff", ".czi",
)


@dataclass(frozen=True)
class SlideEntry:
    """A slide to process, with the mpp to assume if its file carries none (from a slide list)."""

    path: Path
    mpp: float | None = None


def is_slide_path(path: Path) -> bool:
    return path.suffix.lower() in SLIDE_SUFFIXES


def find_slides(inputs: Iterable[str | Path], *, recursive: bool = True) -> list[Path]:
    """Expand files, directories and ``.txt``/``.csv`` slide lists into slide paths, in order."""
    return [entry.path for entry in find_slide_entries(inputs, recursive=recursive)]


def find_slide_entries(inputs: Iterable[str | Path], *, recursive: bool = True) -> list[SlideEntry]:
    """Like :func:`find_slides`, keeping a per-slide ``mpp`` column of CSV slide lists.

    Explicit files are kept whatever their suffix (the user asked for them, and a wrongly named
    file should get a clear open error, not vanish). Directories contribute files with a known
    slide suffix. DICOM instances are grouped by series: each series is one entry, named by
    its folder when it has the folder to itself, else by its level-0 instance.
    """
    found: list[SlideEntry] = []
    seen: set[Path] = set()

    def add(p: Path, mpp: float | None = None) -> None:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            found.append(SlideEntry(p, mpp))

    def add_dicom_folder(folder: Path, mpp: float | None = None) -> None:
        for series in folder_series(folder.absolute()):
            add(_series_path(folder, series), mpp)

    def add_dicom_file(path: Path, mpp: float | None = None) -> None:
        try:
            series = series_at(path)
        except ValueError:  # not a WSI instance, or a label-only series: opening it says why
            add(path, mpp)
            return
        add(_series_path(path.parent, series), mpp)

    for item in inputs:
        path = Path(item)
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            folders = [path, *(c for c in sorted(path.glob(pattern)) if c.is_dir())]
            for folder in folders:
                if any(c.suffix.lower() == ".dcm" for c in folder.iterdir()):
                    add_dicom_folder(folder)
            for child in sorted(path.glob(pattern)):
                if child.is_file() and is_slide_path(child) and child.suffix.lower() != ".dcm":
                    add(child)
        elif path.suffix.lower() in (".txt", ".csv") and path.is_file():
            for entry in _read_slide_list(path):
                if entry.path.suffix.lower() == ".dcm" and entry.path.is_file():
                    add_dicom_file(entry.path, entry.mpp)
                else:
                    add(entry.path, entry.mpp)
        elif path.suffix.lower() == ".dcm" and path.is_file():
            add_dicom_file(path)
        else:
            add(path)
    return found


def _series_path(folder: Path, series: DicomSeries) -> Path:
    """The series' canonical path, spelled relative to what the user passed (``folder``)."""
    canonical = series.path
    return folder if canonical == series.folder else folder / canonical.name


def slide_id_for(path: Path) -> str:
    """A slide's id, which names its outputs (``<id>.zarr``).

    The file name without its slide extension (``x.svs`` -> ``x``; ``x.ome.tiff`` -> ``x.ome``);
    for a DICOM series, its container identifier when the file has a real one, else its folder
    name (with the series number when the folder holds several series): never a SOP UID.
    """
    path = Path(path)
    if path.suffix.lower() == ".dcm" or (path.is_dir() and any(c.suffix.lower() == ".dcm" for c in path.iterdir())):
        try:
            return series_at(path).slide_id
        except (OSError, ValueError):
            pass  # not a readable series: the plain name, and opening it will say what is wrong
    return path.stem if path.suffix else path.name


def _read_slide_list(path: Path) -> list[SlideEntry]:
    """A ``.txt`` with one path per line, or a ``.csv`` with a ``path`` column and optional ``mpp``.

    Relative paths are relative to the list's folder. The ``mpp`` column is used only for slides
    whose file carries no resolution (as ``--default-mpp`` is).
    """
    base = path.parent

    def resolve(p: str) -> Path:
        q = Path(p)
        return q if q.is_absolute() else base / q

    if path.suffix.lower() == ".txt":
        lines = [ln.strip() for ln in path.read_text().splitlines()]
        return [SlideEntry(resolve(ln)) for ln in lines if ln and not ln.startswith("#")]
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        fields = reader.fieldnames or []
        column = next((c for c in ("path", "slide_path", "slide", "image_path") if c in fields), None)
        if column is None:
            raise ValueError(f"{path}: slide list needs a 'path' column, found {fields}")
        entries = []
        for line, row in enumerate(reader, start=2):
            if not row.get(column):
                continue
            raw = (row.get("mpp") or "").strip()
            try:
                mpp = float(raw) if raw else None
            except ValueError:
                raise ValueError(f"{path}, line {line}: mpp {raw!r} is not a number") from None
            if mpp is not None and mpp <= 0:
                raise ValueError(f"{path}, line {line}: mpp must be positive, got {mpp}")
            entries.append(SlideEntry(resolve(row[column]), mpp))
    return entries
