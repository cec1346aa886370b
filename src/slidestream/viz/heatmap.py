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

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from slidestream.errors import SlideStreamError, StoreError
from slidestream.store import SlideStore
from slidestream.tissue.geojson import geometry_from_feature_collection
from slidestream.viz.overlay import draw_overlay, save_png

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
BACKGROUND = (235, 235, 235)  # when the slide file cannot be opened: a neutral canvas
BAR_WIDTH = 18


@dataclass
class TileLayer:
    """Per-tile values of one store with their level-0 geometry (what every picture needs)."""

    slide_id: str
    coords: np.ndarray  # (N, 2) level-0 top-left (x, y)
    extent: tuple[int, int]  # level-0 (w, h) of one tile
    values: np.ndarray  # (N,)
    level0_size: tuple[int, int]  # slide (w, h)
    attrs: dict[str, Any]
    geometry: Any = None  # tissue (shapely) or None

    @property
    def categorical(self) -> bool:
        """Prototype ids and classes are drawn with a palette, not a colour ramp."""
        kind = self.attrs.get("kind")
        if kind is not None:
            return kind == "categorical"
        return np.issubdtype(self.values.dtype, np.integer)


@dataclass
class Heatmap:
    """The picture, and where it was painted (``covered``: thumbnail-sized bool mask)."""

    image: Image.Image
    covered: np.ndarray
    scale: tuple[float, float]  # thumbnail px per level-0 px (x, y)
    background: str  # "thumbnail" or "blank"


# ----------------------------------------------------------------------------------- drawing
def rasterize_tiles(
    coords: np.ndarray,
    extent: tuple[int, int],
    values: np.ndarray,
    size: tuple[int, int],
    level0_size: tuple[int, int],
    reduce: Literal["mean", "last"] = "mean",
) -> tuple[np.ndarray, np.ndarray]:
    """Paint every tile's value into a ``size = (w, h)`` canvas of the whole slide.

    Returns ``(grid float64 (h, w), covered bool (h, w))``. Overlapping tiles are averaged
    (``mean``) or the later tile wins (``last``, for categories). A tile smaller than a canvas
    pixel still covers one pixel, so small tiles on a large slide do not vanish.
    """
    w, h = size
    sx, sy = w / level0_size[0], h / level0_size[1]
    coords = np.asarray(coords, np.float64).reshape(-1, 2)
    values = np.asarray(values, np.float64).reshape(-1)
    x0 = np.clip(np.floor(coords[:, 0] * sx).astype(np.int64), 0, w - 1)
    y0 = np.clip(np.floor(coords[:, 1] * sy).astype(np.int64), 0, h - 1)
    x1 = np.clip(np.ceil((coords[:, 0] + extent[0]) * sx).astype(np.int64), x0 + 1, w)
    y1 = np.clip(np.ceil((coords[:, 1] + extent[1]) * sy).astype(np.int64), y0 + 1, h)
    total = np.zeros((h, w))
    count = np.zeros((h, w))
    for i in range(len(values)):  # slices, not per-pixel work: 100k tiles take well under a second
        if reduce == "last":
            total[y0[i] : y1[i], x0[i] : x1[i]] = values[i]
            count[y0[i] : y1[i], x0[i] : x1[i]] = 1
        else:
            total[y0[i] : y1[i], x0[i] : x1[i]] += values[i]
            count[y0[i] : y1[i], x0[i] : x1[i]] += 1
    covered = count > 0
    grid = np.zeros((h, w))
    grid[covered] = total[covered] / count[covered]
    return grid, covered


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


def blend(
    thumbnail: np.ndarray, colours: np.ndarray, covered: np.ndarray, alpha: float
) -> np.ndarray:
    """Colours over the thumbnail where tiles are, the thumbnail untouched elsewhere."""
    out = thumbnail.astype(np.float32).copy()
    out[covered] = (1.0 - alpha) * out[covered] + alpha * colours[covered].astype(np.float32)
    return out.round().clip(0, 255).astype(np.uint8)


def font(size: int = 12) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def add_side_panel(image: Image.Image, width: int) -> tuple[Image.Image, ImageDraw.ImageDraw, int]:
    """Widen ``image`` by a white panel on the right (for a colour bar or legend)."""
    panel = Image.new("RGB", (image.width + width, max(image.height, 160)), "white")
    panel.paste(image, (0, 0))
    return panel, ImageDraw.Draw(panel), image.width


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


def write_png(image: Image.Image, path: str | Path) -> Path:
    """Atomic PNG write into a folder that may not exist yet."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_png(image, path)


# ----------------------------------------------------------------------------------- GeoJSON
def _rounded(value: float) -> float | None:
    return float(f"{value:.6g}") if math.isfinite(value) else None


def tiles_geojson(
    coords: np.ndarray,
    extent: tuple[int, int],
    measurements: dict[str, np.ndarray],
    *,
    classes: np.ndarray | None = None,
    class_colours: dict[Any, tuple[int, int, int]] | None = None,
    class_names: dict[Any, str] | None = None,
) -> dict[str, Any]:
    """A FeatureCollection of level-0 tile squares QuPath imports as detections.

    ``measurements`` maps a measurement name to one value per tile; ``classes`` (optional) gives
    each tile a QuPath classification (e.g. its prototype), named and coloured by the two dicts.
    Non-finite values are left out (strict JSON has no NaN; QuPath shows them as missing).
    """
    coords = np.asarray(coords, np.int64).reshape(-1, 2)
    tw, th = int(extent[0]), int(extent[1])
    columns = {name: np.asarray(v, np.float64).reshape(-1) for name, v in measurements.items()}
    for name, v in columns.items():
        if len(v) != len(coords):
            raise ValueError(f"measurement {name!r} has {len(v)} values for {len(coords)} tiles")
    features = []
    for i, (x, y) in enumerate(coords.tolist()):
        values = {name: _rounded(v[i]) for name, v in columns.items()}
        props: dict[str, Any] = {
            "objectType": "detection",
            "isLocked": True,
            "measurements": {k: v for k, v in values.items() if v is not None},
        }
        if classes is not None:
            c = classes[i].item() if hasattr(classes[i], "item") else classes[i]
            name = (class_names or {}).get(c, str(c))
            props["classification"] = {
                "name": name,
                "color": list((class_colours or {}).get(c, (128, 128, 128))),
            }
        ring = [[x, y], [x + tw, y], [x + tw, y + th], [x, y + th], [x, y]]
        features.append(
            {
                "type": "Feature",
                "geometry": {"type": "Polygon", "coordinates": [ring]},
                "properties": props,
            }
        )
    return {"type": "FeatureCollection", "features": features}


def write_geojson(collection: dict[str, Any], path: str | Path) -> Path:
    """Compact, atomic JSON (100k tiles make ~20 MB; indentation would double it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(collection, separators=(",", ":"), allow_nan=False))
    tmp.replace(path)
    return path


# ----------------------------------------------------------------------------------- stores
def _rows_coords(store: SlideStore, rows: str) -> np.ndarray:
    """Level-0 coords of the rows a ``tile_scores`` node is aligned with (tiles or a feature set)."""
    coords = store.read_tiles().coords
    if rows.startswith("features/"):
        selection = store.node_attrs(rows).get("selection")
        if selection:
            coords = coords[store.read_selection(selection)]
    return coords


def _tissue(store: SlideStore) -> Any:
    return geometry_from_feature_collection(store.read_tissue_geojson()) if store.has("tissue") else None


def tile_layer(store: SlideStore, name: str) -> TileLayer:
    """``tile_scores/<name>`` of a store with the coordinates and tile size to draw it."""
    if not store.has(f"tile_scores/{name}"):
        available = ", ".join(store.list_nodes("tile_scores")) or "none"
        raise StoreError(store.path, f"no tile_scores/{name} (available: {available})")
    values, attrs = store.read_tile_scores(name)
    coords = _rows_coords(store, attrs.get("rows", "tiles"))
    if len(coords) != len(values):
        raise StoreError(
            store.path,
            f"tile_scores/{name} has {len(values)} rows but {attrs.get('rows')} has {len(coords)}",
        )
    tiles_attrs = store.node_attrs("tiles")
    info = store.slide_info
    return TileLayer(
        slide_id=store.slide_id,
        coords=coords,
        extent=tuple(int(v) for v in tiles_attrs["level0_size"]),  # type: ignore[arg-type]
        values=np.asarray(values),
        level0_size=(int(info["width"]), int(info["height"])),
        attrs={"name": name, **attrs},
        geometry=_tissue(store),
    )


def locate_slide(store: SlideStore, slides_dir: str | Path | None = None) -> Path | None:
    """The slide file a store was made from: in ``slides_dir`` (moved data) or where it was."""
    recorded = store.slide_info.get("path")
    if not recorded:
        return None
    if slides_dir is not None:
        candidate = Path(slides_dir) / Path(recorded).name
        if candidate.exists():
            return candidate
    return Path(recorded) if Path(recorded).exists() else None


def slide_thumbnail(
    store: SlideStore, max_size: int = 1024, slides_dir: str | Path | None = None
) -> tuple[np.ndarray, str]:
    """The slide's thumbnail (longest side ``max_size``), or a blank canvas of the same shape.

    A heatmap is still useful when the slide file is gone (stores travel without slides): the
    tissue outline and the tiles carry the geometry. Returns ``(image, "thumbnail" | "blank")``.
    """
    from slidestream.io import open_slide  # the reader only when a picture is made

    info = store.slide_info
    width, height = int(info["width"]), int(info["height"])
    path = locate_slide(store, slides_dir)
    if path is not None:
        try:
            with open_slide(path) as slide:
                if slide.dimensions == (width, height):
                    return slide.thumbnail(max_size), "thumbnail"
        except SlideStreamError:
            pass
    scale = min(1.0, max_size / max(width, height))
    w, h = max(1, round(width * scale)), max(1, round(height * scale))
    return np.full((h, w, 3), BACKGROUND, np.uint8), "blank"


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
    from slidestream.viz.prototype_map import prototype_geojson, render_prototype_map

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
