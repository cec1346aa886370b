"""Per-slide stages that read a slide and write its store: tissue, tiles, selection.

Each stage is idempotent: it skips work the store already holds with the same parameters,
refuses (clearly) to mix results of different parameters unless told to overwrite, and writes
atomically, so an interrupted batch can simply be run again.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from slidestream.encoders.loading import encoder_name, encoder_tiling
from slidestream.encoders.loading import resolve as resolve_encoder
from slidestream.errors import ConfigError, StoreError
from slidestream.extraction import ExtractOptions, FeaturesDone, extract_store
from slidestream.extraction.reader import open_tile_reader
from slidestream.io import Slide, open_slide
from slidestream.io.discovery import check_mpp
from slidestream.io.discovery import slide_id_for as io_slide_id_for
from slidestream.io.fingerprint import slide_fingerprint
from slidestream.io.remote import location
from slidestream.pipeline.batch import Busy, Skip, busy_wait_left, report_items
from slidestream.pipeline.previews import Previews, thumbnail
from slidestream.selection import select_tiles
from slidestream.store import SlideStore, Tiles
from slidestream.store.lock import DEFAULT_STALE_AFTER_S, LockHeldError, SlideLock
from slidestream.tiling import tile_slide
from slidestream.tiling.params import SelectionParams, TilingParams
from slidestream.tissue import (
    ARTIFACT_QUPATH_CLASSES,
    INK_CLASS,
    TISSUE_CLASS,
    TissueParams,
    artifacts_to_feature_collection,
    geometry_to_feature_collection,
    segment_tissue,
    write_feature_collection,
    write_tissue_geojson,
)
from slidestream.viz.overlay import draw_overlay, overlay_pixels, save_png

# Long side of the tissue and tile pictures (a 1600 px working image costs 2.5x the PNG encode)
PREVIEW_MAX_SIDE = 1024


@dataclass(frozen=True)
class SlideSource:
    """A slide to process and how to open it."""

    path: Path
    backend: str = "auto"
    default_mpp: float | None = None  # used only when the file carries no mpp
    problem: str | None = None        # why this slide cannot run (e.g. a bad mpp in its list row)

    @property
    def slide_id(self) -> str:
        return slide_id_for(self.path)

    def open(self) -> Slide:
        """Open the slide; a known problem or an unusable mpp fails here, before any work."""
        if self.problem:
            raise ConfigError(self.path, self.problem)
        if self.default_mpp is not None and (why := check_mpp(self.default_mpp, "default mpp")):
            raise ConfigError(self.path, why)
        return open_slide(self.path, backend=self.backend, default_mpp=self.default_mpp)  # type: ignore[arg-type]


def slide_id_for(path: Path) -> str:
    """The file name without its slide extension (``x.svs`` -> ``x``; ``x.ome.tiff`` -> ``x.ome``);
    a DICOM series' container identifier or folder name (see :func:`slidestream.io.discovery.slide_id_for`)."""
    return io_slide_id_for(path)


def check_unique_ids(paths: list[Path]) -> None:
    """Two slides with the same stem would write the same store: refuse, naming both."""
    seen: dict[str, Path] = {}
    for p in paths:
        sid = slide_id_for(p)
        if sid in seen:
            raise ConfigError(p, f"slide id '{sid}' clashes with {seen[sid]}: both would write {sid}.zarr; rename one or split the run")
        seen[sid] = p


def open_store(source: SlideSource, out: Path, slide: Any) -> SlideStore:
    """Create or open the slide's store, refusing one that was made from a different file."""
    info = slide.info()
    info["path"] = location(info["path"])
    info["fingerprint"] = slide_fingerprint(slide.path)
    store = SlideStore.create(out, source.slide_id, info)
    recorded = store.slide_info.get("fingerprint")
    if recorded and recorded != info["fingerprint"]:
        raise StoreError(store.path, f"was made from a different file than {source.path} (fingerprint changed); use another --out or delete the store")
    store.update_slide_info(info)  # e.g. a new mpp override: the root must describe what the stages used
    return store


def check_slide_id(path: Path, slide_id: str) -> None:
    """A slide id names files (``<id>.zarr``, ``.done/<id>/``, ``.locks/<id>.lock``, logs): it must be
    one plain file name. Any other text (spaces, quotes, ``$``, unicode, a leading dash) is fine."""
    if slide_id in ("", ".", "..") or "/" in slide_id or "\0" in slide_id or "\\" in slide_id:
        raise ConfigError(path, f"slide id {slide_id!r} cannot name an output file (no '/', '\\', '.' or '..'); rename the file")


@contextlib.contextmanager
def slide_lock(out: Path, slide_id: str, *, stale_after_s: float = DEFAULT_STALE_AFTER_S,
               wait_s: float | None = None) -> Iterator[SlideLock]:
    """Hold ``slide_id``'s lock in ``out`` while a stage writes its store (see ``store/lock.py``).

    A slide another live process holds raises :class:`~slidestream.pipeline.batch.Busy`: the batch
    defers it, later waits for it (``wait_s``, by default what is left of the batch's wait) and then
    runs the stage again, which verifies the other process's work. Never a silent success.
    """
    check_slide_id(out / slide_id, slide_id)
    wait = busy_wait_left() if wait_s is None else wait_s
    try:
        lock = SlideLock(out, slide_id, stale_after_s=stale_after_s, wait_s=wait).acquire()
    except LockHeldError as held:
        raise Busy(f"in progress elsewhere ({held.owner_text})", locked_by=held.owner_text) from None
    with lock:
        yield lock


def locked(out: Path, source: SlideSource, task: Callable[[], dict[str, Any]], **lock_options: float) -> dict[str, Any]:
    """``task()`` under the slide's lock: the form batch commands wrap their per-slide stage in."""
    with slide_lock(out, source.slide_id, **lock_options):
        return task()


# ---------------------------------------------------------------------------------- tissue
def run_tissue(source: SlideSource, out: Path, params: TissueParams, *, overwrite: bool = False,
               write_images: bool = True) -> dict[str, Any]:
    """Segment tissue (``params.method``) and write ``tissue`` into the store, plus ``<id>.geojson``,
    ``<id>.ink.geojson`` (the pen marks excluded, when pen removal is on), ``<id>.tissue.png`` and,
    with artifacts, ``<id>.artifacts.geojson``."""
    out.mkdir(parents=True, exist_ok=True)
    with source.open() as slide, Previews() as previews:
        return _detect_tissue(source, out, params, slide, previews, overwrite=overwrite, write_images=write_images)


def _detect_tissue(source: SlideSource, out: Path, params: TissueParams, slide: Slide, previews: Previews, *,
                   overwrite: bool, write_images: bool) -> dict[str, Any]:
    """:func:`run_tissue` on an open slide; its picture is drawn and written on ``previews``
    (the caller's ``with`` block waits for it), overlapping the store writes."""
    wanted = {**params.identity(), "slide_mpp": list(slide.mpp)}
    existing = _existing_store(out, source)
    recomputed = drop_if_damaged(existing, "tissue", deep=False)
    if existing is not None and existing.has("tissue") and not overwrite:
        done = existing.node_attrs("tissue")
        if _same_tissue(done.get("params"), wanted):
            _check_same_weights(existing, done, params)
            restored = _restore_tissue_files(source, out, slide, params, write_images)
            raise Skip("tissue already detected" + (f" ({restored} restored)" if restored else ""),
                       **done.get("summary", {}))
        raise StoreError(existing.path, "holds tissue detected with other parameters (or another slide mpp); use --overwrite to replace it (tiles and features are then recomputed)")
    result = segment_tissue(slide, params)
    store = open_store(source, out, slide)
    classical_ran = params.method == "classical" or params.combine is not None  # the ink comes from it
    ink = result.ink_geometry() if params.remove_pen and classical_ran else None
    ink_collection = geometry_to_feature_collection(ink, INK_CLASS) if ink is not None else None
    artifacts = artifacts_to_feature_collection(result.artifacts) if params.run_artifacts else None
    # the picture and the GeoJSON files are written in the background while the store is; the
    # caller's ``with previews`` waits for them, and a failed one fails the stage (a rerun then
    # restores what is missing next to the complete store, see _restore_tissue_files)
    if write_images:
        shading = {k: (g, tuple(ARTIFACT_QUPATH_CLASSES[k]["color"])) for k, g in result.artifacts.items()}
        base, dimensions, geometry, picture = thumbnail(result.image, PREVIEW_MAX_SIDE), slide.dimensions, \
            result.geometry, out / f"{source.slide_id}.tissue.png"
        previews.submit(lambda: save_png(overlay_pixels(base.get(), dimensions, geometry, ink=ink,
                                                        artifacts=shading), picture))
    polygons, areas, sid = result.polygons, result.areas_um2, source.slide_id
    previews.submit(lambda: write_tissue_geojson(polygons, areas, out / f"{sid}.geojson"))
    for collection, suffix in ((ink_collection, "ink"), (artifacts, "artifacts")):
        if collection is not None:
            previews.submit(lambda c=collection, x=suffix: write_feature_collection(c, out / f"{sid}.{x}.geojson"))
    if store.has("tissue"):
        store.invalidate_dependents("tissue")
    summary = result.summary()
    store.write_tissue(np.asarray(result.polygons, dtype=object).reshape(-1), summary, wanted, ink=ink_collection,
                       artifacts=artifacts, provenance=result.provenance or None,
                       areas_um2=result.areas_um2, classification=TISSUE_CLASS, mask=result.mask)
    _remember_tissue(store, result.geometry, result.image, result.mask)
    return with_recomputed({**summary, "note": "no tissue found" if result.is_empty else ""}, recomputed)


def drop_if_damaged(store: SlideStore | None, rel: str, *, deep: bool) -> list[str]:
    """Delete node ``rel`` and what depends on it when it exists but does not verify.

    "Already done" must mean done *and intact*: a node with a missing or altered chunk, or
    damaged metadata, is removed here so the calling stage recomputes it. Returns the manifest's
    note (``["tiles (tiles/coords: chunk c/0/0 is missing ...)"]``), empty when nothing was wrong.
    ``deep`` decodes every chunk (checksums); otherwise metadata and chunk presence are checked.
    """
    if store is None or not (store.path / rel).exists():
        return []
    problem = store.node_problem(rel, deep=deep)
    if problem is None:
        return []
    store.delete(rel)
    removed = store.invalidate_dependents(rel)
    return [f"{rel} ({problem})" + (f", and removed what depended on it ({', '.join(removed)})" if removed else "")]


def with_recomputed(summary: dict[str, Any], recomputed: list[str]) -> dict[str, Any]:
    """Say in the manifest (note and details) which damaged nodes this stage recomputed."""
    if not recomputed:
        return summary
    note = "recomputed damaged " + "; ".join(recomputed)
    return {**summary, "recomputed": recomputed,
            "note": "; ".join(n for n in (note, summary.get("note")) if n)}


def recorded_params(store: SlideStore | None, rel: str) -> dict[str, Any] | None:
    """The parameters node ``rel`` was made with: from its attrs, else from the root's stage record
    (which survives damage to the node itself)."""
    if store is None:
        return None
    try:
        params = store.node_attrs(rel).get("params")
    except StoreError:
        try:
            params = (store.attrs.get("stages", {}).get(rel) or {}).get("params")
        except Exception:
            return None
    if not isinstance(params, dict):
        return None
    return {k: v for k, v in params.items() if k != "slide_mpp"}


def _check_same_weights(store: SlideStore, done: dict[str, Any], params: TissueParams) -> None:
    """Same parameters but another weights file (by SHA-256) is not the same tissue: refuse to skip.
    Weights that cannot be found now do not block the skip: the store already has the result."""
    from slidestream.errors import WeightsError
    from slidestream.tissue.models import SPECS
    from slidestream.tissue.seg_weights import resolve, sha256_file

    recorded = done.get("provenance") or {}
    for key, model, given in (("tissue_model", params.method, params.weights),
                              ("artifact_model", "grandqc_artifact", params.artifact_weights)):
        sha = (recorded.get(key) or {}).get("weights_sha256")
        if sha is None or params.random_init or model not in SPECS:
            continue
        try:
            current = sha256_file(resolve(SPECS[model], given))
        except WeightsError:
            continue
        if current != sha:
            raise StoreError(store.path, f"holds tissue made with other {model} weights (SHA-256 {sha[:12]}..., now "
                                         f"{current[:12]}...); use --overwrite to replace it")


def _same_params(stored: dict[str, Any] | None, wanted: dict[str, Any],
                 canonical: Callable[[dict[str, Any]], dict[str, Any]]) -> bool:
    """Whether stored stage parameters mean the same work as ``wanted`` (both with ``slide_mpp``).
    Compared through the stage's model (``canonical``), so a store written before a parameter
    existed (e.g. tile QC, deep tissue methods) has that parameter's default, not a difference."""
    if not stored:
        return False
    stored, wanted = dict(stored), dict(wanted)
    if stored.pop("slide_mpp", None) != wanted.pop("slide_mpp", None):
        return False
    try:
        return canonical(stored) == canonical(wanted)
    except ValueError:
        return False


def _same_tissue(stored: dict[str, Any] | None, wanted: dict[str, Any]) -> bool:
    return _same_params(stored, wanted, lambda p: TissueParams(**p).identity())


def _restore_tissue_files(source: SlideSource, out: Path, slide: Slide, params: TissueParams,
                          write_images: bool) -> str:
    """Files next to the store lost after it was written (a full disk, a cleanup): rewrite them.

    Detection is deterministic and cheap, so the GeoJSON and picture are drawn again from the same
    parameters; the store's tissue node is left as it is. Returns what was restored ("" if nothing)."""
    geojson = out / f"{source.slide_id}.geojson"
    png = out / f"{source.slide_id}.tissue.png"
    if geojson.exists() and (png.exists() or not write_images):
        return ""
    result = segment_tissue(slide, params)
    write_tissue_geojson(result.polygons, result.areas_um2, geojson)
    classical_ran = params.method == "classical" or params.combine is not None  # the ink comes from it
    ink = result.ink_geometry() if params.remove_pen and classical_ran else None
    if ink is not None:
        write_feature_collection(geometry_to_feature_collection(ink, INK_CLASS), out / f"{source.slide_id}.ink.geojson")
    if write_images:
        shading = {k: (g, tuple(ARTIFACT_QUPATH_CLASSES[k]["color"])) for k, g in result.artifacts.items()}
        save_png(draw_overlay(result.image, slide.dimensions, result.geometry, ink=ink, artifacts=shading,
                                  max_side=PREVIEW_MAX_SIDE), png)
    return "GeoJSON and picture" if write_images else "GeoJSON"


def stored_tissue_params(store: SlideStore | None) -> TissueParams | None:
    """The tissue parameters a store was made with, or None (no store, no tissue, or an older format)."""
    params = recorded_params(store, "tissue")
    if params is None:
        return None
    try:
        return TissueParams(**params)
    except ValueError:
        return None


def _existing_store(out: Path, source: SlideSource) -> SlideStore | None:
    path = out / f"{source.slide_id}.zarr"
    return SlideStore.open(path) if (path / "zarr.json").exists() else None


# The tissue geometry last detected or parsed in this process, with the stamp of the store file it
# came from: tiling right after detection (and the overlay after tiling) reuse it instead of
# parsing the multi-MB GeoJSON attribute again. One entry, so a long batch holds one slide's.
_TISSUE_MEMO: dict[str, tuple[tuple[int, int, int], Any, np.ndarray | None, np.ndarray | None]] = {}


def _tissue_stamp(store: SlideStore) -> tuple[int, int, int] | None:
    try:
        st = os.stat(Path(store.path) / "tissue" / "zarr.json")
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def _remember_tissue(store: SlideStore, geometry: Any, image: np.ndarray | None = None,
                     mask: np.ndarray | None = None) -> None:
    _TISSUE_MEMO.clear()
    stamp = _tissue_stamp(store)
    if stamp is not None:
        _TISSUE_MEMO[str(store.path)] = (stamp, None if geometry is None or geometry.is_empty else geometry, image, mask)


def _remembered_image(store: SlideStore) -> np.ndarray | None:
    """The low-resolution image detection ran on, when this process detected the store's tissue."""
    hit = _TISSUE_MEMO.get(str(store.path))
    return hit[2] if hit is not None and hit[0] == _tissue_stamp(store) else None


def tissue_geometry(store: SlideStore):
    """The store's tissue (level-0 geometry, None when empty); read once per written version."""
    hit = _TISSUE_MEMO.get(str(store.path))
    if hit is not None and hit[0] == _tissue_stamp(store):
        return hit[1]
    geometry = store.read_tissue_geometry()
    _remember_tissue(store, geometry, _remembered_image(store))
    return geometry


def tissue_for_tiling(store: SlideStore):
    """What tile coverage is computed from: the detector's mask the store holds (as the API's
    ``tile_slide(slide, detect_tissue(slide))``), or the polygons for stores written without one."""
    hit = _TISSUE_MEMO.get(str(store.path))
    if hit is not None and hit[0] == _tissue_stamp(store) and hit[3] is not None:
        return hit[3]
    mask = store.read_tissue_mask()
    return mask if mask is not None else tissue_geometry(store)


# ---------------------------------------------------------------------------------- tiles
def run_tiles(source: SlideSource, out: Path, tiling: TilingParams, tissue: TissueParams | None = None, *,
              selection: SelectionParams | None = None, overwrite: bool = False,
              write_images: bool = True) -> dict[str, Any]:
    """Tissue (if missing), then the tile grid, then an optional selection, into the store.

    ``tissue=None`` keeps the parameters the store's tissue was detected with (defaults for a
    new store), so ``tile --overwrite`` never silently swaps a tuned detection for the default.
    """
    out.mkdir(parents=True, exist_ok=True)
    existing = _existing_store(out, source)
    if tissue is None:
        tissue = stored_tissue_params(existing) or TissueParams()
    recomputed: list[str] = []
    # one open slide for detection and tiling; the pictures are written in the background and
    # waited for (their failures raised) when the ``with`` block ends
    with source.open() as slide, Previews() as previews:
        detected = existing is None or not existing.has("tissue") or overwrite
        if detected:
            with contextlib.suppress(Skip):   # a skip restored its own files
                recomputed += _detect_tissue(source, out, tissue, slide, previews, overwrite=overwrite,
                                             write_images=write_images).get("recomputed", [])
        return _tile(source, out, tiling, tissue, slide, previews, selection=selection, overwrite=overwrite,
                     write_images=write_images, recomputed=recomputed, detected=detected)


def _tile(source: SlideSource, out: Path, tiling: TilingParams, tissue: TissueParams, slide: Slide,
          previews: Previews, *, selection: SelectionParams | None, overwrite: bool, write_images: bool,
          recomputed: list[str], detected: bool) -> dict[str, Any]:
    """:func:`run_tiles` after detection, on the open slide (``detected``: detection ran just now)."""
    store = SlideStore.open(out / f"{source.slide_id}.zarr")
    recomputed += drop_if_damaged(store, "tiles", deep=True)  # tiles are small: check every checksum
    if selection is not None:
        recomputed += drop_if_damaged(store, f"selections/{selection.name}", deep=True)
    restored = _restore_tissue_files(source, out, slide, stored_tissue_params(store) or tissue, write_images) \
        if store.has("tissue") and not detected else ""
    wanted = {**tiling.model_dump(), "slide_mpp": list(slide.mpp)}
    grid = None
    if store.has("tiles") and not overwrite and _same_tiling(store.node_attrs("tiles").get("params"), wanted):
        tiles = store.read_tiles()
    elif store.has("tiles") and not overwrite:
        raise StoreError(store.path, "holds tiles made with other parameters; use --overwrite to replace them (features are then recomputed) or another --out")
    else:
        grid = tile_slide(slide, tissue_for_tiling(store), **tiling.model_dump())
        # the table as the store will hold it: selection and picture work from it while it is written
        tiles = Tiles(coords=np.asarray(grid.coords, dtype=np.int64).reshape(-1, 2),
                      tissue_fraction=np.asarray(grid.tissue_fraction, dtype=np.float32).reshape(-1),
                      attrs={**grid.attrs(), "backend": slide.backend_name}, focus=grid.focus, qc=grid.qc)
    did_tiles = grid is not None
    low_res: list[np.ndarray] = []

    def low_res_image() -> np.ndarray:  # read once, only if a selection or a picture needs it
        if not low_res:
            image = _remembered_image(store)  # detection's own image, when detection ran here
            low_res.append(image if image is not None else
                           slide.read_whole(store.node_attrs("tissue")["summary"]["working_mpp"])[0])
        return low_res[0]

    summary: dict[str, Any] = {"tiles": len(tiles), "read_level": tiles.attrs["read_level"],
                               "note": "" if len(tiles) else "no tiles: no tissue above min_tissue"}
    for dropped in ("out_of_focus_dropped", "qc_dropped"):
        if tiles.attrs.get(dropped):
            summary[dropped] = tiles.attrs[dropped]
    picture = out / f"{source.slide_id}.tiles.png"
    selected = None

    def picture_or_skip(done_before: bool) -> None:
        """Skip when nothing was to do; else draw the picture in the background (also when only
        the picture was lost, e.g. to a full disk after the store was written)."""
        if done_before and (picture.exists() or not write_images):
            raise Skip("tiles already made" + (f" (tissue {restored} restored)" if restored else ""), **summary)
        if write_images:
            base = thumbnail(low_res_image(), PREVIEW_MAX_SIDE)  # the tissue picture's, when drawn here
            args = (slide.dimensions, tissue_geometry(store), tiles.coords, tuple(tiles.attrs["level0_size"]))
            previews.submit(lambda: save_png(overlay_pixels(base.get(), *args, selected=selected), picture))

    if selection is None:
        picture_or_skip(not did_tiles)  # drawn while the tiles are written
    if grid is not None:  # the tiles are stored before any selection, so a failed selection keeps them
        if store.has("tiles"):
            store.invalidate_dependents("tiles")
        store.write_tiles(tiles.coords, tiles.tissue_fraction, tiles.attrs, wanted, focus=grid.focus, qc=grid.qc)
    did_selection = False
    if selection is not None:
        name = selection.name
        sel_params = selection.model_dump()
        if store.has(f"selections/{name}") and store.node_attrs(f"selections/{name}").get("params") == sel_params and not did_tiles:
            selected = store.read_selection(name)
        else:
            selected = select_tiles(selection.method, tiles.coords, extent0=tuple(tiles.attrs["level0_size"]),
                                    tissue_fraction=tiles.tissue_fraction, image=low_res_image(),
                                    level0_size=slide.dimensions, fraction=selection.fraction,
                                    count=selection.count, seed=selection.seed)
            store.write_selection(name, selected, {"method": selection.method, "params": sel_params})
            did_selection = True
        summary["selected"] = len(selected)
        picture_or_skip(not did_tiles and not did_selection)
    if not did_tiles and not did_selection:
        raise Skip("tiles already made (picture restored)", **summary)
    return with_recomputed(summary, recomputed)


def tile_pixels(store: SlideStore, slide: Any, index: int, *, encoder: str | None = None) -> np.ndarray:
    """Re-read tile ``index`` (a row of ``tiles``) of ``store``.

    Without ``encoder``: the reference read, ``read_at_mpp`` (the recorded level and size, then an
    antialiased resize). With ``encoder``: the very pixels that encoder's features were computed
    from, through the reader recorded with them. They differ only when the JPEG fast path decoded
    at a reduced DCT scale (``reader`` ``jpeg-dct-1/2`` etc.: a few grey levels from the reference).
    """
    tiles = store.read_tiles()
    if encoder is None:
        x, y = (int(v) for v in tiles.coords[index])
        return slide.read_at_mpp(x, y, tiles.attrs["target_mpp"], tiles.attrs["tile_size_px"],
                                 allow_upsample=bool(tiles.attrs.get("params", {}).get("allow_upsample", False)))
    recorded = store.node_attrs(f"features/{encoder}")["reader"]
    reader = open_tile_reader(slide.spec, tiles.attrs, fast=recorded.startswith("jpeg"), workers=1)
    try:
        if reader.name != recorded:
            raise StoreError(store.path, f"features/{encoder} were read with '{recorded}', but only '{reader.name}' can read this slide now")
        return reader.read_batch(tiles.coords[index:index + 1])[0]
    finally:
        reader.close()


# ---------------------------------------------------------------------------------- features
def run_extract(source: SlideSource, out: Path, encoder: Any, options: ExtractOptions, *,
                tiling: TilingParams | None = None, tissue: TissueParams | None = None,
                overwrite: bool = False, write_images: bool = True) -> dict[str, Any]:
    """Tissue and tiles first when the store lacks them (at ``tiling``, by default the encoder's
    native mpp and tile size), then features into ``features/<encoder>``. ``encoder`` may be an
    :class:`~slidestream.encoders.loading.EncoderLoad` still loading: it is waited for only
    before the features (a failed load stops the batch as ``EncoderLoadFailed``)."""
    existing = _existing_store(out, source)
    tiles_damaged = existing is not None and (existing.path / "tiles").exists() \
        and existing.node_problem("tiles", deep=True) is not None
    needs_tiles = existing is None or not existing.has("tiles") or tiles_damaged
    if tiling is None and needs_tiles:
        recorded = recorded_params(existing, "tiles") if tiles_damaged else None
        native_mpp, native_size = encoder_tiling(encoder)   # an encoder still loading: no waiting
        tiling = _tiling_or_none(recorded) or TilingParams(mpp=native_mpp, tile_size=native_size)
    recomputed: list[str] = []
    if tiling is not None and (needs_tiles or overwrite or _tiles_differ(existing, tiling)):
        with contextlib.suppress(Skip):
            recomputed += run_tiles(source, out, tiling, tissue, overwrite=overwrite,
                                    write_images=write_images).get("recomputed", [])
    store = SlideStore.open(out / f"{source.slide_id}.zarr")
    # "Already extracted" only for features that verify: every chunk decoded, checksums checked
    # (the cost of reading them once, small next to extracting them; see benchmarks/checksum_overhead.py).
    recomputed += drop_if_damaged(store, f"features/{encoder_name(encoder)}", deep=True)
    with source.open() as slide:
        spec = slide.spec
    waited = time.perf_counter()
    encoder = resolve_encoder(encoder)   # an EncoderLoad is joined here, just before the first forward
    waited = time.perf_counter() - waited
    try:
        result = extract_store(spec, store, encoder, options, overwrite=overwrite, progress=report_items)
    except FeaturesDone as done:
        raise Skip("features already extracted", features=done.rows) from None
    if waited >= 0.001:   # the run's encoder load, not this slide's work: the manifest says how much
        result["encoder_wait_s"] = round(waited, 3)
    if not result["features"]:  # keep extraction's own note (e.g. a scale mismatch) after the reason
        result["note"] = "; ".join(n for n in (nothing_to_embed(store, options.selection), result.get("note")) if n)
    return with_recomputed(result, recomputed)


def _tiling_or_none(params: dict[str, Any] | None) -> TilingParams | None:
    try:
        return TilingParams(**params) if params else None
    except ValueError:
        return None


def nothing_to_embed(store: SlideStore, selection: str | None) -> str:
    """The manifest's reason for an empty feature array: a blank slide must not pass silently."""
    if selection:
        return f"selection '{selection}' is empty: no tiles to embed"
    summary = store.node_attrs("tissue").get("summary", {}) if store.has("tissue") else {}
    if summary.get("tissue_pieces") == 0:
        return "no tissue found: no tiles to embed"
    return "no tiles to embed: no tissue above min_tissue"


def _tiles_differ(store: SlideStore | None, tiling: TilingParams) -> bool:
    if store is None or not store.has("tiles"):
        return True
    params = dict(store.node_attrs("tiles").get("params", {}))
    params.pop("slide_mpp", None)
    return not _same_tiling(params, tiling.model_dump())


def _same_tiling(stored: dict[str, Any] | None, wanted: dict[str, Any]) -> bool:
    return _same_params(stored, wanted, lambda p: TilingParams(**p).model_dump())
