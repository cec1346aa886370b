"""K-fold cross-validation by patient, producing a self-contained run folder::

    RUN/config.json               the TrainConfig
    RUN/fold_<k>/model.pt         weights + model name, hyper-parameters, in_dim, classes, encoder
    RUN/fold_<k>/history.csv      per-epoch training/validation loss and metric
    RUN/oof_predictions.csv       every slide once, predicted by the fold that did not train on it
    RUN/metrics.json              per-fold metrics, mean ± std, pooled out-of-fold metrics
    RUN/summary.md                the same as a readable table

Inside each training part a stratified, patient-grouped validation split drives early stopping;
the test fold is touched exactly once, after training.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from slidestream.atomic import atomic_path, atomic_write_text
from slidestream.errors import StoreError
from slidestream.mil.bags import Bag, BagSource
from slidestream.mil.checkpoint import save_checkpoint
from slidestream.mil.config import TrainConfig
from slidestream.mil.labels import LabelsTable, check_slides
from slidestream.mil.metrics import SUMMARY_KEYS, summarize
from slidestream.mil.models import get_model
from slidestream.mil.report import write_metrics, write_summary
from slidestream.mil.splits import patient_folds, validation_split
from slidestream.mil.tasks import build_task
from slidestream.mil.train import deterministic, fit, infer

log = logging.getLogger(__name__)


@dataclass
class CVResult:
    run_dir: Path
    oof: pd.DataFrame
    metrics: dict


class _SameDim:
    """Wraps a source and rejects a bag whose feature width differs from the first one's."""

    def __init__(self, source: BagSource, in_dim: int):
        self.source, self.in_dim = source, in_dim

    @property
    def slide_ids(self):
        return self.source.slide_ids

    def load(self, slide_id: str) -> Bag:
        features, coords = self.source.load(slide_id)
        if features.shape[1] != self.in_dim:
            raise StoreError(
                getattr(self.source, "path", lambda s: None)(slide_id),
                f"slide {slide_id!r} has {features.shape[1]}-d features, others {self.in_dim}-d "
                "(mixed encoders?)",
            )
        return features, coords


def fold_seeds(seed: int, fold: int) -> tuple[int, np.random.Generator]:
    """Independent torch seed and numpy generator for one fold, derived from the run seed."""
    seq = np.random.SeedSequence([seed, fold])
    torch_seed = int(seq.generate_state(1, dtype=np.uint64)[0] % (2**63))
    return torch_seed, np.random.default_rng(seq.spawn(1)[0])


def cross_validate(
    labels: LabelsTable, source: BagSource, config: TrainConfig, out_dir: str | Path
) -> CVResult:
    """Train ``config.folds`` models and write the run folder (see module docstring)."""
    if labels.task != config.task:
        raise ValueError(f"labels are for {labels.task}, config for {config.task}")
    check_slides(labels, source.slide_ids, config.stores or "the bag source")
    folds = patient_folds(labels, config.folds, config.seed)
    in_dim = int(source.load(labels.slide_ids[0])[0].shape[1])
    source = _SameDim(source, in_dim)
    get_model(config.model, in_dim, 2, **config.model_kwargs)  # fail fast on bad options
    run_dir = Path(out_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "config.json", config.model_dump_json(indent=2) + "\n")

    rows = labels.table.set_index("slide_id", drop=False)
    oof_parts, fold_metrics = [], []
    with deterministic(config.deterministic):
        for k in range(config.folds):
            part, metrics = _run_fold(k, folds, labels, rows, source, config, in_dim, run_dir)
            oof_parts.append(part)
            fold_metrics.append(metrics)
            log.info(
                "fold %d: %s (best epoch %d)",
                k,
                ", ".join(f"{m} {metrics[m]:.3f}" for m in _keys(config)),
                metrics["best_epoch"],
            )

    oof = pd.concat(oof_parts).set_index("slide_id").loc[labels.slide_ids].reset_index()
    with atomic_path(run_dir / "oof_predictions.csv") as tmp:
        oof.to_csv(tmp, index=False)
    task = build_task(config, labels, labels.slide_ids)
    outputs = oof[[c for c in oof.columns if c.startswith(("prob_", "risk", "surv_"))]]
    metrics = {
        "task": config.task if config.task == "classification" else "survival",
        "loss": config.survival_loss if config.task == "survival" else "cross_entropy",
        "model": config.model,
        "encoder": config.encoder,
        "classes": labels.classes,
        "seed": config.seed,
        "n_slides": len(labels.table),
        "n_patients": int(labels.table["patient_id"].nunique()),
        "folds": fold_metrics,
        "summary": summarize(fold_metrics, _keys(config)),
        "pooled": task.metrics(oof, outputs),
    }
    write_metrics(run_dir / "metrics.json", metrics)
    write_summary(run_dir / "summary.md", metrics)
    return CVResult(run_dir, oof, metrics)


def _run_fold(k, folds, labels, rows, source, config, in_dim, run_dir):
    ids = np.asarray(labels.slide_ids)
    test_ids = ids[folds == k].tolist()
    trainval = labels.subset(ids[folds != k])
    train_ids, val_ids = validation_split(trainval, config.val_fraction, config.seed + k)
    task = build_task(config, labels, train_ids)
    torch_seed, rng = fold_seeds(config.seed, k)
    torch.manual_seed(torch_seed)
    model = get_model(config.model, in_dim, task.n_outputs, **config.model_kwargs)
    result = fit(
        model,
        task,
        rows,
        train_ids,
        val_ids,
        source,
        config,
        rng,
        log=lambda msg: log.debug("fold %d  %s", k, msg),
    )
    logits, _ = infer(model, test_ids, source)
    outputs = task.outputs(logits)
    test_rows = rows.loc[test_ids].reset_index(drop=True)
    part = pd.concat([test_rows.assign(fold=k), outputs], axis=1)
    metrics = {
        "fold": k,
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.history),
        "n_train": len(train_ids),
        "n_val": len(val_ids),
        **task.metrics(test_rows, outputs),
    }
    fold_dir = run_dir / f"fold_{k}"
    save_checkpoint(
        fold_dir / "model.pt",
        model,
        config.model,
        task,
        in_dim,
        config.encoder,
        fold=k,
        test_slides=test_ids,
    )
    with atomic_path(fold_dir / "history.csv") as tmp:
        pd.DataFrame(result.history).to_csv(tmp, index=False)
    return part, metrics


def _keys(config: TrainConfig) -> tuple[str, ...]:
    return SUMMARY_KEYS["classification" if config.task == "classification" else "survival"]
