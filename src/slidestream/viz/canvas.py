"""What every per-tile picture needs, in one place: the tile layer read from a store, the slide
thumbnail, the canvas and blend primitives, the QuPath tile squares and the atomic writers.

Heatmaps (:mod:`slidestream.viz.heatmap`, a colour ramp) and prototype maps
(:mod:`slidestream.viz.prototype_map`, a palette) differ only in colours and legend; both import
from here and never from each other.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from slidestream.atomic import atomic_write_text
from slidestream.errors import SlideStreamError, StoreError
from slidestream.store import SlideStore
from slidestream.viz.overlay import save_png

__all__ = [
    "Heatmap",
    "TileLayer",
    "add_side_panel",
    "blend",
    "font",
    "locate_slide",
    "rasterize_tiles",
    "slide_thumbnail",
    "tile_layer",
    "tiles_geojson",
    "tissue_geometry",
    "write_geojson",
    "write_png",
]

BACKGROUND = (235, 235, 235)  # when the slide file cannot be opened: a neutral canvas


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
    return atomic_write_text(path, json.dumps(collection, separators=(",", ":"), allow_nan=False))


# ----------------------------------------------------------------------------------- stores
def _rows_coords(store: SlideStore, rows: str) -> np.ndarray:
    """Level-0 coords of the rows a ``tile_scores`` node is aligned with (tiles or a feature set)."""
    coords = store.read_tiles().coords
    if rows.startswith("features/"):
        selection = store.node_attrs(rows).get("selection")
        if selection:
            coords = coords[store.read_selection(selection)]
    return coords


def tissue_geometry(store: SlideStore) -> Any:
    """The store's tissue polygons (shapely), or None: the viz package's one reader of them."""
    return store.read_tissue_geometry() if store.has("tissue") else None


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
        geometry=tissue_geometry(store),
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
