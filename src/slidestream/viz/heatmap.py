"""Heatmaps of per-tile scores over the slide thumbnail, and the same scores as QuPath GeoJSON.

Cheap by construction. CLAM-style heatmaps re-read the slide at full resolution (often with
overlapping tiles re-embedded), which costs tens of minutes and tens of GB per slide. Here a score
is already a number per stored tile, so a heatmap is one rectangle per tile painted into a
thumbnail-sized float canvas, blended over :meth:`Slide.thumbnail` (which reads the coarsest
pyramid level that suffices). Nothing is read at level 0 and memory is a few thumbnails.

The GeoJSON has one ``detection`` per tile (a level-0 square) with ``measurements`` QuPath turns into
a measurement map (*Measure ▸ Show measurement maps*).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageDraw

from slidestream.store import SlideStore
from slidestream.viz.canvas import (
    Heatmap,
    TileLayer,
    add_side_panel,
    blend,
    font,
    locate_slide,
    rasterize_tiles,
    slide_thumbnail,
    tile_layer,
    tiles_geojson,
    write_geojson,
    write_png,
)
from slidestream.viz.overlay import draw_overlay
from slidestream.viz.prototype_map import prototype_geojson, render_prototype_map

__all__ = [
    "Heatmap",
    "Normalize",
    "TileLayer",
    "locate_slide",
    "normalize_scores",
    "rasterize_tiles",
    "render_heatmap",
    "slide_thumbnail",
    "store_geojson",
    "store_heatmap",
    "tile_layer",
    "tiles_geojson",
    "write_geojson",
    "write_png",
    "write_score_maps",
]

Normalize = Literal["percentile", "minmax", "none"]
BAR_WIDTH = 18


# ----------------------------------------------------------------------------------- drawing
def normalize_scores(
    values: np.ndarray, how: Normalize = "percentile"
) -> tuple[np.ndarray, tuple[str, str]]:
    """Scores mapped to [0, 1] for the colour ramp, and the two colour-bar end labels.

    ``percentile`` (CLAM's default) ranks the tiles, so the picture shows *where* the model looked
    whatever the attention's scale (softmax attention over 10k tiles is ~1e-4 everywhere);
    ``minmax`` keeps the shape of the distribution; ``none`` is for scores already in [0, 1].
    """
    v = np.asarray(values, np.float64)
    finite = np.isfinite(v)
    out = np.zeros_like(v)
    if not finite.any():
        return out, ("n/a", "n/a")
    if how == "percentile":
        ranks = np.argsort(np.argsort(v[finite], kind="stable"), kind="stable")
        out[finite] = ranks / max(1, finite.sum() - 1)
        return out, ("0th pct", "100th pct")
    if how == "minmax":
        lo, hi = float(v[finite].min()), float(v[finite].max())
        out[finite] = (v[finite] - lo) / (hi - lo) if hi > lo else 0.5
        return out, (f"{lo:.3g}", f"{hi:.3g}")
    if how == "none":
        out[finite] = np.clip(v[finite], 0.0, 1.0)
        return out, ("0", "1")
    raise ValueError(f"unknown normalisation {how!r}: use percentile, minmax or none")


def colour_lut(cmap: str, n: int = 256) -> np.ndarray:
    """``(n, 3) uint8`` colours of a matplotlib colour map (only the table, no figure)."""
    import matplotlib

    try:
        ramp = matplotlib.colormaps[cmap]
    except KeyError:
        raise ValueError(
            f"unknown colour map {cmap!r} (any matplotlib name, e.g. coolwarm, viridis)"
        ) from None
    return (ramp(np.linspace(0.0, 1.0, n))[:, :3] * 255).round().astype(np.uint8)


def colour_bar(
    image: Image.Image, lut: np.ndarray, labels: tuple[str, str], title: str
) -> Image.Image:
    """A vertical ramp (high at the top) with its end labels and the score's name."""
    f = font(12)
    text_w = max(int(ImageDraw.Draw(image).textlength(t, font=f)) for t in (*labels, title))
    panel, draw, x = add_side_panel(image, BAR_WIDTH + text_w + 24)
    top, bottom = 24, min(panel.height - 10, 24 + 256)
    ramp = lut[np.linspace(len(lut) - 1, 0, bottom - top).round().astype(int)]
    bar = np.repeat(ramp[:, None, :], BAR_WIDTH, axis=1)
    panel.paste(Image.fromarray(bar), (x + 8, top))
    draw.rectangle([x + 8, top, x + 8 + BAR_WIDTH, bottom], outline=(0, 0, 0))
    draw.text((x + 4, 4), title, fill=(0, 0, 0), font=f)
    draw.text((x + 12 + BAR_WIDTH, top), labels[1], fill=(0, 0, 0), font=f)
    draw.text((x + 12 + BAR_WIDTH, bottom - 12), labels[0], fill=(0, 0, 0), font=f)
    return panel


def render_heatmap(
    thumbnail: np.ndarray,
    layer: TileLayer,
    *,
    cmap: str = "coolwarm",
    normalize: Normalize = "percentile",
    alpha: float = 0.55,
    label: str | None = None,
    background: str = "thumbnail",
) -> Heatmap:
    """Tiles coloured by score over ``thumbnail``, the tissue outline, and a colour bar."""
    h, w = thumbnail.shape[:2]
    norm, ends = normalize_scores(layer.values, normalize)
    grid, covered = rasterize_tiles(layer.coords, layer.extent, norm, (w, h), layer.level0_size)
    lut = colour_lut(cmap)
    colours = lut[np.clip((grid * (len(lut) - 1)).round().astype(int), 0, len(lut) - 1)]
    blended = blend(thumbnail, colours, covered, alpha)
    image = draw_overlay(
        blended, layer.level0_size, layer.geometry, width=max(1, round(max(w, h) / 600))
    )
    image = colour_bar(image, lut, ends, label or str(layer.attrs.get("name", "score")))
    return Heatmap(image, covered, (w / layer.level0_size[0], h / layer.level0_size[1]), background)


# ----------------------------------------------------------------------------------- stores
def store_heatmap(
    store: SlideStore,
    name: str,
    *,
    max_size: int = 1024,
    slides_dir: str | Path | None = None,
    thumbnail: np.ndarray | None = None,
    **style: Any,
) -> Heatmap:
    """:func:`render_heatmap` of ``tile_scores/<name>`` over the store's slide thumbnail."""
    layer = tile_layer(store, name)
    background = "thumbnail"
    if thumbnail is None:
        thumbnail, background = slide_thumbnail(store, max_size, slides_dir)
    return render_heatmap(thumbnail, layer, background=background, **style)


def store_geojson(store: SlideStore, name: str, measurement: str | None = None) -> dict[str, Any]:
    """The tiles of ``tile_scores/<name>`` as QuPath detections with one measurement each."""
    layer = tile_layer(store, name)
    return tiles_geojson(layer.coords, layer.extent, {measurement or name: layer.values})


def write_score_maps(
    store: SlideStore,
    name: str,
    out_dir: str | Path,
    *,
    geojson: bool = True,
    max_size: int = 1024,
    slides_dir: str | Path | None = None,
    **style: Any,
) -> dict[str, Any]:
    """``<slide_id>.<name>.png`` (and ``.geojson``) of ``tile_scores/<name>`` in ``out_dir``.

    Continuous scores become a heatmap, categorical ones (prototype ids) a prototype map with
    QuPath classes. Returns what a batch summary shows: tile count, files, background used.
    """
    layer = tile_layer(store, name)
    thumbnail, background = slide_thumbnail(store, max_size, slides_dir)
    out_dir = Path(out_dir)
    stem = f"{store.slide_id}.{name}"
    if layer.categorical:
        picture = render_prototype_map(
            thumbnail,
            layer,
            background=background,
            **{k: v for k, v in style.items() if k in ("alpha", "k")},
        )
    else:
        picture = render_heatmap(thumbnail, layer, background=background, **style)
    png = write_png(picture.image, out_dir / f"{stem}.png")
    details: dict[str, Any] = {
        "tiles": len(layer.values),
        "png": png.name,
        "background": background,
    }
    if geojson:
        collection = (
            prototype_geojson(layer)
            if layer.categorical
            else tiles_geojson(layer.coords, layer.extent, {name: layer.values})
        )
        details["geojson"] = write_geojson(collection, out_dir / f"{stem}.geojson").name
    return details
