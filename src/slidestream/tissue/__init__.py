"""Tissue detection: saturation/Otsu masks, pen-mark rejection, deep segmenters (HEST, GrandQC), polygons and GeoJSON.

The names below are resolved on first use (PEP 562): a command that only needs
``TissueParams`` (for its ``--help`` defaults) must not pay for OpenCV, shapely and the
slide readers that detection imports.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from slidestream.tissue.detect import TissueResult, detect_tissue, working_mpp
    from slidestream.tissue.geojson import (
        ARTIFACT_QUPATH_CLASSES,
        INK_CLASS,
        TISSUE_CLASS,
        artifacts_from_feature_collection,
        artifacts_to_feature_collection,
        features_of,
        geometry_from_feature_collection,
        geometry_to_feature_collection,
        read_geojson,
        rfc7946,
        to_feature_collection,
        write_feature_collection,
        write_geojson,
        write_tissue_geojson,
    )
    from slidestream.tissue.masks import tissue_mask
    from slidestream.tissue.params import TissueParams
    from slidestream.tissue.polygons import mask_to_polygons, rasterize
    from slidestream.tissue.segment import segment_tissue

_WHERE = {
    "TissueResult": "detect",
    "detect_tissue": "detect",
    "working_mpp": "detect",
    "ARTIFACT_QUPATH_CLASSES": "geojson",
    "INK_CLASS": "geojson",
    "TISSUE_CLASS": "geojson",
    "artifacts_from_feature_collection": "geojson",
    "artifacts_to_feature_collection": "geojson",
    "features_of": "geojson",
    "geometry_from_feature_collection": "geojson",
    "geometry_to_feature_collection": "geojson",
    "read_geojson": "geojson",
    "rfc7946": "geojson",
    "to_feature_collection": "geojson",
    "write_feature_collection": "geojson",
    "write_geojson": "geojson",
    "write_tissue_geojson": "geojson",
    "tissue_mask": "masks",
    "TissueParams": "params",
    "mask_to_polygons": "polygons",
    "rasterize": "polygons",
    "segment_tissue": "segment",
}

__all__ = [
    "ARTIFACT_QUPATH_CLASSES",
    "INK_CLASS",
    "TISSUE_CLASS",
    "TissueParams",
    "TissueResult",
    "artifacts_from_feature_collection",
    "artifacts_to_feature_collection",
    "detect_tissue",
    "features_of",
    "geometry_from_feature_collection",
    "geometry_to_feature_collection",
    "mask_to_polygons",
    "rasterize",
    "read_geojson",
    "rfc7946",
    "segment_tissue",
    "tissue_mask",
    "to_feature_collection",
    "working_mpp",
    "write_feature_collection",
    "write_geojson",
    "write_tissue_geojson",
]
assert sorted(__all__) == sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])
