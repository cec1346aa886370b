"""Between raster masks and polygons with holes, in level-0 pixel coordinates.

Polygons are the portable form (GeoJSON for QuPath, exact areas, any resolution); masks are the
fast form (integral images for tile coverage). Conversions go through this module only.
"""

from __future__ import annotations

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry
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


def rasterize(geometry: BaseGeometry | None, shape: tuple[int, int], scale: tuple[float, float],
              offset: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """Boolean mask of ``shape`` (H, W) whose pixel (r, c) covers level-0
    [ox + c*sx, ox + (c+1)*sx) x [oy + r*sy, ...), ``offset`` = (ox, oy): a window of the geometry.

    A pixel is inside when its centre is (the usual convention, unbiased for area). Scanline
    even-odd fill over all rings at once: holes need no special case, and the cost is one pass
    over the edge crossings plus one over the pixels, whatever the polygon's complexity.
    """
    mask = np.zeros(shape, dtype=bool)
    if geometry is None or geometry.is_empty:
        return mask
    sx, sy = scale
    polys = list(geometry.geoms) if isinstance(geometry, MultiPolygon) else [geometry]
    rings = [np.asarray(r.coords) for p in polys if isinstance(p, Polygon) and not p.is_empty
             for r in (p.exterior, *p.interiors)]
    if not rings:
        return mask
    # all edges, in pixel units where pixel centres sit at integer + 0.5
    starts = (np.concatenate([r[:-1] for r in rings]) - offset) / (sx, sy)
    ends = (np.concatenate([r[1:] for r in rings]) - offset) / (sx, sy)
    x0, y0, x1, y1 = starts[:, 0], starts[:, 1], ends[:, 0], ends[:, 1]
    lo, hi = np.minimum(y0, y1), np.maximum(y0, y1)
    # rows whose centre y = r + 0.5 lies in [lo, hi) (half-open: a vertex counts once)
    r_first = np.ceil(lo - 0.5).astype(np.int64)
    r_last = np.ceil(hi - 0.5).astype(np.int64) - 1
    r_first, r_last = np.maximum(r_first, 0), np.minimum(r_last, shape[0] - 1)
    counts = np.maximum(r_last - r_first + 1, 0)
    if counts.sum() == 0:
        return mask
    edge = np.repeat(np.arange(len(x0)), counts)
    offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    rows = r_first[edge] + offsets
    yc = rows + 0.5
    xs = x0[edge] + (yc - y0[edge]) * (x1[edge] - x0[edge]) / (y1[edge] - y0[edge])
    order = np.lexsort((xs, rows))
    rows, xs = rows[order], xs[order]
    # crossings pair up within each row (even-odd): fill centres in [x_in, x_out)
    rows_in, x_in, x_out = rows[0::2], xs[0::2], xs[1::2]
    c0 = np.clip(np.ceil(x_in - 0.5).astype(np.int64), 0, shape[1])
    c1 = np.clip(np.ceil(x_out - 0.5).astype(np.int64), 0, shape[1])
    keep = c1 > c0
    diff = np.zeros((shape[0], shape[1] + 1), dtype=np.int32)
    np.add.at(diff, (rows_in[keep], c0[keep]), 1)
    np.add.at(diff, (rows_in[keep], c1[keep]), -1)
    return np.cumsum(diff[:, :-1], axis=1) > 0
