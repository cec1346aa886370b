"""Tissue and ink polygons as GeoJSON that QuPath opens and edits (level-0 pixel coordinates).

Written with the RFC 7946 winding (exterior rings counter-clockwise, holes clockwise, by the
signed area of the coordinates as written) so strict GeoJSON consumers accept every file; read
back from any of the three shapes QuPath and others produce: a FeatureCollection, a bare JSON
array of Features (QuPath's default "Export objects" output) or a single Feature.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import shapely
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry
from shapely.ops import unary_union

from slidestream.atomic import atomic_write_text
from slidestream.errors import SlideStreamError

if TYPE_CHECKING:  # geopandas (with pandas and pyproj, ~0.7 s) loads only to read a GeoJSON into a frame
    import geopandas as gpd

TISSUE_CLASS = {"name": "Tissue", "color": [80, 180, 80]}
INK_CLASS = {"name": "Ink", "color": [200, 0, 200]}
GEOMETRY_TYPES = {"Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon",
                  "GeometryCollection"}


def rfc7946(geometries: Any) -> np.ndarray:
    """Geometries with exterior rings counter-clockwise and holes clockwise (RFC 7946 section 3.1.6)."""
    return shapely.orient_polygons(np.asarray(geometries, dtype=object).reshape(-1), exterior_cw=False)


def _collection(geometries: Any, properties: list[dict[str, Any]]) -> dict[str, Any]:
    """A FeatureCollection, one Feature per geometry with its properties as given (None values
    dropped, as geopandas' ``to_geo_dict(na="drop")`` does). Geometries are encoded by GEOS
    (``shapely.to_geojson``) in one call: iterating coordinates in Python took ~1 s per 100 k vertices."""
    return json.loads(collection_text(geometries, properties))


def collection_text(geometries: Any, properties: list[dict[str, Any]]) -> str:
    """:func:`_collection` as compact JSON text, assembled from GEOS's GeoJSON strings as they
    are: writing a file this way skips parsing and re-serialising every coordinate (a 2.7 MB
    file: ~0.4 s less)."""
    oriented = rfc7946(geometries)
    encoded = shapely.to_geojson(oriented).tolist() if len(oriented) else []
    features = ",".join(
        '{"type":"Feature","properties":' + json.dumps({k: v for k, v in props.items() if v is not None},
                                                       separators=(",", ":"), allow_nan=False)
        + ',"geometry":' + geometry + "}"
        for props, geometry in zip(properties, encoded, strict=True))
    return '{"type":"FeatureCollection","features":[' + features + "]}"


# GrandQC's artifact classes as QuPath classifications (names from the release; our short keys).
ARTIFACT_QUPATH_CLASSES: dict[str, dict[str, Any]] = {
    "fold": {"name": "Fold", "color": [230, 120, 20]},
    "darkspot": {"name": "Dark spot & foreign object", "color": [60, 60, 60]},
    "pen": {"name": "Pen marking", "color": [0, 140, 70]},  # not the classical Ink magenta: a reviewer tells them apart
    "edge": {"name": "Edge & air bubble", "color": [0, 170, 200]},
    "oof": {"name": "Out of focus", "color": [140, 140, 230]},
}


def _tissue_properties(gdf: gpd.GeoDataFrame) -> list[dict[str, Any]]:
    return _piece_properties(gdf["area_um2"].to_numpy(dtype=object) if "area_um2" in gdf.columns else [None] * len(gdf))


def _piece_properties(areas: Any) -> list[dict[str, Any]]:
    properties = []
    for i, area in enumerate(areas):  # one column pull, not one pandas lookup per piece
        props: dict[str, Any] = {"objectType": "annotation", "classification": dict(TISSUE_CLASS),
                                 "name": f"tissue {i + 1}"}
        if area is not None:
            props["measurements"] = {"area_um2": float(area)}
        properties.append(props)
    return properties


def to_feature_collection(gdf: gpd.GeoDataFrame) -> dict[str, Any]:
    """One annotation feature per tissue piece, classified ``Tissue``, with its area."""
    return _collection(gdf.geometry.to_numpy(), _tissue_properties(gdf))


def geometry_to_feature_collection(geometry: BaseGeometry | None, classification: dict[str, Any]) -> dict[str, Any]:
    """One feature per polygon of ``geometry`` with a QuPath classification (e.g. the ink)."""
    polygons = [] if geometry is None or geometry.is_empty else list(getattr(geometry, "geoms", [geometry]))
    properties = [{"objectType": "annotation", "classification": dict(classification)} for _ in polygons]
    return _collection(polygons, properties)


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



def write_feature_collection(collection: dict[str, Any], path: str | Path) -> Path:
    """Compact JSON, written atomically."""
    return atomic_write_text(path, json.dumps(collection, separators=(",", ":"), allow_nan=False))


def write_geojson(gdf: gpd.GeoDataFrame, path: str | Path) -> Path:
    """``gdf``'s tissue pieces as QuPath annotations at ``path`` (atomically): the same document
    as ``write_feature_collection(to_feature_collection(gdf))``, without the JSON round trip."""
    return atomic_write_text(path, collection_text(gdf.geometry.to_numpy(), _tissue_properties(gdf)))


def write_tissue_geojson(polygons: list[BaseGeometry], areas_um2: Any, path: str | Path) -> Path:
    """:func:`write_geojson` from the pieces and their areas (a ``TissueResult``'s ``polygons``
    and ``areas_um2``): the same file, without building a GeoDataFrame (geopandas' import)."""
    return atomic_write_text(path, collection_text(polygons, _piece_properties(np.asarray(areas_um2, dtype=object))))


def geometry_from_feature_collection(collection: dict[str, Any]) -> BaseGeometry | None:
    """The union of a FeatureCollection's geometries (e.g. a store's tissue), None when empty."""
    geoms = [shape(f["geometry"]) for f in collection.get("features", []) if f.get("geometry")]
    return unary_union(geoms) if geoms else None


def features_of(data: Any, path: str | Path | None = None) -> list[dict[str, Any]]:
    """The Features of parsed GeoJSON in any of its common shapes, or a clear error naming ``path``.

    FeatureCollection, a JSON array of Features (QuPath's default export), one Feature, or a bare
    geometry (wrapped as a Feature without properties).
    """
    def bad(reason: str) -> SlideStreamError:
        return SlideStreamError(path, f"not GeoJSON QuPath or slidestream can read: {reason}")

    if isinstance(data, list):
        items = data
    elif isinstance(data, dict) and data.get("type") == "FeatureCollection":
        items = data.get("features")
        if not isinstance(items, list):
            raise bad("a FeatureCollection without a 'features' list")
    elif isinstance(data, dict) and data.get("type") == "Feature":
        items = [data]
    elif isinstance(data, dict) and data.get("type") in GEOMETRY_TYPES:
        items = [{"type": "Feature", "geometry": data, "properties": {}}]
    else:
        kind = data.get("type") if isinstance(data, dict) else type(data).__name__
        raise bad(f"top-level {kind!r} is neither a FeatureCollection, a Feature array nor a Feature")
    for i, item in enumerate(items):
        if not isinstance(item, dict) or item.get("type") != "Feature":
            raise bad(f"item {i} is not a Feature")
    return items


def read_geojson(path: str | Path) -> gpd.GeoDataFrame:
    """Read our own, a QuPath-exported or a QuPath-edited GeoJSON into a GeoDataFrame.

    Properties become columns (``objectType``, ``classification``, ``name``, ...); features
    without a geometry are dropped.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise SlideStreamError(path, f"unreadable GeoJSON: {exc}") from exc
    import geopandas as gpd

    features = [f for f in features_of(data, path) if f.get("geometry")]
    if not features:
        return gpd.GeoDataFrame({"geometry": []}, geometry="geometry", crs=None)
    try:
        return gpd.GeoDataFrame.from_features(features, crs=None)
    except (ValueError, TypeError, KeyError, shapely.errors.ShapelyError) as exc:
        raise SlideStreamError(path, f"invalid GeoJSON geometry: {exc}") from exc
