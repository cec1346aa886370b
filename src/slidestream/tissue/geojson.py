"""Tissue polygons as GeoJSON that QuPath opens (level-0 pixel coordinates)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import geopandas as gpd
from shapely.geometry import mapping, shape
from shapely.geometry.base import BaseGeometry
from shapely.ops import unary_union

TISSUE_CLASS = {"name": "Tissue", "color": [80, 180, 80]}
INK_CLASS = {"name": "Ink", "color": [200, 0, 200]}
# GrandQC's artifact classes as QuPath classifications (names from the release; our short keys).
ARTIFACT_QUPATH_CLASSES: dict[str, dict[str, Any]] = {
    "fold": {"name": "Fold", "color": [230, 120, 20]},
    "darkspot": {"name": "Dark spot & foreign object", "color": [60, 60, 60]},
    "pen": {"name": "Pen marking", "color": [0, 140, 70]},  # not the classical Ink magenta: a reviewer tells them apart
    "edge": {"name": "Edge & air bubble", "color": [0, 170, 200]},
    "oof": {"name": "Out of focus", "color": [140, 140, 230]},
}


def to_feature_collection(gdf: gpd.GeoDataFrame) -> dict[str, Any]:
    """One annotation feature per tissue piece, classified ``Tissue``, with its area."""
    features = []
    for i, row in enumerate(gdf.itertuples(index=False)):
        properties: dict[str, Any] = {"objectType": "annotation", "classification": dict(TISSUE_CLASS),
                                      "name": f"tissue {i + 1}"}
        if hasattr(row, "area_um2") and row.area_um2 is not None:
            properties["measurements"] = {"area_um2": float(row.area_um2)}
        features.append({"type": "Feature", "geometry": mapping(row.geometry), "properties": properties})
    return {"type": "FeatureCollection", "features": features}


def geometry_to_feature_collection(geometry: BaseGeometry | None, classification: dict[str, Any]) -> dict[str, Any]:
    """One feature per polygon of ``geometry`` with a QuPath classification (e.g. the ink)."""
    polygons = [] if geometry is None or geometry.is_empty else list(getattr(geometry, "geoms", [geometry]))
    return {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": mapping(p),
         "properties": {"objectType": "annotation", "classification": dict(classification)}} for p in polygons]}


def artifacts_to_feature_collection(artifacts: dict[str, BaseGeometry]) -> dict[str, Any]:
    """One QuPath-classified annotation per artifact polygon (GrandQC classes), with its class key."""
    features = []
    for key, geometry in artifacts.items():
        for feature in geometry_to_feature_collection(geometry, ARTIFACT_QUPATH_CLASSES[key])["features"]:
            feature["properties"]["name"] = key
            features.append(feature)
    return {"type": "FeatureCollection", "features": features}


def artifacts_from_feature_collection(collection: dict[str, Any] | None) -> dict[str, BaseGeometry]:
    """Artifact class key -> union of its polygons (the inverse of the function above)."""
    parts: dict[str, list[BaseGeometry]] = {}
    for f in (collection or {}).get("features", []):
        key = f.get("properties", {}).get("name")
        if key in ARTIFACT_QUPATH_CLASSES and f.get("geometry"):
            parts.setdefault(key, []).append(shape(f["geometry"]))
    return {k: unary_union(v) for k, v in parts.items()}


def write_geojson(gdf: gpd.GeoDataFrame, path: Path) -> Path:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(to_feature_collection(gdf)))
    tmp.replace(path)
    return path


def geometry_from_feature_collection(collection: dict[str, Any]) -> BaseGeometry | None:
    """The union of a FeatureCollection's geometries (e.g. a store's tissue), None when empty."""
    geoms = [shape(f["geometry"]) for f in collection.get("features", []) if f.get("geometry")]
    return unary_union(geoms) if geoms else None


def read_geojson(path: Path) -> gpd.GeoDataFrame:
    """Read our own (or a QuPath-edited) tissue GeoJSON back into a GeoDataFrame."""
    data = json.loads(Path(path).read_text())
    features = data.get("features", []) if data.get("type") == "FeatureCollection" else [data]
    geoms = [shape(f["geometry"]) for f in features if f.get("geometry")]
    return gpd.GeoDataFrame({"geometry": geoms}, geometry="geometry", crs=None)
