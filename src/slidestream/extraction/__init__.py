"""Feature extraction: stream tiles out of slides into patch encoders, rows into the store."""

from slidestream.extraction.loader import iter_batches
from slidestream.extraction.reader import (
    BackendTileReader,
    JpegTileReader,
    TileGeometry,
    open_tile_reader,
)
from slidestream.extraction.runner import (
    ExtractOptions,
    FeaturesDone,
    extract_store,
    feature_provenance,
)

__all__ = [
    "BackendTileReader",
    "ExtractOptions",
    "FeaturesDone",
    "JpegTileReader",
    "TileGeometry",
    "extract_store",
    "feature_provenance",
    "iter_batches",
    "open_tile_reader",
]
