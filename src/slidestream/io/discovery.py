"""Finding slide files: directory walks and slide lists."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

SLIDE_SUFFIXES = (
    ".svs", ".tif", ".tiff", ".ndpi", ".mrxs", ".scn", ".vms", ".vmu", ".bif", ".svslide",
    ".dcm", ".qptiff",
)


def is_slide_path(path: Path) -> bool:
    return path.suffix.lower() in SLIDE_SUFFIXES


def find_slides(inputs: Iterable[str | Path], *, recursive: bool = True) -> list[Path]:
    """Expand files, directories and ``.txt``/``.csv`` slide lists into slide paths, in order.

    Explicit files are kept whatever their suffix (the user asked for them, and a wrongly named
    file should get a clear open error, not vanish). Directories contribute files with a known
    slide suffix; a DICOM folder counts once, as the folder.
    """
    found: list[Path] = []
    seen: set[Path] = set()

    def add(p: Path) -> None:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            found.append(p)

    for item in inputs:
        path = Path(item)
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            for child in sorted(path.glob(pattern)):
                if (child.is_file() and is_slide_path(child) and child.suffix.lower() != ".dcm") or (child.is_dir() and any(c.suffix.lower() == ".dcm" for c in child.iterdir())):
                    add(child)
        elif path.suffix.lower() in (".txt", ".csv") and path.is_file():
            for p in _read_slide_list(path):
                add(p)
        else:
            add(path)
    return found


def _read_slide_list(path: Path) -> list[Path]:
    """A ``.txt`` with one path per line, or a ``.csv`` with a ``path`` (or ``slide``) column."""
    base = path.parent
    if path.suffix.lower() == ".txt":
        lines = [ln.strip() for ln in path.read_text().splitlines()]
        entries = [ln for ln in lines if ln and not ln.startswith("#")]
    else:
        import csv

        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            column = next((c for c in ("path", "slide_path", "slide", "image_path") if c in (reader.fieldnames or [])), None)
            if column is None:
                raise ValueError(f"{path}: slide list needs a 'path' column, found {reader.fieldnames}")
            entries = [row[column] for row in reader if row.get(column)]
    return [p if p.is_absolute() else base / p for p in map(Path, entries)]
