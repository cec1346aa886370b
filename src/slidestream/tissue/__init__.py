"""Tissue detection: saturation/Otsu masks, pen-mark rejection, polygons and GeoJSON."""

from slidestream.tissue.detect import TissueResult, detect_tissue, working_mpp
from slidestream.tissue.geojson import (
    INK_CLASS,
    features_of,
    geometry_from_feature_collection,
    geometry_to_feature_collection,
    read_geojson,
    rfc7946,
    to_feature_collection,
    write_feature_collection,
    write_geojson,
)
from slidestream.tissue.masks import tissue_mask
from slidestream.tissue.params import TissueParams
from slidestream.tissue.polygons import mask_to_polygons, rasterize

__all__ = [
    "INK_CLASS",
    "TissueParams",
    "TissueResult",
    "detect_tissue",
    "features_of",
    "geometry_from_feature_collection",
    "geometry_to_feature_collection",
    "mask_to_polygons",
    "rasterize",
    "read_geojson",
    "rfc7946",
    "tissue_mask",
    "to_feature_collection",
    "working_mpp",
    "write_feature_collection",
    "write_geojson",
]
