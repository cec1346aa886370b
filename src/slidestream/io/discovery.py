"""Finding slides: directory walks, slide lists, DICOM series, and each slide's id.

A slide is what a user thinks of as one: a file for TIFF-family formats, a *series* for DICOM
(whatever was passed: its folder, any of its files, all of them, or a folder of series folders).
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from slidestream.io.dicom import DicomSeries, folder_series, series_at

SLIDE_SUFFIXES = (
    ".svs", ".tif", ".tiff", ".ndpi", ".mrxs", ".scn", ".vms", ".vmu", ".bif", ".svslide",
    ".dcm", ".qptiff", ".czi",
)


# No scanner writes level 0 coarser than this: a larger mpp is a typo (mm for um, 1e9, ...) and
# would only make the stages plan absurd geometry, so it is refused before any work.
MAX_LEVEL0_MPP = 100.0


@dataclass(frozen=True)
class SlideEntry:
    """A slide to process, with the mpp to assume if its file carries none (from a slide list).

    ``problem`` says why this entry cannot be processed (e.g. a bad ``mpp`` cell in its list row):
    the slide then fails as its own row, and the rest of the batch runs.
    """

    path: Path
    mpp: float | None = None
    problem: str | None = None


def check_mpp(value: float, what: str = "mpp") -> str | None:
    """Why ``value`` is not a usable level-0 um/px (None when it is)."""
    if not math.isfinite(value) or value <= 0:
        return f"{what} must be a positive finite number, got {value}"
    if value > MAX_LEVEL0_MPP:
        return f"{what} {value:g} um/px is implausible for a slide (at most {MAX_LEVEL0_MPP:g}); check the unit"
    return None


def is_slide_path(path: Path) -> bool:
    return path.suffix.lower() in SLIDE_SUFFIXES


def find_slides(inputs: Iterable[str | Path], *, recursive: bool = True) -> list[Path]:
    """Expand files, directories and ``.txt``/``.csv`` slide lists into slide paths, in order."""
    return [entry.path for entry in find_slide_entries(inputs, recursive=recursive)]


def find_slide_entries(inputs: Iterable[str | Path], *, recursive: bool = True,
                       notes: list[str] | None = None) -> list[SlideEntry]:
    """Like :func:`find_slides`, keeping a per-slide ``mpp`` column of CSV slide lists.

    Explicit files are kept whatever their suffix (the user asked for them, and a wrongly named
    file should get a clear open error, not vanish). Directories contribute files with a known
    slide suffix. DICOM instances are grouped by series: each series is one entry, named by
    its folder when it has the folder to itself, else by its level-0 instance.

    Nothing is dropped silently: the same path given twice is kept once, and entries that are
    links to one file are all kept (each under its own name), each with a line in ``notes``;
    a broken or looping symlink with a slide suffix in a folder is kept (it fails as its own row).
    """
    found: list[SlideEntry] = []
    seen: dict[str, Path] = {}       # absolute path as given -> entry path
    targets: dict[str, Path] = {}    # the file it resolves to -> the first entry naming it
    notes = notes if notes is not None else []

    def add(p: Path, mpp: float | None = None, problem: str | None = None) -> None:
        key = os.path.abspath(p)
        if key in seen:
            notes.append(f"{p} is listed more than once; processed once")
            return
        seen[key] = p
        try:
            target = str(p.resolve(strict=False))
        except (OSError, RuntimeError):   # a symlink loop
            target = key
        if target in targets:
            notes.append(f"{p} and {targets[target]} are the same file ({target}); both are processed, each under its own name")
        targets.setdefault(target, p)
        found.append(SlideEntry(p, mpp, problem))

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
                elif child.is_symlink() and not child.exists() and is_slide_path(child):
                    notes.append(f"{child} is a broken or looping symlink; it is reported as failed")
                    add(child)
        elif path.suffix.lower() in (".txt", ".csv") and path.is_file():
            for entry in _read_slide_list(path):
                if entry.path.suffix.lower() == ".dcm" and entry.path.is_file():
                    add_dicom_file(entry.path, entry.mpp)
                else:
                    add(entry.path, entry.mpp, entry.problem)
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

    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: slide list is not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start})") from None
    if path.suffix.lower() == ".txt":
        lines = [ln.strip() for ln in text.splitlines()]
        return [SlideEntry(resolve(ln)) for ln in lines if ln and not ln.startswith("#")]
    with open(path, newline="", encoding="utf-8") as fh:
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
            mpp, problem = None, None
            try:
                mpp = float(raw) if raw else None
            except ValueError:
                problem = f"mpp {raw!r} in {path.name}, line {line}, is not a number"
            if mpp is not None:
                problem = check_mpp(mpp, f"mpp in {path.name}, line {line},")
                mpp = None if problem else mpp
            entries.append(SlideEntry(resolve(row[column]), mpp, problem))
    return entries
