"""Pictures for people: tissue outlines, tile grids and selections over the thumbnail."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
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
) -> Image.Image:
    """Draw level-0 geometry and tile boxes onto a thumbnail of the whole slide.

    ``ink`` (the pen marks detection excluded) is hatched in magenta, so a reviewer sees both
    what was kept and what was thrown away as ink. ``artifacts`` (name -> (geometry, colour), e.g.
    GrandQC's folds and bubbles) are shaded the same way, each in its class colour.
    """
    image = Image.fromarray(thumbnail).convert("RGB")
    sx, sy = image.width / level0_size[0], image.height / level0_size[1]
    if ink is not None and not ink.is_empty:
        image = _shade(image, ink, (sx, sy), INK_COLOUR, alpha=80)
    for geometry_, colour in (artifacts or {}).values():
        if geometry_ is not None and not geometry_.is_empty:
            image = _shade(image, geometry_, (sx, sy), colour, alpha=80)
    draw = ImageDraw.Draw(image, "RGBA")
    if tiles is not None and tile_extent is not None and len(tiles):
        tw, th = tile_extent[0] * sx, tile_extent[1] * sy
        chosen = set(np.asarray(selected).tolist()) if selected is not None else set()
        for i, (x, y) in enumerate(np.asarray(tiles)):
            box = [x * sx, y * sy, x * sx + tw, y * sy + th]
            if i in chosen:
                draw.rectangle(box, fill=(*SELECTED_COLOUR, 110), outline=(*SELECTED_COLOUR, 255))
            else:
                draw.rectangle(box, outline=(*TILE_COLOUR, 120))
    for poly in _polygons(geometry):
        draw.line([(x * sx, y * sy) for x, y in poly.exterior.coords], fill=TISSUE_COLOUR, width=width)
        for hole in poly.interiors:
            draw.line([(x * sx, y * sy) for x, y in hole.coords], fill=HOLE_COLOUR, width=max(1, width - 1))
    return image


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


def save_png(image: Image.Image, path: Path) -> Path:
    """Atomic PNG write (a reader never sees half a picture)."""
    path = Path(path)
    with atomic_path(path, fsync=False) as tmp:   # a preview: atomic, but not worth an fsync
        image.save(tmp, format="PNG", compress_level=1)  # fast: these are previews, not archives
    return path
