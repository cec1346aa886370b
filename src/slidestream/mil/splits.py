"""Cross-validation splits by patient, stratified by label (or by event for survival).

Slides of one patient share morphology, scanner and staining, so a patient in both the training
and the test fold leaks information and inflates every metric; all splits here are grouped by
``patient_id`` (``StratifiedGroupKFold``) and seeded. Folds that cannot be evaluated (a class
or all events missing) are rejected with a message instead of producing NaN metrics later.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from slidestream.errors import ConfigError
from slidestream.mil.labels import LabelsTable


def strata(labels: LabelsTable) -> np.ndarray:
    """What splits balance: the class, or for survival the event indicator."""
    if labels.task == "classification":
        return labels.table["label"].to_numpy(dtype=str)
    return labels.table["event"].to_numpy().astype(str)


def patient_folds(labels: LabelsTable, n_folds: int, seed: int) -> np.ndarray:
    """Fold index (0 … n_folds-1) of every row of ``labels``; no patient spans two folds."""
    if n_folds < 2:
        raise ConfigError(labels.path, f"need at least 2 folds, got {n_folds}")
    y = strata(labels)
    groups = labels.table["patient_id"].to_numpy(dtype=str)
    _check_patients_per_stratum(labels, y, groups, n_folds)
    folds = _grouped_split(y, groups, n_folds, seed)
    for k in range(n_folds):
        missing = sorted(str(v) for v in set(y) - set(y[folds == k]))
        if missing:
            what = "class(es)" if labels.task == "classification" else "event value(s)"
            raise ConfigError(
                labels.path,
                f"fold {k} has no slides of {what} {missing}: too few patients for "
                f"{n_folds} stratified folds; use fewer folds",
            )
    return folds


def validation_split(
    labels: LabelsTable, fraction: float, seed: int
) -> tuple[list[str], list[str]]:
    """Split ``labels`` (a training fold) into (train, validation) slide ids by patient.

    The validation part holds about ``fraction`` of the patients (one of ``round(1/fraction)``
    stratified group folds). ``fraction == 0`` returns no validation slides.
    """
    ids = np.asarray(labels.slide_ids)
    if fraction <= 0:
        return ids.tolist(), []
    n_splits = max(2, round(1 / fraction))
    groups = labels.table["patient_id"].to_numpy(dtype=str)
    if len(set(groups)) < n_splits:
        raise ConfigError(
            labels.path,
            f"only {len(set(groups))} patients in a training fold: too few for a "
            f"{fraction:.0%} validation split",
        )
    y = strata(labels)
    if all((y == value).sum() < n_splits for value in set(y)):
        # sklearn refuses this split with a bare ValueError; say what to change instead
        raise ConfigError(
            labels.path,
            f"every class has fewer than {n_splits} slides in a training fold: too few for a "
            f"{fraction:.0%} validation split (use a larger --val-fraction, fewer folds, or "
            "--val-fraction 0 to train without early stopping)",
        )
    folds = _grouped_split(y, groups, n_splits, seed)
    return ids[folds != 0].tolist(), ids[folds == 0].tolist()


def _grouped_split(y: np.ndarray, groups: np.ndarray, n_splits: int, seed: int) -> np.ndarray:
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    folds = np.full(len(y), -1)
    with warnings.catch_warnings():
        # sklearn warns when a class has fewer members than folds; validated by the callers.
        warnings.simplefilter("ignore", UserWarning)
        for k, (_, test) in enumerate(splitter.split(np.zeros(len(y)), y, groups)):
            folds[test] = k
    return folds


def _check_patients_per_stratum(labels, y, groups, n_folds) -> None:
    for value in sorted(str(v) for v in set(y)):
        n_patients = len(set(groups[y == value]))
        if n_patients < n_folds:
            what = "class" if labels.task == "classification" else "event value"
            raise ConfigError(
                labels.path,
                f"{what} '{value}' has {n_patients} patient(s); {n_folds} folds need at least "
                f"{n_folds} (use fewer folds)",
            )
