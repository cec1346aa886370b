"""Finding slide files: directory walks and slide lists."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

SLIDE_SUFFIXES = (
    ".svs", ".tif", ".tiff", ".ndpi", ".mrxs", ".scn", ".vms", ".vmu", ".bif", ".svslide",
    ".dcm", ".qptiff",
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
    slide suffix; a DICOM folder counts once, as the folder.
    """
    found: list[SlideEntry] = []
    seen: set[Path] = set()

    def add(p: Path, mpp: float | None = None) -> None:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            found.append(SlideEntry(p, mpp))

    for item in inputs:
        path = Path(item)
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            for child in sorted(path.glob(pattern)):
                if (child.is_file() and is_slide_path(child) and child.suffix.lower() != ".dcm") or (child.is_dir() and any(c.suffix.lower() == ".dcm" for c in child.iterdir())):
                    add(child)
        elif path.suffix.lower() in (".txt", ".csv") and path.is_file():
            for entry in _read_slide_list(path):
                add(entry.path, entry.mpp)
        else:
            add(path)
    return found


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
