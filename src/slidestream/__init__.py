"""slidestream: whole-slide images to tissue, tiles, features and slide embeddings.

The small public API; each stage is also usable on its own from its subpackage::

    import slidestream as ss

    with ss.open_slide("slide.svs") as slide:
        tissue = ss.detect_tissue(slide)
        grid = ss.tile_slide(slide, tissue.geometry, mpp=0.5, tile_size=224)
    ss.extract_features("slides/", encoder="uni", weights="~/weights/uni", out="out/")
    features, coords = ss.load_features("out/slide.zarr", "uni")
"""

from slidestream._version import __version__
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
from slidestream.io import Slide, find_slides, open_slide
from slidestream.pipeline.api import extract_features
from slidestream.pipeline.stages import tile_pixels
from slidestream.selection import select_tiles
from slidestream.store import SlideStore, export_h5, load_features
from slidestream.tiling import TileGrid, tile_slide
from slidestream.tiling.params import SelectionParams, TilingParams
from slidestream.tissue import TissueParams, detect_tissue, segment_tissue

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
