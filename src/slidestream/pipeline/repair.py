"""``slidestream verify --repair``: recompute what a damaged store lost, through the ordinary stages.

The store records how each node was made (the root's ``stages`` record keeps the parameters even
when a node's own metadata is damaged) and which slide file it came from. Repair removes every
damaged node and what depends on it, then reruns tissue, tiles, selections and features with the
recorded parameters, exactly as ``tile`` / ``extract`` would, so the result equals a clean run.
What cannot be recomputed here (the slide file is gone, encoder weights are missing, tile scores
and slide embeddings, which come from ``predict`` / ``slide-encode``) is said, and the store stays
counted as damaged.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slidestream.errors import SlideStreamError
from slidestream.pipeline.batch import Skip
from slidestream.pipeline.stages import (
    SlideSource,
    drop_if_damaged,
    recorded_params,
    run_extract,
    run_tiles,
    run_tissue,
)
from slidestream.store import SlideStore
from slidestream.store.verify import StoreCheck, node_dirs, verify_store
from slidestream.tiling.params import SelectionParams, TilingParams
from slidestream.tissue import TissueParams

RECOMPUTED_ELSEWHERE = {"tile_scores": "slidestream predict / heatmap", "slide_embeddings": "slidestream slide-encode"}


@dataclass
class RepairResult:
    path: Path
    recomputed: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # what could not be repaired, one line each
    after: StoreCheck | None = None

    @property
    def ok(self) -> bool:
        return not self.problems and self.after is not None and not self.after.damaged


def repair_store(check: StoreCheck, *, device: str = "cpu") -> RepairResult:
    """Recompute the damaged nodes of one store (``check`` from :func:`verify_store`)."""
    result = RepairResult(check.path)
    damaged = {i.node for i in check.issues}
    if "store" in damaged:
        result.problems.append("the store's own metadata is damaged: delete the store and run the stages again")
        return result
    store = SlideStore.open(check.path)
    slide_path = Path(str(store.slide_info.get("path") or ""))
    if not slide_path.is_file():
        result.problems.append(f"cannot recompute: the slide file {slide_path} recorded in the store is not there")
        return result
    plan = _plan(store)
    for rel in node_dirs(store):  # remove what is damaged and everything computed from it
        drop_if_damaged(store, rel, deep=True)
    source = _source(store, slide_path)
    out = store.path.parent
    try:
        _rerun(store, source, out, plan, result, device=device)
    except SlideStreamError as exc:
        result.problems.append(exc.reason)
    lost = [rel for rel in plan["elsewhere"] if not (store.path / rel).exists()]
    for rel in lost:
        store.delete(rel)  # forgets its stage record too: the store no longer claims it
        result.problems.append(f"{rel} was removed (damaged, or computed from damaged data); "
                               f"recompute it with {RECOMPUTED_ELSEWHERE[rel.split('/')[0]]}")
    result.after = verify_store(store.path)
    return result


def _plan(store: SlideStore) -> dict[str, Any]:
    """What the store held and how it was made, read before anything is removed."""
    stages = dict(store.attrs.get("stages", {}))
    names = set(stages) | set(node_dirs(store))
    return {
        "tissue": recorded_params(store, "tissue"),
        "tiles": recorded_params(store, "tiles"),
        "selections": {rel: recorded_params(store, rel) for rel in names if rel.startswith("selections/")},
        "features": {rel: _feature_recipe(store, rel, stages) for rel in names if rel.startswith("features/")},
        "elsewhere": sorted(rel for rel in names if rel.split("/")[0] in RECOMPUTED_ELSEWHERE),
    }


def _feature_recipe(store: SlideStore, rel: str, stages: dict[str, Any]) -> dict[str, Any]:
    recipe = dict((stages.get(rel) or {}).get("params") or {})
    with contextlib.suppress(SlideStreamError):
        attrs = store.node_attrs(rel)
        recipe = {**recipe, **{k: attrs.get(k) for k in ("selection", "dtype", "precision", "random_init")},
                  "weights_path": (attrs.get("encoder_provenance") or {}).get("weights_path")}
    recipe.setdefault("encoder", rel.split("/", 1)[1])
    return recipe


def _source(store: SlideStore, slide_path: Path) -> SlideSource:
    info = store.slide_info
    assumed = str(info.get("mpp_source") or "").startswith(("default", "override"))
    return SlideSource(slide_path, default_mpp=info.get("mpp_x") if assumed else None)


def _rerun(store: SlideStore, source: SlideSource, out: Path, plan: dict[str, Any], result: RepairResult, *,
           device: str) -> None:
    from slidestream.encoders import load_encoder  # torch only when features need recomputing
    from slidestream.extraction import ExtractOptions

    tissue = TissueParams(**plan["tissue"]) if plan["tissue"] else None
    if plan["tiles"] and not store.has("tiles"):
        with contextlib.suppress(Skip):
            run_tiles(source, out, TilingParams(**plan["tiles"]), tissue, write_images=True)
        result.recomputed.append("tiles")
    elif not store.has("tissue") and plan["tissue"]:
        with contextlib.suppress(Skip):
            run_tissue(source, out, tissue or TissueParams())
        result.recomputed.append("tissue")
    for rel, params in sorted(plan["selections"].items()):
        if not store.has(rel) and params and store.has("tiles"):
            with contextlib.suppress(Skip):
                run_tiles(source, out, TilingParams(**plan["tiles"]), tissue, selection=SelectionParams(**params))
            result.recomputed.append(rel)
    for rel, recipe in sorted(plan["features"].items()):
        if store.has(rel):
            continue
        encoder = load_encoder(recipe["encoder"], recipe.get("weights_path"), random_init=bool(recipe.get("random_init")),
                               device=device, precision=recipe.get("precision") or "fp32")
        options = ExtractOptions(selection=recipe.get("selection"), dtype=recipe.get("dtype") or "float32", workers=2)
        with contextlib.suppress(Skip):
            run_extract(source, out, encoder, options)
        result.recomputed.append(rel)
