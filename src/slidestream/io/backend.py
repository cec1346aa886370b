"""Which backend reads which slide: the one place that decides it.

``auto`` tries, in order, the backends that read a format completely and fastest (measured:
``benchmarks/results/formats.md``); an explicit name forces that backend, so a user can
compare readers or work around one.

- DICOM WSI series (a folder of ``.dcm`` instances, or one of them): wsidicom, then openslide 4
  (same pixels, to 0.5 grey levels; wsidicom reads regions 2.5-5x faster, openslide's sub-pixel
  path through cairo is slow).
- CZI (Zeiss): pylibCZIrw, Zeiss's own reader.
- OME-TIFF: tiffslide first, because openslide sees only the first page of a SubIFD pyramid.
- everything else: openslide (vendor formats), then tiffslide (plain and strip TIFFs).
"""

from __future__ import annotations

import importlib
from pathlib import Path

from slidestream.io._base import Backend, composite_on_white

__all__ = ["BACKENDS", "Backend", "candidates", "composite_on_white", "make_backend"]

BACKENDS: tuple[str, ...] = ("openslide", "tiffslide", "wsidicom", "czi")

# What each backend needs installed, for the error when it is missing.
_PACKAGES = {"openslide": "openslide-python openslide-bin", "tiffslide": "tiffslide",
             "wsidicom": "wsidicom", "czi": "pylibCZIrw"}


# Imported on first use: a user without pylibCZIrw can still read everything else.
_CLASSES = {"openslide": ("slidestream.io._openslide", "OpenSlideBackend"),
            "tiffslide": ("slidestream.io._tiffslide", "TiffSlideBackend"),
            "wsidicom": ("slidestream.io._wsidicom", "WsiDicomBackend"),
            "czi": ("slidestream.io._czi", "CziBackend")}


def candidates(path: Path) -> tuple[str, ...]:
    """Backends ``auto`` tries for ``path``, best first."""
    from slidestream.io.dicom import is_dicom_path

    if is_dicom_path(path):
        return ("wsidicom", "openslide")
    name = path.name.lower()
    if name.endswith(".czi"):
        return ("czi",)
    if name.endswith((".ome.tif", ".ome.tiff")) or _is_ome_tiff(path):
        return ("tiffslide", "openslide")
    return ("openslide", "tiffslide")


def _is_ome_tiff(path: Path) -> bool:
    if path.suffix.lower() not in (".tif", ".tiff", ".btf") or not path.is_file():
        return False
    try:
        import tifffile

        with tifffile.TiffFile(path) as tif:
            return bool(tif.is_ome)
    except Exception:  # not a TIFF after all: let the backends say why
        return False


def make_backend(name: str, path: Path) -> Backend:
    """Open ``path`` with backend ``name``; raises whatever that backend raises."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of auto, {', '.join(BACKENDS)}")
    module, cls_name = _CLASSES[name]
    try:
        cls = getattr(importlib.import_module(module), cls_name)
    except ImportError as exc:
        raise ImportError(f"backend {name} needs {_PACKAGES[name]} installed ({exc})") from exc
    return cls(path)
