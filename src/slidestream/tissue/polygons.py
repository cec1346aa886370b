"""Between raster masks and polygons with holes, in level-0 pixel coordinates.

Polygons are the portable form (GeoJSON for QuPath, exact areas, any resolution); masks are the
fast form (integral images for tile coverage). Conversions go through this module only.
"""

from __future__ import annotations

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry
from skimage.draw import polygon as fill_polygon
from skimage.measure import find_contours


def mask_to_polygons(mask: np.ndarray, scale: tuple[float, float], simplify_px: float = 0.75) -> list[Polygon]:
    """Outline a boolean mask as polygons with holes, scaled by ``scale`` = (sx, sy).

    Contours run along pixel edges' midpoints; nesting depth decides shell vs hole (even depth
    is tissue, odd depth is a hole in its immediate container), so islands inside holes survive.
    """
    if not mask.any():
        return []
    padded = np.pad(mask.astype(np.uint8), 1)
    rings = []
    for contour in find_contours(padded, 0.5):
        if len(contour) < 4:
            continue
        # (row, col) in padded index -> (x, y) in pixel-edge coordinates of the unpadded mask
        xy = np.column_stack([contour[:, 1] - 0.5, contour[:, 0] - 0.5])
        ring = Polygon(xy)
        if simplify_px > 0:
            ring = ring.simplify(simplify_px, preserve_topology=True)
        if ring.is_valid and ring.area > 0:
            rings.append(ring)
        elif ring.area > 0:
            fixed = ring.buffer(0)
            rings.extend(g for g in getattr(fixed, "geoms", [fixed]) if isinstance(g, Polygon) and g.area > 0)
    if not rings:
        return []
    rings.sort(key=lambda p: p.area, reverse=True)
    tree = shapely.STRtree(rings)
    points = [r.representative_point() for r in rings]
    inner, outer = tree.query(points, predicate="within")
    containers: dict[int, list[int]] = {}
    for i, j in zip(inner.tolist(), outer.tolist(), strict=True):
        if i != j and rings[j].area > rings[i].area:
            containers.setdefault(i, []).append(j)
    depth = {i: len(containers.get(i, [])) for i in range(len(rings))}
    parent = {i: min(cs, key=lambda j: rings[j].area) for i, cs in containers.items()}
    polygons = []
    for i, ring in enumerate(rings):
        if depth[i] % 2:
            continue
        holes = [rings[h].exterior for h, p in parent.items() if p == i and depth[h] == depth[i] + 1]
        poly = Polygon(ring.exterior, holes)
        if not poly.is_valid:
            poly = poly.buffer(0)
        polygons.extend(g for g in getattr(poly, "geoms", [poly]) if isinstance(g, Polygon) and not g.is_empty)
    sx, sy = scale
    return [shapely.affinity.scale(p, xfact=sx, yfact=sy, origin=(0, 0)) for p in polygons]


def rasterize(geometry: BaseGeometry | None, shape: tuple[int, int], scale: tuple[float, float]) -> np.ndarray:
    """Boolean mask of ``shape`` (H, W) whose pixel (r, c) covers level-0 [c*sx, (c+1)*sx) x [r*sy, ...).

    A pixel is inside when its centre is: the usual convention, unbiased for area.
    """
    mask = np.zeros(shape, dtype=bool)
    if geometry is None or geometry.is_empty:
        return mask
    sx, sy = scale
    polys = list(geometry.geoms) if isinstance(geometry, MultiPolygon) else [geometry]
    for poly in polys:
        if not isinstance(poly, Polygon) or poly.is_empty:
            continue
        _paint(mask, np.asarray(poly.exterior.coords), sx, sy, True)
        for hole in poly.interiors:
            _paint(mask, np.asarray(hole.coords), sx, sy, False)
    return mask


def _paint(mask: np.ndarray, xy: np.ndarray, sx: float, sy: float, value: bool) -> None:
    # skimage samples pixel centres at integer coordinates: shift edges by half a pixel.
    rows, cols = fill_polygon(xy[:, 1] / sy - 0.5, xy[:, 0] / sx - 0.5, shape=mask.shape)
    mask[rows, cols] = value
