"""Pictures for people: tissue outlines, tile grids and selections over the thumbnail."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import shapely
from PIL import Image, ImageDraw
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry

from slidestream.atomic import atomic_path

# Amber and black: nothing on an H&E or IHC slide is amber, and green/blue would be confused
# with the pen ink a reviewer is checking was excluded.
TISSUE_COLOUR = (255, 176, 0)
HOLE_COLOUR = (20, 20, 20)
TILE_COLOUR = (40, 90, 220)
SELECTED_COLOUR = (220, 20, 60)
INK_COLOUR = (200, 0, 200)  # magenta: what was excluded as pen ink


def _polygons(geometry: BaseGeometry) -> Sequence[Polygon]:
    if geometry is None or geometry.is_empty:
        return []
    return list(geometry.geoms) if isinstance(geometry, MultiPolygon) else [geometry]


def draw_overlay(
    thumbnail: np.ndarray,
    level0_size: tuple[int, int],
    geometry: BaseGeometry | None = None,
    tiles: np.ndarray | None = None,
    tile_extent: tuple[int, int] | None = None,
    selected: np.ndarray | None = None,
    width: int = 2,
    ink: BaseGeometry | None = None,
    artifacts: dict[str, tuple[BaseGeometry, tuple[int, int, int]]] | None = None,
    max_side: int | None = None,
) -> Image.Image:
    """Draw level-0 geometry and tile boxes onto a thumbnail of the whole slide.

    ``ink`` (the pen marks detection excluded) is hatched in magenta, so a reviewer sees both
    what was kept and what was thrown away as ink. ``artifacts`` (name -> (geometry, colour), e.g.
    GrandQC's folds and bubbles) are shaded the same way, each in its class colour.
    ``max_side`` shrinks a larger thumbnail first (the stages' previews: 1024 px).
    """
    return Image.fromarray(overlay_pixels(thumbnail, level0_size, geometry, tiles, tile_extent, selected, width,
                                          ink, artifacts, max_side))


def fit_within(image: np.ndarray, max_side: int) -> np.ndarray:
    """``image`` shrunk (area average) so that its long side is at most ``max_side``; itself
    when it already fits. The one shrink of the stages' preview pictures."""
    h, w = image.shape[:2]
    if max(h, w) <= max_side:
        return image
    f = max_side / max(h, w)
    return cv2.resize(np.ascontiguousarray(image), (max(1, round(w * f)), max(1, round(h * f))),
                      interpolation=cv2.INTER_AREA)


def overlay_pixels(
    thumbnail: np.ndarray,
    level0_size: tuple[int, int],
    geometry: BaseGeometry | None = None,
    tiles: np.ndarray | None = None,
    tile_extent: tuple[int, int] | None = None,
    selected: np.ndarray | None = None,
    width: int = 2,
    ink: BaseGeometry | None = None,
    artifacts: dict[str, tuple[BaseGeometry, tuple[int, int, int]]] | None = None,
    max_side: int | None = None,
) -> np.ndarray:
    """:func:`draw_overlay` as an RGB ``uint8`` array (what :func:`save_png` encodes): the picture
    stays one array, drawn in place, instead of going through Pillow between layers (each
    round trip copies the whole picture twice)."""
    if max_side is not None:  # previews: fewer pixels to draw and encode
        thumbnail = fit_within(thumbnail, max_side)
    pixels = _rgb_copy(thumbnail)
    sx, sy = pixels.shape[1] / level0_size[0], pixels.shape[0] / level0_size[1]
    shading = [(ink, INK_COLOUR)] + [(g, c) for g, c in (artifacts or {}).values()]
    shading = [(g, c) for g, c in shading if g is not None and not g.is_empty]
    if shading:
        image = Image.fromarray(pixels)
        for geometry_, colour in shading:
            image = _shade(image, geometry_, (sx, sy), colour, alpha=80)
        pixels = np.array(image)
    if tiles is not None and tile_extent is not None and len(tiles):
        xy = np.asarray(tiles, dtype=np.float64).reshape(-1, 2)
        boxes = np.column_stack([xy[:, 0] * sx, xy[:, 1] * sy, xy[:, 0] * sx + tile_extent[0] * sx,
                                 xy[:, 1] * sy + tile_extent[1] * sy])
        chosen = np.zeros(len(xy), bool)
        if selected is not None and len(selected):
            chosen[np.asarray(selected, dtype=np.int64)] = True
        _blend_outlines(pixels, boxes[~chosen], TILE_COLOUR, 120 / 255)
        if chosen.any():
            image = Image.fromarray(pixels)
            draw = ImageDraw.Draw(image, "RGBA")
            for box in boxes[chosen].tolist():
                draw.rectangle(box, fill=(*SELECTED_COLOUR, 110), outline=(*SELECTED_COLOUR, 255))
            pixels = np.array(image)
    polygons = _polygons(geometry)
    if polygons:
        shells, holes = _rings_px(polygons, sx, sy)
        cv2.polylines(pixels, shells, False, TISSUE_COLOUR, thickness=width, lineType=cv2.LINE_8)
        if holes:
            cv2.polylines(pixels, holes, False, HOLE_COLOUR, thickness=max(1, width - 1), lineType=cv2.LINE_8)
    return pixels


def _rgb_copy(thumbnail: np.ndarray) -> np.ndarray:
    """A writable, contiguous RGB ``uint8`` copy of a thumbnail (grey is expanded, alpha dropped,
    as Pillow's ``convert("RGB")`` does)."""
    pixels = np.asarray(thumbnail)
    if pixels.dtype != np.uint8:
        return np.array(Image.fromarray(pixels).convert("RGB"))
    if pixels.ndim == 2:
        return cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_GRAY2RGB)
    return np.array(pixels[..., :3], dtype=np.uint8, order="C")


def _rings_px(polygons: Sequence[Polygon], sx: float, sy: float) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Shells and holes in picture pixels, as OpenCV int32 polylines: every ring's coordinates
    come out of GEOS in one call."""
    geoms = np.asarray(polygons, dtype=object)
    rings = shapely.get_rings(geoms)  # per polygon: its shell, then its holes
    is_shell = np.zeros(len(rings), bool)
    is_shell[np.concatenate([[0], np.cumsum(shapely.get_num_interior_rings(geoms) + 1)[:-1]])] = True
    xy, ring_of = shapely.get_coordinates(rings, return_index=True)
    px = np.rint(xy * (sx, sy)).astype(np.int32).reshape(-1, 1, 2)
    parts = np.split(px, np.flatnonzero(np.diff(ring_of)) + 1)
    return ([p for p, s in zip(parts, is_shell, strict=True) if s],
            [p for p, s in zip(parts, is_shell, strict=True) if not s])


def _blend_outlines(pixels: np.ndarray, boxes: np.ndarray, colour: tuple[int, int, int], alpha: float) -> None:
    """Blend the one-pixel outlines of ``boxes`` (x0, y0, x1, y1 in pixels) into ``pixels`` in one
    vectorised pass (a pixel shared by two outlines is blended once): a tile grid of 20k boxes costs milliseconds, not a Python call per box."""
    h, w = pixels.shape[:2]
    b = np.rint(boxes).astype(np.int64)
    x0, y0 = np.clip(b[:, 0], 0, w - 1), np.clip(b[:, 1], 0, h - 1)
    x1, y1 = np.clip(b[:, 2], 0, w - 1), np.clip(b[:, 3], 0, h - 1)

    def spans(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = np.maximum(hi - lo + 1, 0)
        owner = np.repeat(np.arange(len(lo)), n)
        return owner, lo[owner] + np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)

    owner, xs = spans(x0, x1)
    across = np.concatenate([y0[owner] * w + xs, y1[owner] * w + xs])
    owner, ys = spans(y0, y1)
    down = np.concatenate([ys * w + x0[owner], ys * w + x1[owner]])
    edge = np.zeros(h * w, dtype=bool)
    edge[across] = True
    edge[down] = True
    flat = np.flatnonzero(edge)
    rgb = pixels.reshape(-1, pixels.shape[-1])
    blended = rgb[flat].astype(np.float32) * (1 - alpha) + np.asarray(colour, np.float32) * alpha
    rgb[flat] = np.rint(blended).astype(np.uint8)


def _shade(image: Image.Image, geometry: BaseGeometry, scale: tuple[float, float], colour: tuple[int, int, int],
           alpha: int) -> Image.Image:
    """Fill ``geometry`` (holes left clear) with a translucent colour and outline it."""
    sx, sy = scale
    area = Image.new("L", image.size, 0)
    pen = ImageDraw.Draw(area)
    for poly in _polygons(geometry):
        pen.polygon([(x * sx, y * sy) for x, y in poly.exterior.coords], fill=alpha, outline=255)
        for hole in poly.interiors:
            pen.polygon([(x * sx, y * sy) for x, y in hole.coords], fill=0, outline=255)
    return Image.composite(Image.new("RGB", image.size, colour), image, area)


# libpng through OpenCV at zlib level 1, the "up" filter and run-length matching: on a 1024 px
# tissue picture ~2.5x faster than Pillow's level 1 (which tries every row filter) for a file
# ~5% larger (~0.8 MB); see benchmarks/results/tile_stage_ab_table.md.
PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP,
              cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]
_TO_OPENCV = {"RGB": cv2.COLOR_RGB2BGR, "RGBA": cv2.COLOR_RGBA2BGRA}


def encode_png(image: Image.Image | np.ndarray) -> bytes:
    """PNG bytes of a picture (Pillow image, or an RGB/RGBA/grey ``uint8`` array), encoded fast:
    these are previews, written on every stage run, not archives."""
    if isinstance(image, Image.Image):
        if image.mode not in ("RGB", "RGBA", "L"):
            image = image.convert("RGBA" if "A" in image.mode or "transparency" in image.info else "RGB")
        pixels = np.asarray(image)
    else:
        pixels = np.asarray(image, dtype=np.uint8)
    if pixels.ndim == 3:
        pixels = cv2.cvtColor(pixels, _TO_OPENCV["RGBA" if pixels.shape[2] == 4 else "RGB"])
    ok, data = cv2.imencode(".png", np.ascontiguousarray(pixels), PNG_PARAMS)
    if not ok:
        raise ValueError(f"OpenCV could not encode a {pixels.shape} picture as PNG")
    return data.tobytes()


def save_png(image: Image.Image | np.ndarray, path: Path) -> Path:
    """Atomic PNG write (a reader never sees half a picture)."""
    path = Path(path)
    data = encode_png(image)
    with atomic_path(path, fsync=False) as tmp:   # a preview: atomic, but not worth an fsync
        tmp.write_bytes(data)
    return path
