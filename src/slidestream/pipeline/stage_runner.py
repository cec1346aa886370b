"""One per-slide stage for one slide: the unit every way of running executes.

The serial run (:mod:`slidestream.pipeline.run`), the dask tasks
(:mod:`slidestream.pipeline.distributed`) and each Snakemake job all call :func:`run_stage`, so a
store is the same whichever of them made it. It lives apart from the orchestration that decides
where it runs, so that the dask code and the serial run both import it and never each other.

After every stage the slide's *completion markers* ``OUT/.done/<slide_id>/<stage>.json`` are
brought in line with the store: a marker exists exactly when the store holds that stage's nodes
made with this config's parameters (what the Snakefile declares as its outputs).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slidestream.atomic import atomic_write_text
from slidestream.errors import ConfigError, StoreError
from slidestream.pipeline.batch import Skip
from slidestream.pipeline.config import PER_SLIDE_STAGES, RunConfig
from slidestream.pipeline.stages import (
    SlideSource,
    drop_if_damaged,
    nothing_to_embed,
    run_extract,
    run_tiles,
    run_tissue,
    slide_lock,
    with_recomputed,
)
from slidestream.store import SlideStore, store_path
from slidestream.tiling.params import TilingParams
from slidestream.tissue import TissueParams

MARKER_DIR = ".done"


# ---------------------------------------------------------------------------------- markers
def marker_name(cfg: RunConfig, stage: str) -> str:
    """File name of a per-slide stage's completion marker (the encoder and method are part of it)."""
    if stage == "features":
        return f"features-{cfg.encoder}.json"
    if stage == "slide_embedding":
        return f"embedding-{cfg.slide_embedding.method if cfg.slide_embedding else 'none'}.json"
    return f"{stage}.json"


def marker_path(cfg: RunConfig, slide_id: str, stage: str) -> Path:
    """``OUT/.done/<slide_id>/<marker>``; ``slide_id`` may be a Snakemake wildcard like ``{slide}``."""
    return cfg.out / MARKER_DIR / slide_id / marker_name(cfg, stage)


def _without_mpp(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if k != "slide_mpp"}


def done_nodes(cfg: RunConfig, stage: str, store: SlideStore) -> dict[str, str] | None:
    """``{node: completed}`` when ``store`` holds ``stage`` made as ``cfg`` asks, else None."""
    if stage == "tissue":
        nodes = {"tissue": cfg.tissue.identity()}
    elif stage == "tiles":
        nodes = {"tiles": cfg.tiling_params().model_dump()}
        if cfg.selection is not None:
            nodes[f"selections/{cfg.selection.name}"] = cfg.selection.model_dump()
    elif stage == "features" and cfg.features is not None:
        nodes = {f"features/{cfg.encoder}": None}
    elif stage == "slide_embedding" and cfg.slide_embedding is not None:
        nodes = {f"slide_embeddings/{cfg.slide_embedding.method}": None}
    else:
        return None
    done: dict[str, str] = {}
    for node, params in nodes.items():
        if not store.has(node) or store.node_problem(node) is not None:  # damaged: not done (cheap check)
            return None
        attrs = store.node_attrs(node)
        if params is not None and not _params_match(node, _without_mpp(attrs.get("params", {})), params):
            return None
        if node.startswith("features/") and not _features_match(cfg, attrs):
            return None
        if node.startswith("slide_embeddings/") and not _embedding_current(cfg, store, attrs):
            return None
        done[node] = str(attrs.get("completed", ""))
    return done


def _params_match(node: str, stored: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """Stored stage parameters equal ``wanted``, tissue and tiles read through their models: a store
    written before a parameter existed has its default (as the stages themselves compare)."""
    try:
        if node == "tissue":
            return TissueParams(**stored).identity() == wanted
        if node == "tiles":
            return TilingParams(**stored).model_dump() == wanted
    except ValueError:
        return False
    return stored == wanted


def _features_match(cfg: RunConfig, attrs: dict[str, Any]) -> bool:
    feats = cfg.features
    tiling = cfg.tiling_params()
    return feats is not None and attrs.get("selection") == feats.selection and attrs.get("dtype") == feats.dtype \
        and attrs.get("precision") == feats.precision and attrs.get("tile_size") == tiling.tile_size


def _embedding_current(cfg: RunConfig, store: SlideStore, attrs: dict[str, Any]) -> bool:
    rel = f"features/{cfg.encoder}"
    return store.has(rel) and attrs.get("features_completed") == store.node_attrs(rel).get("completed") \
        and attrs.get("settings", {}).get("method") == (cfg.slide_embedding.method if cfg.slide_embedding else None)


def sync_markers(cfg: RunConfig, slide_id: str) -> None:
    """Make the slide's markers say exactly what its store holds (write only what changed)."""
    path = store_path(cfg.out, slide_id)
    try:
        store = SlideStore.open(path) if (path / "zarr.json").exists() else None
    except StoreError:   # unreadable: nothing in it counts as done (the stage reports the error)
        store = None
    for stage in PER_SLIDE_STAGES:
        if stage not in cfg.stages():
            continue
        marker = marker_path(cfg, slide_id, stage)
        nodes = done_nodes(cfg, stage, store) if store is not None else None
        if nodes is None:
            with contextlib.suppress(FileNotFoundError):
                marker.unlink()
            continue
        text = json.dumps({"slide_id": slide_id, "stage": stage, "nodes": nodes}, sort_keys=True, indent=1) + "\n"
        if marker.exists() and marker.read_text() == text:
            continue
        try:
            marker.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(marker, text)
        except OSError as exc:   # the stage is done but cannot be marked so: a rerun checks the store again
            raise StoreError(marker, f"cannot write the completion marker {marker} ({exc.strerror or exc})") from None


# ---------------------------------------------------------------------------------- per-slide stages
@dataclass
class StageContext:
    """What the per-slide stages share within one run: loaded once, reused for every slide."""

    encoder: Any = None
    prototypes: Any = None
    prototypes_error: Exception | None = None


def run_stage(cfg: RunConfig, stage: str, source: SlideSource, ctx: StageContext | None = None, *,
              overwrite: bool = False) -> dict[str, Any]:
    """One per-slide stage for one slide, under the slide's lock; markers synced afterwards."""
    ctx = ctx or StageContext()
    out = cfg.out
    with slide_lock(out, source.slide_id, stale_after_s=cfg.lock.stale_after_s):
        try:
            if stage == "tissue":
                return run_tissue(source, out, cfg.tissue, overwrite=overwrite, write_images=cfg.write_images)
            if stage == "tiles":
                return run_tiles(source, out, cfg.tiling_params(), cfg.tissue, selection=cfg.selection,
                                 overwrite=overwrite, write_images=cfg.write_images)
            if stage == "features":
                assert cfg.features is not None and ctx.encoder is not None
                return run_extract(source, out, ctx.encoder, cfg.features.options(), tiling=cfg.tiling_params(),
                                   tissue=cfg.tissue, overwrite=overwrite, write_images=cfg.write_images)
            if stage == "slide_embedding":
                return embed_slide(cfg, source, ctx, overwrite=overwrite)
            raise ConfigError(None, f"stage {stage!r} is not a per-slide stage ({', '.join(PER_SLIDE_STAGES)})")
        finally:
            sync_markers(cfg, source.slide_id)


def embed_slide(cfg: RunConfig, source: SlideSource, ctx: StageContext, *, overwrite: bool = False) -> dict[str, Any]:
    """``slide_embeddings/<method>`` of one store, recomputed only when its features changed."""
    from slidestream.slide_encoders import cohort

    assert cfg.slide_embedding is not None and cfg.encoder is not None
    emb, encoder = cfg.slide_embedding, cfg.encoder
    path = store_path(cfg.out, source.slide_id)
    if not (path / "zarr.json").exists():
        raise StoreError(path, "no store yet (run the tissue, tiles and features stages first)")
    store = SlideStore.open(path)
    if not store.has(f"features/{encoder}"):
        raise StoreError(path, f"no features/{encoder} yet (run the features stage first)")
    feature_attrs = store.node_attrs(f"features/{encoder}")
    if int(feature_attrs.get("n_rows", 0)) == 0:  # as extract: an empty slide is a note, not a failure
        raise Skip(nothing_to_embed(store, feature_attrs.get("selection")))
    if emb.method == "panther":
        if ctx.prototypes is None:
            if cfg.shard is not None and not cfg.prototypes_path().exists():
                raise Skip("waiting for prototypes: run the cohort stages once without shard")
            raise ctx.prototypes_error or ConfigError(cfg.prototypes_path(), "prototypes not loaded")
        p = emb.panther
        slide_fn = cohort.panther_slide_fn(ctx.prototypes, em_iter=p.em_iter, tau=p.tau, eps=p.eps, out_type=p.out_type)
        digest = hashlib.sha256(ctx.prototypes.centers.tobytes()).hexdigest()[:16]
        settings = {"method": "panther", "em_iter": p.em_iter, "tau": p.tau, "eps": p.eps, "out_type": p.out_type,
                    "prototypes_sha256_16": digest}
    else:
        slide_fn = cohort.mean_slide_fn(emb.mean_mode)
        settings = {"method": "mean", "mode": emb.mean_mode}
    provenance = {"features_completed": store.node_attrs(f"features/{encoder}").get("completed"), "settings": settings}
    rel = f"slide_embeddings/{emb.method}"
    recomputed = drop_if_damaged(store, rel, deep=True)  # one small vector: check its checksum
    if store.has(rel) and not overwrite:
        attrs = store.node_attrs(rel)
        if attrs.get("features_completed") == provenance["features_completed"] and attrs.get("settings") == settings:
            raise Skip("slide embedding up to date", dim=attrs.get("dim"))
    table = cohort.encode_stores([store.path], emb.method, [cohort.EncoderSpec(encoder, encoder)], slide_fn,
                                 provenance=provenance)
    row = table.iloc[0]
    if row["status"] != "ok":
        raise StoreError(store.path, str(row["error"]))
    return with_recomputed({"dim": int(row["dim"]), "embedded_tiles": int(row["n_tiles"])}, recomputed)
