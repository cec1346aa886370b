"""slidestream: whole-slide images to tissue, tiles, features and slide embeddings.

The small public API; each stage is also usable on its own from its subpackage::

    import slidestream as ss

    with ss.open_slide("slide.svs") as slide:
        tissue = ss.detect_tissue(slide)
        grid = ss.tile_slide(slide, tissue, mpp=0.5, tile_size=224)
    ss.extract_features("slides/", encoder="uni", weights="~/weights/uni", out="out/")
    features, coords = ss.load_features("out/slide.zarr", "uni")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from slidestream.errors import (
    ConfigError,
    MissingMppError,
    ResolutionError,
    SlideOpenError,
    SlideReadError,
    SlideStreamError,
    StoreError,
    WeightsError,
)

# Loaded on first use (PEP 562): ``import slidestream`` costs milliseconds, not the seconds that
# zarr, pandas, shapely, cv2 and scipy take, which every Snakemake job and CLI call would pay.
_LAZY: dict[str, str] = {
    "__version__": "slidestream._version",
    "Slide": "slidestream.io",
    "find_slides": "slidestream.io",
    "open_slide": "slidestream.io",
    "extract_features": "slidestream.pipeline.api",
    "tile_pixels": "slidestream.pipeline.stages",
    "select_tiles": "slidestream.selection",
    "SlideStore": "slidestream.store",
    "export_h5": "slidestream.store",
    "load_features": "slidestream.store",
    "TileGrid": "slidestream.tiling",
    "tile_slide": "slidestream.tiling",
    "SelectionParams": "slidestream.tiling.params",
    "TilingParams": "slidestream.tiling.params",
    "TissueParams": "slidestream.tissue",
    "detect_tissue": "slidestream.tissue",
    "segment_tissue": "slidestream.tissue",
}

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time __getattr__ resolves these
    from slidestream._version import __version__
    from slidestream.io import Slide, find_slides, open_slide
    from slidestream.pipeline.api import extract_features
    from slidestream.pipeline.stages import tile_pixels
    from slidestream.selection import select_tiles
    from slidestream.store import SlideStore, export_h5, load_features
    from slidestream.tiling import TileGrid, tile_slide
    from slidestream.tiling.params import SelectionParams, TilingParams
    from slidestream.tissue import TissueParams, detect_tissue, segment_tissue


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'slidestream' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "ConfigError",
    "MissingMppError",
    "ResolutionError",
    "SelectionParams",
    "Slide",
    "SlideOpenError",
    "SlideReadError",
    "SlideStore",
    "SlideStreamError",
    "StoreError",
    "TileGrid",
    "TilingParams",
    "TissueParams",
    "WeightsError",
    "__version__",
    "detect_tissue",
    "export_h5",
    "extract_features",
    "find_slides",
    "load_features",
    "open_slide",
    "segment_tissue",
    "select_tiles",
    "tile_pixels",
    "tile_slide",
]
