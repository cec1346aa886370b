"""Linear probes on slide embeddings: the standard way to compare slide encoders.

Logistic regression for classification (AUROC, balanced accuracy) and a ridge Cox model for survival
(C-index), cross-validated with *patient-level* folds: slides of one patient never sit on both
sides of a split (``StratifiedGroupKFold``), otherwise the probe scores the patient, not the task.
Pass ``folds`` (fold index per slide) to reuse the splits of the MIL experiments instead.
Features are standardised inside each training fold only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score, roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from slidestream.atomic import atomic_path
from slidestream.slide_encoders.cox import RidgeCox, concordance_index

__all__ = ["ProbeResult", "cox_probe", "linear_probe", "patient_folds"]


@dataclass
class ProbeResult:
    """Per-fold metrics (one row per fold) and their mean and standard deviation."""

    per_fold: pd.DataFrame

    def write(self, path: str | Path) -> Path:
        """The per-fold metrics as CSV (atomic)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            self.per_fold.to_csv(tmp, index=False)
        return path

    @property
    def summary(self) -> dict[str, tuple[float, float]]:
        """``{metric: (mean, std)}`` over folds (std with ``ddof=0``, NaN folds skipped)."""
        cols = [c for c in self.per_fold.columns if c != "fold"]
        return {
            c: (float(self.per_fold[c].mean()), float(self.per_fold[c].std(ddof=0))) for c in cols
        }

    def __str__(self) -> str:
        return ", ".join(f"{k} {m:.3f} ± {s:.3f}" for k, (m, s) in self.summary.items())


def patient_folds(
    strata: Sequence, groups: Sequence, n_splits: int = 5, seed: int = 0
) -> np.ndarray:
    """Fold index per slide: stratified by ``strata``, never splitting a ``groups`` (patient)."""
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    folds = np.full(len(strata), -1, dtype=np.int64)
    for fold, (_, test) in enumerate(splitter.split(np.zeros(len(strata)), strata, groups)):
        folds[test] = fold
    return folds


def _auroc(y: np.ndarray, proba: np.ndarray, classes: np.ndarray) -> float:
    if len(np.unique(y)) < 2:
        return float("nan")  # AUROC is undefined when a test fold holds one class
    if len(classes) == 2:
        return float(roc_auc_score(y, proba[:, 1]))
    return float(roc_auc_score(y, proba, multi_class="ovr", average="macro", labels=classes))


def linear_probe(
    x: np.ndarray,
    y: Sequence,
    groups: Sequence,
    *,
    n_splits: int = 5,
    seed: int = 0,
    c: float = 1.0,
    folds: np.ndarray | None = None,
) -> ProbeResult:
    """Cross-validated logistic regression on embeddings ``x (n_slides, D)``; labels ``y``."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y)
    if folds is None:
        folds = patient_folds(y, groups, n_splits, seed)
    classes = np.unique(y)
    rows = []
    for fold in np.unique(folds):
        train, test = folds != fold, folds == fold
        model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))
        model.fit(x[train], y[train])
        proba = np.zeros((test.sum(), len(classes)))
        proba[:, np.searchsorted(classes, model.classes_)] = model.predict_proba(x[test])
        rows.append(
            {
                "fold": int(fold),
                "auroc": _auroc(y[test], proba, classes),
                "balanced_accuracy": float(
                    balanced_accuracy_score(y[test], model.predict(x[test]))
                ),
            }
        )
    return ProbeResult(pd.DataFrame(rows))


def cox_probe(
    x: np.ndarray,
    time: Sequence[float],
    event: Sequence[bool],
    groups: Sequence,
    *,
    n_splits: int = 5,
    seed: int = 0,
    alpha: float = 1.0,
    folds: np.ndarray | None = None,
) -> ProbeResult:
    """Cross-validated ridge Cox on embeddings; folds stratified by the event indicator."""
    x = np.asarray(x, np.float64)
    time = np.asarray(time, np.float64)
    event = np.asarray(event).astype(bool)
    if folds is None:
        folds = patient_folds(event.astype(int), groups, n_splits, seed)
    rows = []
    for fold in np.unique(folds):
        train, test = folds != fold, folds == fold
        model = RidgeCox(alpha=alpha).fit(x[train], time[train], event[train])
        risk = model.predict_risk(x[test])
        rows.append(
            {"fold": int(fold), "c_index": concordance_index(time[test], event[test], risk)}
        )
    return ProbeResult(pd.DataFrame(rows))
