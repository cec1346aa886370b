"""Tissue detection: saturation/Otsu masks, pen-mark rejection, deep segmenters (HEST, GrandQC), polygons and GeoJSON."""

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
