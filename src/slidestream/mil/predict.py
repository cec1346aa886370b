"""Apply a trained run — one fold's model or the ensemble of all folds — to bags.

The ensemble averages what the task predicts (class probabilities, Cox risks, discrete survival
curves) rather than logits, and averages the per-tile scores of the members, so a heatmap shows
the ensemble's evidence. Bags are read whole and one at a time, as in cross-validation, so a
fold's model reproduces its out-of-fold predictions exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from slidestream.atomic import atomic_path
from slidestream.errors import ConfigError
from slidestream.mil.bags import BagSource
from slidestream.mil.checkpoint import LoadedModel, load_checkpoint
from slidestream.mil.train import infer_bag


@dataclass
class MILPredictions:
    """``table``: one row per slide; ``scores``/``coords``: per-tile arrays in bag order."""

    table: pd.DataFrame
    scores: dict[str, np.ndarray] = field(default_factory=dict)
    coords: dict[str, np.ndarray] = field(default_factory=dict)

    def write(self, out: str | Path, scores_dir: str | Path | None = None) -> Path:
        """The table as CSV at ``out``; with ``scores_dir`` also ``<slide_id>.npz`` per slide
        (``scores`` and level-0 ``coords`` of its tiles). Every file is written atomically."""
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(out) as tmp:
            self.table.to_csv(tmp, index=False)
        if scores_dir is not None:
            scores_dir = Path(scores_dir)
            scores_dir.mkdir(parents=True, exist_ok=True)
            for slide_id, scores in self.scores.items():
                with atomic_path(scores_dir / f"{slide_id}.npz") as tmp:
                    np.savez(tmp, scores=scores, coords=self.coords[slide_id])
        return out


def load_run(run: str | Path, folds: Sequence[int] | None = None) -> list[LoadedModel]:
    """The fold models of a run folder (all, or ``folds``), or the single ``model.pt`` given."""
    run = Path(run)
    if run.is_file():
        return [load_checkpoint(run)]
    paths = sorted(run.glob("fold_*/model.pt"), key=lambda p: int(p.parent.name.split("_")[1]))
    if not paths:
        raise ConfigError(run, "no fold_<k>/model.pt in this run folder")
    if folds is not None:
        by_fold = {int(p.parent.name.split("_")[1]): p for p in paths}
        missing = sorted(set(folds) - set(by_fold))
        if missing:
            raise ConfigError(run, f"fold(s) {missing} not in this run; have {sorted(by_fold)}")
        paths = [by_fold[k] for k in folds]
    models = [load_checkpoint(p) for p in paths]
    specs = {str(m.task.spec()) for m in models if m.task.kind == "classification"}
    if len(specs) > 1:
        raise ConfigError(run, "the fold models disagree on the classes")
    return models


def predict(
    run_dir: str | Path,
    bag_source: BagSource,
    slide_ids: Sequence[str] | None = None,
    folds: Sequence[int] | None = None,
) -> MILPredictions:
    """Predict every slide of ``bag_source`` (or ``slide_ids``) with the run's fold ensemble.

    ``folds=[k]`` applies fold ``k``'s model alone. The table has ``slide_id``, ``n_tiles``,
    ``n_models`` and the task's columns (``prob_<class>`` + ``pred``, or ``risk`` [+ ``surv_<k>``]).
    """
    models = load_run(run_dir, folds)
    _check_compatible(models, bag_source, run_dir)
    ids = list(bag_source.slide_ids if slide_ids is None else slide_ids)
    if not ids:
        raise ConfigError(run_dir, "no slides to predict")
    for member in models:
        member.model.eval()
    logits: list[list[np.ndarray]] = [[] for _ in models]
    scores, coords = {}, {}
    for slide_id in ids:  # each bag is read once, whatever the ensemble size
        bag = bag_source.load(slide_id)
        coords[slide_id] = bag[1]
        tile_scores = []
        for i, member in enumerate(models):
            logit, tiles = infer_bag(member.model, bag)
            logits[i].append(logit)
            tile_scores.append(tiles)
        scores[slide_id] = np.mean(tile_scores, axis=0)
    outputs = [m.task.outputs(np.stack(rows)) for m, rows in zip(models, logits, strict=True)]
    if len({tuple(getattr(m.task, "inner_edges", ())) for m in models}) > 1:
        # each fold fitted its own time bins: survival curves do not line up across folds, risks do
        table = pd.DataFrame({"risk": sum(o["risk"].to_numpy() for o in outputs) / len(outputs)})
    else:
        kept = [o.drop(columns=list(m.task.derived)) for m, o in zip(models, outputs, strict=True)]
        mean = sum(o.to_numpy() for o in kept) / len(kept)
        table = models[0].task.add_prediction(pd.DataFrame(mean, columns=kept[0].columns))
    table.insert(0, "n_models", len(models))
    table.insert(0, "n_tiles", [len(coords[s]) for s in ids])
    table.insert(0, "slide_id", ids)
    return MILPredictions(table, scores, coords)


def _check_compatible(models: list[LoadedModel], source: BagSource, where) -> None:
    encoder = getattr(source, "encoder", None)
    trained_on = models[0].encoder
    if encoder is not None and trained_on is not None and encoder != trained_on:
        raise ConfigError(
            where, f"the models were trained on {trained_on!r} features, not {encoder!r}"
        )
    ids = list(source.slide_ids)
    if ids:
        dim = source.load(ids[0])[0].shape[1]
        if dim != models[0].in_dim:
            raise ConfigError(
                where, f"the models expect {models[0].in_dim}-d features; the bags have {dim}-d"
            )
