"""Tissue polygons as GeoJSON that QuPath opens (level-0 pixel coordinates)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import geopandas as gpd
from shapely.geometry import mapping, shape
from shapely.geometry.base import BaseGeometry
from shapely.ops import unary_union

from slidestream.atomic import atomic_write_text

TISSUE_CLASS = {"name": "Tissue", "color": [80, 180, 80]}
INK_CLASS = {"name": "Ink", "color": [200, 0, 200]}


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


def write_geojson(gdf: gpd.GeoDataFrame, path: Path) -> Path:
    return atomic_write_text(path, json.dumps(to_feature_collection(gdf)))


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
