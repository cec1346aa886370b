"""Prototype maps: every tile coloured by its PANTHER prototype, over the slide thumbnail.

A PANTHER embedding is a mixture over K cohort prototypes; the map shows which morphology each
region was assigned to, which is how the paper makes its unsupervised embedding readable. The
drawing shares the heatmap's machinery (thumbnail-sized canvas, no level-0 reads); only the colours
differ: a qualitative palette and a legend with the tile count of each prototype.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from slidestream.store import SlideStore
from slidestream.viz.canvas import (
    Heatmap,
    TileLayer,
    add_side_panel,
    blend,
    font,
    rasterize_tiles,
    slide_thumbnail,
    tile_layer,
    tiles_geojson,
)
from slidestream.viz.overlay import draw_overlay

__all__ = ["palette", "prototype_geojson", "render_prototype_map", "store_prototype_map"]

SWATCH = 12


def palette(k: int) -> np.ndarray:
    """``(k, 3) uint8`` distinct colours: tab10 / tab20, then evenly spaced hues beyond 20."""
    import matplotlib

    if k <= 10:
        colours = matplotlib.colormaps["tab10"].colors[:k]
    elif k <= 20:
        colours = matplotlib.colormaps["tab20"].colors[:k]
    else:
        colours = matplotlib.colormaps["hsv"](np.arange(k) / k)[:, :3]
    return (np.asarray(colours, np.float64)[:, :3] * 255).round().astype(np.uint8)


def _k(layer: TileLayer, k: int | None) -> int:
    if k is not None:
        return k
    if "k" in layer.attrs:
        return int(layer.attrs["k"])
    return int(layer.values.max()) + 1 if len(layer.values) else 1


def legend(image: Image.Image, colours: np.ndarray, counts: np.ndarray, title: str) -> Image.Image:
    """A swatch and ``P<i> · <n> tiles`` per prototype, to the right of the map."""
    f = font(12)
    lines = [f"P{i} · {n} tiles" for i, n in enumerate(counts.tolist())]
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text_w = max(int(measure.textlength(t, font=f)) for t in [*lines, title])
    needed = 28 + len(lines) * (SWATCH + 4)
    if image.height < needed:  # many prototypes on a short slide: extend downwards first
        taller = Image.new("RGB", (image.width, needed), "white")
        taller.paste(image, (0, 0))
        image = taller
    panel, draw, x = add_side_panel(image, SWATCH + text_w + 24)
    draw.text((x + 6, 4), title, fill=(0, 0, 0), font=f)
    for i, text in enumerate(lines):
        y = 24 + i * (SWATCH + 4)
        draw.rectangle(
            [x + 6, y, x + 6 + SWATCH, y + SWATCH],
            fill=tuple(int(c) for c in colours[i]),
            outline=(0, 0, 0),
        )
        draw.text((x + 12 + SWATCH, y - 1), text, fill=(0, 0, 0), font=f)
    return panel


def render_prototype_map(
    thumbnail: np.ndarray,
    layer: TileLayer,
    *,
    k: int | None = None,
    alpha: float = 0.6,
    background: str = "thumbnail",
) -> Heatmap:
    """Tiles coloured by prototype id over ``thumbnail``, tissue outline and a legend."""
    h, w = thumbnail.shape[:2]
    k = _k(layer, k)
    ids = np.asarray(layer.values, np.int64)
    if len(ids) and (ids.min() < 0 or ids.max() >= k):
        raise ValueError(f"prototype ids must lie in [0, {k}), got [{ids.min()}, {ids.max()}]")
    grid, covered = rasterize_tiles(
        layer.coords, layer.extent, ids, (w, h), layer.level0_size, reduce="last"
    )
    colours = palette(k)
    painted = colours[grid.round().astype(np.int64).clip(0, k - 1)]
    blended = blend(thumbnail, painted, covered, alpha)
    image = draw_overlay(
        blended, layer.level0_size, layer.geometry, width=max(1, round(max(w, h) / 600))
    )
    image = legend(
        image, colours, np.bincount(ids, minlength=k), str(layer.attrs.get("name", "prototype"))
    )
    return Heatmap(image, covered, (w / layer.level0_size[0], h / layer.level0_size[1]), background)


def store_prototype_map(
    store: SlideStore,
    name: str = "panther_prototype",
    *,
    max_size: int = 1024,
    slides_dir: str | Path | None = None,
    thumbnail: np.ndarray | None = None,
    **style: Any,
) -> Heatmap:
    """:func:`render_prototype_map` of ``tile_scores/<name>`` over the store's slide thumbnail."""
    layer = tile_layer(store, name)
    background = "thumbnail"
    if thumbnail is None:
        thumbnail, background = slide_thumbnail(store, max_size, slides_dir)
    return render_prototype_map(thumbnail, layer, background=background, **style)


def prototype_geojson(layer: TileLayer, k: int | None = None) -> dict[str, Any]:
    """Tiles as QuPath detections classified ``prototype <i>`` in the map's colours."""
    k = _k(layer, k)
    colours = palette(k)
    ids = np.asarray(layer.values, np.int64)
    return tiles_geojson(
        layer.coords,
        layer.extent,
        {"prototype": ids},
        classes=ids,
        class_colours={i: tuple(int(c) for c in colours[i]) for i in range(k)},
        class_names={i: f"prototype {i}" for i in range(k)},
    )
