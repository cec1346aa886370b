"""The tissue node's geometry in binary: WKB pieces, their areas, and the detector's raster mask.

Tissue used to live in the node's attributes as a GeoJSON FeatureCollection: a 2.7 MB JSON
document on a 100k-pixel slide, serialised, digested and parsed again on every read (~3 s of a
``slidestream tile`` run). Here each piece is its WKB (one ``uint8`` array of the pieces end to
end, with an ``int64`` offsets array), its area in um^2 is a ``float64`` array, and the mask the
pieces were traced from is a ``bool`` array: tiling takes its coverage from that mask, exactly as
the API does from a fresh detection. All three are made by ``integrity.create_array`` (zstd,
crc32c per chunk) and read back through ``read_array``, so damage is refused, never read as tissue.

The QuPath GeoJSON (the ``<id>.geojson`` file, ``read_tissue_geojson``) is rebuilt from the WKB
on demand; stores written before this layout (``geojson`` attribute) still read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import shapely
from shapely.geometry import MultiPolygon
from shapely.geometry.base import BaseGeometry

from slidestream.errors import StoreError
from slidestream.store.integrity import Member, read_array

GEOMETRY_FORMAT = "wkb"
WKB, OFFSETS, AREAS, MASK = "wkb", "wkb_offsets", "area_um2", "mask"
ARRAYS = (WKB, OFFSETS, AREAS)
WKB_CHUNK = 4 << 20     # bytes per chunk of the WKB array
MASK_CHUNK = 2048       # mask chunk side (a 1600 px mask is one chunk)


def members(geometries: Any, areas_um2: Any, mask: np.ndarray | None) -> dict[str, Member]:
    """The tissue node's arrays (WKB bytes, offsets, areas, and the mask when given), in order."""
    geoms = np.asarray(geometries, dtype=object).reshape(-1)
    pieces = shapely.to_wkb(geoms) if len(geoms) else np.zeros(0, dtype=object)
    lengths = np.fromiter((len(p) for p in pieces), dtype=np.int64, count=len(pieces))
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    data = np.frombuffer(b"".join(pieces.tolist()), dtype=np.uint8)
    areas = np.asarray(areas_um2, dtype=np.float64).reshape(-1)
    if len(areas) != len(geoms):
        raise ValueError(f"{len(geoms)} tissue pieces but {len(areas)} areas")
    arrays = {WKB: Member(data, (max(1, min(len(data), WKB_CHUNK)),)),
              OFFSETS: Member(offsets, (len(offsets),)),
              AREAS: Member(areas, (max(1, len(areas)),))}
    if mask is not None:
        mask = np.ascontiguousarray(mask, dtype=bool)
        arrays[MASK] = Member(mask, tuple(max(1, min(n, MASK_CHUNK)) for n in mask.shape))
    return arrays


def node_attrs(n_pieces: int, summary: dict[str, Any], params: dict[str, Any],
               **optional: dict[str, Any] | None) -> dict[str, Any]:
    """The tissue node's attributes (the write adds ``arrays``, its member list).
    ``optional``: classification, ink (``ink_geojson``), artifacts (``artifacts_geojson``), provenance."""
    attrs: dict[str, Any] = {"geometry_format": GEOMETRY_FORMAT, "summary": summary,
                             "params": params, "coordinate_space": "level-0 pixels", "n_pieces": n_pieces}
    keys = {"ink": "ink_geojson", "artifacts": "artifacts_geojson"}
    attrs.update({keys.get(k, k): v for k, v in optional.items() if v is not None})
    return attrs


def is_binary(attrs: dict[str, Any]) -> bool:
    return attrs.get("geometry_format") == GEOMETRY_FORMAT


def read_pieces(store: Path, rel: str = "tissue") -> tuple[np.ndarray, np.ndarray]:
    """The tissue pieces (object array of polygons, level-0 px) and their areas (um^2), checked:
    a damaged chunk, inconsistent offsets or undecodable WKB is a :class:`StoreError`."""
    data = read_array(store, f"{rel}/{WKB}")
    offsets = read_array(store, f"{rel}/{OFFSETS}")
    areas = read_array(store, f"{rel}/{AREAS}")
    n = len(offsets) - 1
    if (n < 0 or offsets[0] != 0 or offsets[-1] != len(data) or (np.diff(offsets) <= 0).any()
            or len(areas) != n):
        raise StoreError(store, f"{rel}: geometry arrays disagree ({len(data)} WKB bytes, {len(offsets)} offsets, "
                                f"{len(areas)} areas); run `slidestream tissue --overwrite` to redo it")
    buffer = data.tobytes()
    pieces = [buffer[a:b] for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist(), strict=True)]
    try:
        geoms = shapely.from_wkb(np.asarray(pieces, dtype=object)) if pieces else np.zeros(0, dtype=object)
    except shapely.errors.ShapelyError as exc:
        raise StoreError(store, f"{rel}: undecodable tissue geometry ({exc})") from None
    return geoms, areas


def read_mask(store: Path, rel: str = "tissue") -> np.ndarray | None:
    """The detector's tissue mask (bool, spanning the slide), None when the node has none."""
    if not (store / rel / MASK / "zarr.json").exists():
        return None
    return read_array(store, f"{rel}/{MASK}").astype(bool, copy=False)


def union(pieces: np.ndarray) -> BaseGeometry | None:
    """The tissue as one geometry (None when empty). Pieces traced from one mask are disjoint, so
    their collection is the union; ``union_all`` only when simplification made two overlap."""
    if not len(pieces):
        return None
    collection = shapely.multipolygons(pieces)
    if collection.is_valid:
        return collection
    merged = shapely.union_all(pieces)
    return merged if isinstance(merged, MultiPolygon) else MultiPolygon([merged])


def feature_collection(pieces: np.ndarray, areas: np.ndarray, classification: dict[str, Any] | None) -> dict[str, Any]:
    """The pieces as the QuPath FeatureCollection the node used to hold (RFC 7946 winding)."""
    import json

    oriented = shapely.orient_polygons(pieces, exterior_cw=False) if len(pieces) else pieces
    encoded = json.loads("[" + ",".join(shapely.to_geojson(oriented).tolist()) + "]") if len(pieces) else []
    features = []
    for i, (geometry, area) in enumerate(zip(encoded, areas.tolist(), strict=True)):
        props: dict[str, Any] = {"objectType": "annotation"}
        if classification is not None:
            props["classification"] = dict(classification)
        props["name"] = f"tissue {i + 1}"
        if np.isfinite(area):
            props["measurements"] = {"area_um2": float(area)}
        features.append({"type": "Feature", "properties": props, "geometry": geometry})
    return {"type": "FeatureCollection", "features": features}


def pieces_of(tissue: Any, areas_um2: Any, classification: dict[str, Any] | None
              ) -> tuple[np.ndarray, np.ndarray, dict[str, Any] | None]:
    """What ``SlideStore.write_tissue`` was given, as (pieces, areas, classification)."""
    if isinstance(tissue, dict):
        return from_feature_collection(tissue)
    pieces = np.asarray(tissue, dtype=object).reshape(-1)
    return pieces, np.full(len(pieces), np.nan) if areas_um2 is None else np.asarray(areas_um2), classification


def from_feature_collection(collection: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, dict[str, Any] | None]:
    """(pieces, areas, classification) of a FeatureCollection (callers that still pass GeoJSON)."""
    from shapely.geometry import shape

    features = [f for f in collection.get("features", []) if f.get("geometry")]
    pieces = np.asarray([shape(f["geometry"]) for f in features], dtype=object).reshape(-1)
    areas = np.asarray([(f.get("properties") or {}).get("measurements", {}).get("area_um2", np.nan)
                        for f in features], dtype=np.float64)
    classification = (features[0].get("properties") or {}).get("classification") if features else None
    return pieces, areas, classification


class TissueNodeMixin:
    """``SlideStore``'s tissue methods (kept here with the layout they read and write)."""

    path: Path

    def write_group_node(self, rel: str, members: dict[str, Member], attrs: dict[str, Any]) -> None:
        raise NotImplementedError  # SlideStore's

    def node_attrs(self, rel: str) -> dict[str, Any]:
        raise NotImplementedError  # SlideStore's

    def write_tissue(self, tissue: dict[str, Any] | Any, summary: dict[str, Any], params: dict[str, Any],
                     ink: dict[str, Any] | None = None, artifacts: dict[str, Any] | None = None,
                     provenance: dict[str, Any] | None = None, *, areas_um2: Any = None,
                     classification: dict[str, Any] | None = None, mask: np.ndarray | None = None) -> None:
        """``tissue``: the pieces (level-0 polygons, with ``areas_um2`` and their QuPath
        ``classification``) or a FeatureCollection, stored as WKB arrays with the detector's ``mask``
        (py); ``ink``/``artifacts``: QuPath FeatureCollections; ``provenance``: the method
        (deep ones: model, weights SHA-256)."""
        pieces, areas, classification = pieces_of(tissue, areas_um2, classification)
        attrs = node_attrs(len(pieces), summary, params, classification=classification, ink=ink,
                           artifacts=artifacts, provenance=provenance)
        self.write_group_node("tissue", members(pieces, areas, mask), attrs)

    def read_ink_geojson(self) -> dict[str, Any] | None:
        """The pen marks tissue detection excluded (None for stores written before it was kept)."""
        return self.node_attrs("tissue").get("ink_geojson")

    def read_tissue_geojson(self) -> dict[str, Any]:
        """The tissue as a QuPath FeatureCollection (rebuilt from the WKB; older stores kept it as is)."""
        attrs = self.node_attrs("tissue")
        if not is_binary(attrs):
            return attrs["geojson"]
        pieces, areas = read_pieces(self.path)
        return feature_collection(pieces, areas, attrs.get("classification"))

    def read_tissue_pieces(self) -> tuple[np.ndarray, np.ndarray]:
        """The tissue pieces (object array of level-0 polygons) and their areas in um^2 (checked)."""
        attrs = self.node_attrs("tissue")
        return read_pieces(self.path) if is_binary(attrs) else \
            from_feature_collection(attrs["geojson"])[:2]

    def read_tissue_geometry(self) -> Any:
        """The tissue as one level-0 geometry (MultiPolygon), None when no tissue was found."""
        return union(self.read_tissue_pieces()[0])

    def read_tissue_mask(self) -> np.ndarray | None:
        """The mask the tissue was traced from (bool, spanning the slide); None for older stores."""
        return read_mask(self.path) if is_binary(self.node_attrs("tissue")) else None
