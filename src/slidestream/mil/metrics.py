"""Slide-level metrics and their fold summaries.

Every function returns plain Python numbers (JSON-ready). Undefined values (AUROC of a class
absent from the slides) are ``nan`` rather than exceptions, because ``predict`` can be run on
any set of slides; cross-validation prevents them by construction (see ``splits``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from sklearn.metrics import balanced_accuracy_score, confusion_matrix, f1_score, roc_auc_score


def auroc(y_true: np.ndarray, score: np.ndarray) -> float:
    """Binary AUROC, ``nan`` when only one class is present."""
    y_true = np.asarray(y_true).astype(bool)
    if y_true.all() or not y_true.any():
        return math.nan
    return float(roc_auc_score(y_true, score))


def classification_metrics(y_true: np.ndarray, probs: np.ndarray, classes: Sequence[str]) -> dict:
    """AUROC (macro over one-vs-rest and per class), balanced accuracy, macro F1, confusion.

    ``y_true`` holds class indices, ``probs`` is ``(n, C)``. For two classes the macro AUROC is
    the AUROC of the second class (the two one-vs-rest AUROCs are equal).
    """
    y_true = np.asarray(y_true, dtype=int)
    probs = np.asarray(probs, dtype=float)
    n_classes = len(classes)
    per_class = {str(c): auroc(y_true == i, probs[:, i]) for i, c in enumerate(classes)}
    values = [v for v in per_class.values() if not math.isnan(v)]
    macro = per_class[str(classes[1])] if n_classes == 2 else _mean_or_nan(values, n_classes)
    pred = probs.argmax(axis=1)
    labels = list(range(n_classes))
    return {
        "n": len(y_true),
        "auroc_macro": macro,
        "auroc_per_class": per_class,
        "balanced_accuracy": float(balanced_accuracy_score(y_true, pred)),
        "f1_macro": float(f1_score(y_true, pred, labels=labels, average="macro", zero_division=0)),
        "accuracy": float((pred == y_true).mean()),
        "confusion_matrix": confusion_matrix(y_true, pred, labels=labels).tolist(),
    }


def concordance_index(time: np.ndarray, event: np.ndarray, risk: np.ndarray) -> float:
    """Harrell's C-index: the share of comparable pairs the risk orders correctly.

    A pair ``(i, j)`` is comparable when ``i`` had an event and ``j`` was still at risk later
    (``t_j > t_i``, or ``t_j == t_i`` with ``j`` censored). It is concordant when
    ``risk_i > risk_j``; tied risks count one half. ``nan`` without comparable pairs.
    """
    time = np.asarray(time, dtype=float)
    event = np.asarray(event).astype(bool)
    risk = np.asarray(risk, dtype=float)
    later = time[None, :] > time[:, None]
    tied_censored = (time[None, :] == time[:, None]) & ~event[None, :]
    comparable = event[:, None] & (later | tied_censored)
    if not comparable.any():
        return math.nan
    diff = risk[:, None] - risk[None, :]
    score = (diff > 0) + 0.5 * (diff == 0)
    return float(score[comparable].sum() / comparable.sum())


def survival_metrics(time: np.ndarray, event: np.ndarray, risk: np.ndarray) -> dict:
    return {
        "n": len(time),
        "n_events": int(np.asarray(event).sum()),
        "c_index": concordance_index(time, event, risk),
    }


SUMMARY_KEYS = {
    "classification": ("auroc_macro", "balanced_accuracy", "f1_macro", "accuracy"),
    "survival": ("c_index",),
}


def summarize(fold_metrics: Sequence[dict], keys: Sequence[str]) -> dict[str, dict[str, float]]:
    """Mean and sample standard deviation (ddof=1) over folds of each scalar metric.

    Per-class AUROCs are summarised too, as ``auroc[<class>]``.
    """
    series: dict[str, list[float]] = {k: [m[k] for m in fold_metrics] for k in keys}
    if fold_metrics and "auroc_per_class" in fold_metrics[0]:
        for c in fold_metrics[0]["auroc_per_class"]:
            series[f"auroc[{c}]"] = [m["auroc_per_class"][c] for m in fold_metrics]
    out = {}
    for key, vals in series.items():
        arr = np.asarray(vals, dtype=float)
        arr = arr[~np.isnan(arr)]
        out[key] = {
            "mean": float(arr.mean()) if len(arr) else math.nan,
            "std": float(arr.std(ddof=1)) if len(arr) > 1 else math.nan,
        }
    return out


def _mean_or_nan(values: list[float], expected: int) -> float:
    return float(np.mean(values)) if len(values) == expected else math.nan
