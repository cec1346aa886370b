"""The run report: ``OUT/report/index.html``, one page a person can scan in a minute.

It reads only what a run leaves behind: ``OUT/manifest.csv`` (what happened to each slide, per
stage) and the slide stores ``OUT/<id>.zarr`` (what was made, with which parameters). Pictures
are drawn into ``OUT/report/img/`` (see :mod:`slidestream.viz.report_images`) and the page is
plain HTML + CSS (see :mod:`slidestream.viz.report_html`), so the folder can be copied or
attached anywhere and opened without a network.

Writing is cheap to repeat: pictures are cached by what they were drawn from, and what each
store holds is cached by the store's signature (a stat of its files), so batch commands can call
:func:`write_report` at the end of every run and pay only for the slides that changed.
"""

from __future__ import annotations

import hashlib
import json
import os
import webbrowser
from collections import defaultdict
from pathlib import Path
from typing import Any

from slidestream.atomic import atomic_write_text
from slidestream.store.slide_store import STORE_SUFFIX, SlideStore
from slidestream.viz.report_model import (
    PER_SLIDE_PARAMS,
    REPORT_DIR,
    Figure,
    RunReport,
    SlideReport,
    StageConfig,
    StageRecord,
    stage_order,
)

#: Per-slide data read from the stores by the last report, keyed by each store's signature.
SLIDE_CACHE = ".slides.json"
SLIDE_CACHE_VERSION = 1  # bump when _CACHED_FIELDS or what they hold changes
_CACHED_FIELDS = ("damage", "info", "stages", "store_version", "tissue", "tiles", "selections", "features",
                  "embeddings", "tile_scores")

__all__ = [
    "REPORT_DIR",
    "Figure",
    "RunReport",
    "SlideReport",
    "StageConfig",
    "StageRecord",
    "collect_run",
    "open_report",
    "store_signature",
    "write_report",
]


# ---------------------------------------------------------------------------------- collecting
def _read_records(out: Path, problems: list[str]) -> tuple[dict[str, list[StageRecord]], dict[str, str]]:
    # The manifest's one reader lives with the batch code that writes it.
    from slidestream.pipeline.manifest import MANIFEST_NAME, read_manifest

    records: dict[str, list[StageRecord]] = defaultdict(list)
    paths: dict[str, str] = {}
    if not (out / MANIFEST_NAME).exists():
        return records, paths
    try:
        table = read_manifest(out)
    except Exception as exc:  # a damaged manifest must not cost the pictures
        problems.append(f"{MANIFEST_NAME} could not be read ({type(exc).__name__}: {exc}); slides are shown from their stores only")
        return records, paths
    for row in table.to_dict("records"):
        try:
            details = json.loads(row.get("details") or "{}")
        except ValueError:
            details = {}
        sid = str(row["slide_id"])
        records[sid].append(StageRecord(
            stage=str(row["stage"]), status=str(row["status"]), reason=str(row.get("reason") or ""),
            error_type=str(row.get("error_type") or ""), seconds=float(row.get("seconds") or 0.0),
            finished=str(row.get("finished") or ""), run_id=str(row.get("run_id") or ""),
            details=details if isinstance(details, dict) else {}))
        paths[sid] = str(row["slide"])
    for recs in records.values():
        recs.sort(key=lambda r: stage_order(r.stage))
    return records, paths


def _fill_from_store(report: SlideReport, store: SlideStore) -> dict[str, Any]:
    """Read what the page shows from the store; return it as the JSON the slide cache keeps."""
    from slidestream.store.verify import verify_store

    report.store = store
    # Metadata, completion and chunk presence of every node (no chunk decoding: the report runs
    # after every batch); a damaged store is marked, never shown as data.
    report.damage = [issue.text() for issue in verify_store(store.path, deep=False).issues]
    attrs = store.attrs
    report.info = dict(attrs.get("slide", {}))
    report.stages = dict(attrs.get("stages", {}))
    version = attrs.get("slidestream", {}).get("version")
    report.store_version = None if version is None else str(version)
    if store.has("tissue"):
        report.tissue = {k: v for k, v in store.node_attrs("tissue").items() if k != "geojson"}
    if store.has("tiles"):
        report.tiles = store.node_attrs("tiles")
    for group, target in (("selections", report.selections), ("features", report.features),
                          ("slide_embeddings", report.embeddings), ("tile_scores", report.tile_scores)):
        for name in store.list_nodes(group):
            target[name] = store.node_attrs(f"{group}/{name}")
    for name in report.embeddings:
        meta = json.loads((store.path / "slide_embeddings" / name / "zarr.json").read_text())
        report.embeddings[name]["shape"] = meta.get("shape")
    data = {key: getattr(report, key) for key in _CACHED_FIELDS}
    report.path = report.path or str(report.info.get("path", ""))
    return data


def _fill_from_cache(report: SlideReport, path: Path, data: dict[str, Any]) -> None:
    report.store = SlideStore(path)
    for key in _CACHED_FIELDS:
        setattr(report, key, data[key])
    report.path = report.path or str(report.info.get("path", ""))


def store_signature(path: Path) -> str:
    """A digest of every entry under a store: relative path, size, mtime and inode (stat only, no reads).

    Every way a store changes (a node written or removed by its atomic rename, attributes
    rewritten, a chunk added, deleted, truncated or replaced, a repair) changes a file's or a
    folder's stat, so an unchanged signature means the store reads as it did when it was cached.
    """
    rows: list[str] = []
    skip = len(os.fspath(path)) + 1
    stack = [os.fspath(path)]
    while stack:
        folder = stack.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                st = entry.stat(follow_symlinks=False)
                rows.append(f"{entry.path[skip:]}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ino}")
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
    root = path.stat()
    rows.append(f"\0{root.st_mtime_ns}\0{root.st_ino}")
    return hashlib.sha256("\n".join(sorted(rows)).encode("utf-8", "surrogateescape")).hexdigest()


def _read_slide_cache(out: Path) -> dict[str, Any]:
    try:
        data = json.loads((out / REPORT_DIR / SLIDE_CACHE).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != SLIDE_CACHE_VERSION:
        return {}
    slides = data.get("slides")
    return slides if isinstance(slides, dict) else {}


def _warnings(report: SlideReport) -> list[str]:
    """What a person should notice about this slide, most serious first."""
    out: list[str] = [f"damaged store: {d}; run slidestream verify {report.store.path.parent if report.store else ''} "
                      "--repair to recompute it" for d in report.damage]
    by_reason: dict[tuple[str, str], list[str]] = {}
    for r in report.failures:  # one line per distinct reason, naming every stage it stopped
        by_reason.setdefault((r.reason, r.error_type), []).append(r.stage)
    for (reason, error_type), stages in by_reason.items():
        out.append(f"{', '.join(stages)} failed: {reason}" + (f" ({error_type})" if error_type else ""))
    if any(r.error_type == "MissingMppError" and "mpp column" not in r.reason for r in report.failures):
        # (older manifests: the error message itself did not say how to give an mpp yet)
        out.append("the file has no microns-per-pixel: give this slide an mpp column value in a slide list "
                   "(path,mpp), or --default-mpp (default_mpp in a run config), if you know the scan resolution")
    if report.failures and report.store is not None:
        out.append("the pictures and numbers below are what the store held from earlier, successful stages")
    if report.store is not None and report.info:
        source = str(report.info.get("mpp_source") or "")
        mpp = report.info.get("mpp_x")
        if mpp is None:
            out.append("no mpp: physical sizes are unknown")
        elif source.startswith("default"):
            out.append(f"mpp {mpp:g} µm/px was assumed: the file has none (value from --default-mpp, default_mpp "
                       "or the slide list); tissue areas and tile sizes are only as right as this value")
        elif source == "override":
            out.append(f"mpp {mpp:g} µm/px was imposed (override): the file's own value, if any, was ignored")
    if report.tissue is not None:
        summary = report.tissue.get("summary", {})
        if int(summary.get("tissue_pieces", 0) or 0) == 0:
            dropped = int(summary.get("small_pieces_dropped", 0) or 0)
            minimum = report.tissue.get("params", {}).get("min_object_um2")
            why = (f": {dropped} stained piece(s) were smaller than the {minimum:,.0f} µm² minimum; check the "
                   "slide's mpp, or lower min_object_um2 for biopsies this small") if dropped and minimum else ""
            out.append(f"no tissue found{why}: nothing to tile")
        elif report.tiles is not None and int(report.tiles.get("n_tiles", 0)) == 0:
            out.append(f"no tiles: no tile reached the minimum tissue fraction ({report.tiles.get('min_tissue')})")
    elif report.store is not None and not report.failures:
        out.append("no tissue detection in the store")
    for name, attrs in report.features.items():
        if attrs.get("random_init"):
            out.append(f"features/{name} come from randomly initialised weights (benchmarks and tests only)")
    if report.store is None and not report.failures and not report.warnings:  # (not when the store is unreadable)
        out.append("no store: nothing was written for this slide")
    if report.store is not None and not report.records:
        out.append("not in manifest.csv: this store was made outside a batch command (no timings)")
    return out


def _stage_config(slides: list[SlideReport]) -> list[StageConfig]:
    """Group each stage's parameters across slides (per-slide values such as slide mpp left out)."""
    by_stage: dict[str, list[tuple[dict[str, Any], str]]] = defaultdict(list)
    for s in slides:
        if s.store is None:
            continue
        for stage, record in s.stages.items():
            if stage.startswith("features/") and stage.split("/", 1)[1] in s.features:
                params = _feature_params(s.features[stage.split("/", 1)[1]])
            elif stage.startswith(("tile_scores/", "slide_embeddings/")):
                continue  # their attrs are free-form; shown per slide
            else:
                params = {k: v for k, v in (record.get("params") or {}).items() if k not in PER_SLIDE_PARAMS}
            by_stage[stage].append((params, s.slide_id))
    config = []
    for stage in sorted(by_stage, key=stage_order):
        variants: list[tuple[dict[str, Any], list[str]]] = []
        for params, sid in by_stage[stage]:
            for known, ids in variants:
                if known == params:
                    ids.append(sid)
                    break
            else:
                variants.append((params, [sid]))
        config.append(StageConfig(stage, variants))
    return config


def _feature_params(attrs: dict[str, Any]) -> dict[str, Any]:
    keys = ("encoder", "weights_sha256", "random_init", "precision", "dtype", "mpp", "tile_size", "selection")
    params = {k: attrs.get(k) for k in keys if k in attrs}
    prov = attrs.get("encoder_provenance") or {}
    for k in ("family", "pooling", "timm_version", "torch_version"):
        if prov.get(k) is not None:
            params[k] = prov[k]
    return params


def collect_run(out: str | Path, *, cache: dict[str, Any] | None = None) -> RunReport:
    """Read the manifest and every store of ``out`` into a :class:`RunReport` (no pictures yet).

    ``cache`` (slide id → ``{"signature", "data"}``, from the last report) skips reading stores
    whose :func:`store_signature` has not changed; the manifest is always read in full. The
    cache entries of this run are left in ``RunReport.slide_cache`` for the next report.
    """
    out = Path(out)
    cache = cache or {}
    problems: list[str] = []
    records, paths = _read_records(out, problems)
    stores: dict[str, Path] = {p.name[: -len(STORE_SUFFIX)]: p for p in sorted(out.glob(f"*{STORE_SUFFIX}"))
                               if (p / "zarr.json").exists()}
    slides = []
    fresh: dict[str, Any] = {}
    for sid in sorted(set(records) | set(stores), key=str.lower):
        report = SlideReport(sid, path=paths.get(sid, ""), records=records.get(sid, []))
        if sid in stores:
            try:
                signature = store_signature(stores[sid])   # before reading: a change while reading shows next time
                known = cache.get(sid)
                if (isinstance(known, dict) and known.get("signature") == signature
                        and isinstance(known.get("data"), dict) and set(_CACHED_FIELDS) <= known["data"].keys()):
                    _fill_from_cache(report, stores[sid], known["data"])
                    fresh[sid] = known
                else:
                    fresh[sid] = {"signature": signature, "data": _fill_from_store(report, SlideStore.open(stores[sid]))}
            except Exception as exc:  # one damaged store must not hide the others
                report.store = None
                fresh.pop(sid, None)
                report.warnings.append(f"the store {stores[sid].name} could not be read: {type(exc).__name__}: {exc}")
        report.warnings.extend(_warnings(report))
        slides.append(report)
    run_config = out / "run-config.yaml"  # written by slidestream run (pipeline/run.py)
    text = run_config.read_text(encoding="utf-8", errors="replace") if run_config.is_file() else ""
    return RunReport(out=out, slides=slides, config=_stage_config(slides), problems=problems, run_config=text,
                     slide_cache=fresh)


# ---------------------------------------------------------------------------------- writing
def write_report(out: str | Path, *, incremental: bool = True) -> Path:
    """Write ``OUT/report/index.html`` (and its pictures) for the run folder ``out``; return its path.

    Incremental by default: stores unchanged since the last report (same :func:`store_signature`)
    are taken from ``OUT/report/.slides.json`` instead of being read and checked again, so the
    refresh after every batch costs a stat of each store plus the work for the slides that
    changed. ``incremental=False`` reads every store. Raises ``FileNotFoundError`` when ``out``
    holds neither a manifest nor a slide store.
    """
    from slidestream.store.lock import hold

    out = Path(out)
    # Shards finishing together would otherwise delete each other's freshly drawn pictures.
    with hold(out, "cohort/report", wait_s=300.0, stale_after_s=300.0):
        return _write_report(out, incremental=incremental)


def _write_report(out: Path, *, incremental: bool = True) -> Path:
    from slidestream.viz.report_html import render
    from slidestream.viz.report_images import ReportImages

    run = collect_run(out, cache=_read_slide_cache(out) if incremental else None)
    if not run.slides and not run.problems:
        raise FileNotFoundError(f"{out}: no manifest.csv and no <slide_id>.zarr stores: nothing to report")
    report_dir = out / REPORT_DIR
    images = ReportImages(report_dir, out, [s.slide_id for s in run.slides])
    for slide in run.slides:
        try:
            slide.figures = images.figures_for(slide)
        except Exception as exc:  # a picture that cannot be drawn is a note, not a lost report
            slide.warnings.append(f"pictures could not be drawn: {type(exc).__name__}: {exc}")
    images.finish()
    page = render(run)
    path = report_dir / "index.html"
    atomic_write_text(path, page)
    atomic_write_text(report_dir / SLIDE_CACHE, json.dumps({"version": SLIDE_CACHE_VERSION, "slides": run.slide_cache}))
    return path


def open_report(path: Path) -> bool:
    """Open the report in the default browser; False when there is none (e.g. a server)."""
    try:
        return webbrowser.open(Path(path).resolve().as_uri())
    except webbrowser.Error:
        return False
