"""The report's pictures: overview (tissue, tiles, selection), tile-score maps, the run's own PNGs.

Everything lands in ``OUT/report/img/`` so the report folder stands alone. Each picture is
keyed by what it was drawn from (slide fingerprint, node completion times, file mtimes); a
picture whose key has not changed is not redrawn, so writing the report after every batch costs
almost nothing for slides that did not change. Pictures no longer referenced are removed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from slidestream.atomic import atomic_path, atomic_write_text
from slidestream.viz.overlay import (
    HOLE_COLOUR,
    INK_COLOUR,
    SELECTED_COLOUR,
    TILE_COLOUR,
    TISSUE_COLOUR,
    draw_overlay,
)
from slidestream.viz.report_model import REPORT_DIR, Figure, SlideReport

THUMB_SIZE = 1024  # longest side of the pictures, px (shown smaller; click opens the full picture)
EXTRA_MAX = 1600  # the run's own PNGs are shrunk to at most this
DRAW_VERSION = 3  # bump when drawing changes, to redraw cached pictures
CACHE_NAME = ".cache.json"
# The overview and fallbacks draw these; the run's own copies are shown through the overview.
OWN_PNG_SUFFIXES = (".tissue.png", ".tiles.png")


def _css(rgb: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def _file_key(path: Path) -> str:
    st = path.stat()
    return f"{st.st_size}-{st.st_mtime_ns}"


class ReportImages:
    """Draws (or reuses) the pictures of each slide; call :meth:`finish` once at the end."""

    def __init__(self, report_dir: Path, out: Path, slide_ids: list[str] | None = None) -> None:
        self.out = Path(out)
        self.dir = Path(report_dir) / "img"
        self.dir.mkdir(parents=True, exist_ok=True)
        try:
            self.cache: dict[str, str] = json.loads((self.dir / CACHE_NAME).read_text())
        except (OSError, ValueError):
            self.cache = {}
        self.used: set[str] = set()
        self._extras: dict[str, list[Path]] | None = None
        self._slide_ids = slide_ids

    # ------------------------------------------------------------------ cache
    def _picture(self, name: str, key: str, draw: Callable[[], Image.Image | None]) -> str | None:
        """``img/<name>``, drawn by ``draw`` unless a picture with the same key is already there."""
        path = self.dir / name
        if self.cache.get(name) == key and path.exists():
            self.used.add(name)
            return f"img/{name}"
        image = draw()
        if image is None:
            return None
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            if name.endswith(".jpg"):
                image.convert("RGB").save(tmp, format="JPEG", quality=88)
            else:
                image.save(tmp, format="PNG", compress_level=1)
        self.cache[name] = key
        self.used.add(name)
        return f"img/{name}"

    def finish(self) -> None:
        """Write the cache and delete pictures this report no longer shows."""
        for path in sorted(self.dir.rglob("*")):
            rel = path.relative_to(self.dir).as_posix()
            if path.is_file() and path.suffix in (".jpg", ".png") and rel not in self.used:
                path.unlink(missing_ok=True)
        for path in sorted(self.dir.rglob("*"), reverse=True):
            if path.is_dir() and not any(path.iterdir()):
                path.rmdir()
        cache = {k: v for k, v in self.cache.items() if k in self.used}
        atomic_write_text(self.dir / CACHE_NAME, json.dumps(cache, indent=0, sort_keys=True))

    # ------------------------------------------------------------------ per slide
    def figures_for(self, slide: SlideReport) -> list[Figure]:
        base = _Base(self, slide)
        figures = []
        overview = self._overview(slide, base)
        if overview is not None:
            figures.append(overview)
        figures.extend(self._score_maps(slide, base))
        figures.extend(self._extras_for(slide))
        return figures

    def _overview(self, slide: SlideReport, base: _Base) -> Figure | None:
        store = slide.store
        sid = slide.slide_id
        if store is not None and slide.tissue is not None and base.key is not None:
            selection = _selection_to_draw(slide)
            key = json.dumps([DRAW_VERSION, base.key, slide.tissue.get("completed"),
                              (slide.tiles or {}).get("completed"), selection,
                              slide.selections.get(selection or "", {}).get("completed")])
            src = self._picture(f"{sid}.overview.jpg", key, lambda: _draw_overview(slide, base.image(), selection))
            if src is not None:
                return Figure("Tissue, tiles and selection", src, _overview_caption(slide, selection),
                              legend=_overview_legend(slide, selection))
        if base.key is not None and (store is None or slide.tissue is None):
            why = "the slide failed before tissue detection" if slide.failures else "no tissue detection yet"
            return Figure("Slide thumbnail", f"img/{base.name}", f"Nothing is drawn: {why}. Click to enlarge.")
        for suffix, what in ((".tiles.png", "tissue, tiles and selection"), (".tissue.png", "tissue outline")):
            own = self.out / f"{sid}{suffix}"
            if own.exists():
                src = self._picture(f"{sid}{suffix.replace('.png', '.run.png')}", json.dumps([DRAW_VERSION, _file_key(own)]),
                                    lambda own=own: _shrunk(Image.open(own), THUMB_SIZE))
                if src is not None:
                    why = f" ({base.problem})" if base.problem else ""
                    return Figure(f"Picture written by the run: {what}", src,
                                  f"{own.name}, as written during the run; the slide could not be re-read for this report{why}.",
                                  legend=_overview_legend(slide, None))
        slide.no_picture = base.problem or ("nothing drawn yet" if store is None else "")
        return None

    def _score_maps(self, slide: SlideReport, base: _Base) -> list[Figure]:
        """``tile_scores/*`` drawn exactly as ``slidestream heatmap`` draws them (same renderers)."""
        from slidestream.viz.canvas import tile_layer
        from slidestream.viz.heatmap import render_heatmap
        from slidestream.viz.prototype_map import render_prototype_map

        figures: list[Figure] = []
        store = slide.store
        if store is None or slide.tiles is None or base.key is None:
            return figures
        for name, attrs in slide.tile_scores.items():
            key = json.dumps([DRAW_VERSION, base.key, attrs.get("completed"), slide.tiles.get("completed")])
            facts: dict[str, Any] = {}

            def draw(name=name, facts=facts) -> Image.Image | None:
                layer = tile_layer(store, name)
                if layer.values.ndim != 1:
                    raise ValueError(f"scores of shape {layer.values.shape}: only one value per tile can be drawn")
                render = render_prototype_map if layer.categorical else render_heatmap
                return render(base.image(), layer).image

            try:
                src = self._picture(f"{slide.slide_id}.scores-{_safe(name)}.jpg", key, draw)
                if src is not None:
                    figures.append(_score_figure(store, name, attrs, src))
            except Exception as exc:  # e.g. rows no longer align after re-tiling
                slide.warnings.append(f"tile_scores/{name} not drawn: {getattr(exc, 'reason', exc)}")
        return figures

    def _extras_for(self, slide: SlideReport) -> list[Figure]:
        if self._extras is None:
            self._extras = _find_extra_pngs(self.out, self._slide_ids)
        figures = []
        # `slidestream heatmap --out OUT` writes <id>.<scores>.png: the same picture as the score maps above
        drawn = {f"{slide.slide_id}.{name}.png" for name in slide.tile_scores}
        for path in self._extras.get(slide.slide_id, []):
            if path.name in drawn:
                continue
            rel = path.relative_to(self.out).as_posix()
            name = "run/" + rel.replace("/", "__")
            src = self._picture(name, json.dumps([DRAW_VERSION, _file_key(path)]),
                                lambda path=path: _shrunk(Image.open(path), EXTRA_MAX))
            if src is not None:
                figures.append(Figure(path.name, src, f"written by the run: {rel}"))
        return figures


class _Base:
    """The slide's clean thumbnail, read at most once per report and cached as ``<id>.thumb.jpg``."""

    def __init__(self, images: ReportImages, slide: SlideReport) -> None:
        self.images = images
        self.slide = slide
        self.problem = ""
        self._image: np.ndarray | None = None
        self.name = f"{slide.slide_id}.thumb.jpg"
        fingerprint = slide.info.get("fingerprint")
        path = Path(slide.path) if slide.path else None
        if fingerprint:
            self.key: str | None = json.dumps([THUMB_SIZE, fingerprint])
        elif path is not None and path.is_file():
            self.key = json.dumps([THUMB_SIZE, str(path), _file_key(path)])
        else:
            self.key = None
            self.problem = f"the slide file {path} is not there" if path else "the slide's file is unknown"
        if self.key is not None and images.cache.get(self.name) == self.key and (images.dir / self.name).exists():
            images.used.add(self.name)
        elif self.key is not None and images._picture(self.name, self.key, self._read) is None:
            # Read now, so a slide that cannot be opened is known before any picture depends on it.
            self.key = None

    def _read(self) -> Image.Image | None:
        from slidestream.io import open_slide

        try:
            with open_slide(self.slide.path, backend=self.slide.info.get("backend") or "auto") as s:
                self._image = s.thumbnail(THUMB_SIZE)
        except Exception as exc:
            self.problem = f"the slide could not be opened: {getattr(exc, 'reason', exc)}"
            return None
        return Image.fromarray(self._image)

    def image(self) -> np.ndarray | None:
        if self._image is None and self.key is not None:
            with Image.open(self.images.dir / self.name) as im:
                self._image = np.asarray(im.convert("RGB"))
        return self._image


# ---------------------------------------------------------------------------------- drawing
def _geometry(slide: SlideReport):
    # the viz package's one reader of stored tissue polygons
    from slidestream.viz.canvas import tissue_geometry

    return None if slide.store is None else tissue_geometry(slide.store)


def _level0_size(slide: SlideReport) -> tuple[int, int]:
    return int(slide.info["width"]), int(slide.info["height"])


def _selection_to_draw(slide: SlideReport) -> str | None:
    """The selection the features use, else the first one stored."""
    if not slide.tiles or not slide.tiles.get("n_tiles"):
        return None
    for attrs in slide.features.values():
        if attrs.get("selection") in slide.selections:
            return attrs["selection"]
    return next(iter(sorted(slide.selections)), None)


def _draw_overview(slide: SlideReport, thumb: np.ndarray | None, selection: str | None) -> Image.Image | None:
    if thumb is None or slide.store is None:
        return None
    coords = extent = selected = None
    if slide.tiles is not None and slide.tiles.get("n_tiles"):
        tiles = slide.store.read_tiles()
        coords, extent = tiles.coords, tuple(tiles.attrs["level0_size"])
        if selection:
            selected = slide.store.read_selection(selection)
    image = thumb
    if coords is not None and extent is not None:
        image = _tint_tiles(thumb, _level0_size(slide), coords, extent)
    return draw_overlay(image, _level0_size(slide), _geometry(slide), coords, extent, selected=selected, width=3,
                        ink=_ink(slide), artifacts=_artifacts(slide))


def _artifacts(slide: SlideReport) -> dict[str, Any]:
    """GrandQC artifact polygons of the store's tissue node, with their class colours (none: {})."""
    from slidestream.tissue.geojson import (
        ARTIFACT_QUPATH_CLASSES,
        artifacts_from_feature_collection,
    )

    found = artifacts_from_feature_collection(slide.tissue.get("artifacts_geojson") if slide.tissue else None)
    return {k: (g, tuple(ARTIFACT_QUPATH_CLASSES[k]["color"])) for k, g in found.items()}


def _ink(slide: SlideReport) -> Any:
    from slidestream.tissue.geojson import geometry_from_feature_collection

    ink = slide.tissue.get("ink_geojson") if slide.tissue else None
    return geometry_from_feature_collection(ink) if ink else None


def _tint_tiles(thumb: np.ndarray, level0_size: tuple[int, int], coords: np.ndarray,
                extent: tuple[int, int]) -> np.ndarray:
    """A light tile-coloured wash under the tile outlines: thin outlines vanish when the picture is shown small."""
    base = Image.fromarray(thumb).convert("RGBA")
    layer = Image.new("RGBA", base.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    sx, sy = base.width / level0_size[0], base.height / level0_size[1]
    for x, y in np.asarray(coords).tolist():
        draw.rectangle([x * sx, y * sy, (x + extent[0]) * sx, (y + extent[1]) * sy], fill=(*TILE_COLOUR, 55))
    return np.asarray(Image.alpha_composite(base, layer).convert("RGB"))


def _overview_caption(slide: SlideReport, selection: str | None) -> str:
    parts = []
    n = slide.n_tiles
    if n is not None and slide.tiles is not None:
        parts.append(f"{n} tiles of {slide.tiles.get('tile_size_px')} px at {slide.tiles.get('target_mpp'):g} µm/px"
                     if slide.tiles.get("target_mpp") is not None else f"{n} tiles")
    if selection:
        k = slide.selections[selection].get("n_selected")
        parts.append(f"{k} selected by '{selection}'")
        if len(slide.selections) > 1:
            others = ", ".join(s for s in sorted(slide.selections) if s != selection)
            parts.append(f"not drawn: {others}")
    if slide.tiles is None:
        tiles_failed = any(r.stage == "tiles" for r in slide.failures)
        parts.append("no tiles: the tiles stage failed" if tiles_failed else "not tiled yet")
    return "; ".join(parts) + ". Click to enlarge."


def _overview_legend(slide: SlideReport, selection: str | None) -> list[tuple[str, str]]:
    legend = [(_css(TISSUE_COLOUR), "tissue outline"), (_css(HOLE_COLOUR), "hole in tissue")]
    if slide.tissue and (slide.tissue.get("ink_geojson") or {}).get("features"):
        legend.append((_css(INK_COLOUR), "pen ink, excluded"))
    for key, (_, colour) in _artifacts(slide).items():
        from slidestream.tissue.geojson import ARTIFACT_QUPATH_CLASSES

        legend.append((_css(colour), f"artifact: {ARTIFACT_QUPATH_CLASSES[key]['name'].lower()}"))
    if slide.n_tiles:
        legend.append((_css(TILE_COLOUR), "tile"))
    if selection:
        legend.append((_css(SELECTED_COLOUR), f"selected tile ({selection})"))
    return legend


def _score_figure(store: Any, name: str, attrs: dict[str, Any], src: str) -> Figure:
    """Caption and a legend readable at any zoom (the picture's own legend is small on the page)."""
    from slidestream.viz.canvas import tile_layer
    from slidestream.viz.heatmap import colour_lut
    from slidestream.viz.prototype_map import _k, palette

    layer = tile_layer(store, name)
    values = layer.values
    what = ", ".join(str(attrs[k]) for k in ("method", "target", "task") if attrs.get(k))
    where = f"rows aligned with {attrs.get('rows', 'tiles')}"
    if layer.categorical:
        k = _k(layer, None)
        counts = np.bincount(np.asarray(values, np.int64), minlength=k)
        legend = [(_css(tuple(int(c) for c in colour)), f"P{i}: {n} tiles") for i, (colour, n) in enumerate(zip(palette(k), counts.tolist(), strict=True))]
        caption = f"Prototype map: each tile coloured by its prototype{f' ({what})' if what else ''}; {where}."
        return Figure(f"tile_scores/{name}", src, caption + " Click to enlarge.", legend=legend[:40])
    finite = np.asarray(values, np.float64)[np.isfinite(values)]
    lo, hi = (f"{finite.min():.3g}", f"{finite.max():.3g}") if len(finite) else ("n/a", "n/a")
    stops = [_css(tuple(int(c) for c in colour)) for colour in colour_lut("coolwarm", 7)]
    caption = (f"Heatmap{f' ({what})' if what else ''}: tiles coloured by the rank of their score, "
               f"blue lowest ({lo}) to red highest ({hi}); {where}.")
    return Figure(f"tile_scores/{name}", src, caption + " Click to enlarge.", colorbar=(stops, "lowest", "highest"))


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _shrunk(image: Image.Image, longest: int) -> Image.Image:
    with image:
        image.load()
        out = image.convert("RGBA" if "A" in image.getbands() else "RGB")
    out.thumbnail((longest, longest), Image.Resampling.LANCZOS)
    return out


def _find_extra_pngs(out: Path, slide_ids: list[str] | None) -> dict[str, list[Path]]:
    """PNGs the run wrote about a slide (``<id>.<what>.png`` in OUT or one folder down), by slide id.

    The overview replaces ``<id>.tissue.png`` and ``<id>.tiles.png`` in OUT itself.
    """
    if slide_ids is None:
        slide_ids = sorted(p.name[: -len(".zarr")] for p in out.glob("*.zarr"))
    ids = sorted(slide_ids, key=len, reverse=True)  # longest first: "a.b" before "a"
    found: dict[str, list[Path]] = {}
    candidates = sorted(out.glob("*.png")) + sorted(
        p for p in out.glob("*/*.png") if p.parent.name != REPORT_DIR and not p.parent.name.endswith(".zarr"))
    for path in candidates:
        if path.parent == out and path.name.endswith(OWN_PNG_SUFFIXES):
            continue
        for sid in ids:
            if path.name.startswith(sid) and path.name[len(sid):len(sid) + 1] in (".", "_", "-"):
                found.setdefault(sid, []).append(path)
                break
    return found
