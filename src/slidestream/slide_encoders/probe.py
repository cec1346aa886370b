"""Linear probes of a cohort table against the MIL labels table, on the MIL's patient folds.

The point of a probe is comparison: slide embeddings (PANTHER, COBRA, mean) against each other
and against a MIL model trained on the same slides. That comparison is only fair on the same
folds, so the labels are read and validated by :mod:`slidestream.mil.labels` and the folds come
from :func:`slidestream.mil.splits.patient_folds` with the same seed (identical to ``slidestream
train``'s), or are read from a MIL run's ``oof_predictions.csv``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from slidestream.errors import ConfigError
from slidestream.mil.labels import LabelsTable
from slidestream.mil.splits import patient_folds
from slidestream.slide_encoders.evaluate import ProbeResult, cox_probe, linear_probe

__all__ = ["embedding_matrix", "folds_from_run", "probe_cohort", "read_cohort_table"]


def read_cohort_table(path: str | Path) -> pd.DataFrame:
    """The Parquet written by ``slidestream slide-encode`` (one row per slide)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(path, "cohort table not found (write it with slidestream slide-encode)")
    try:
        table = pd.read_parquet(path)
    except (OSError, ValueError) as exc:
        raise ConfigError(path, f"cannot read the cohort table: {exc}") from None
    missing = {"slide_id", "embedding"} - set(table.columns)
    if missing:
        raise ConfigError(path, f"not a cohort table: missing column(s) {sorted(missing)}")
    return table


def embedding_matrix(
    cohort: pd.DataFrame, slide_ids: list[str], where: str | Path | None = None
) -> np.ndarray:
    """``(n, D)`` embeddings in ``slide_ids`` order; names the slides without a usable one."""
    ok = cohort
    if "status" in cohort.columns:
        ok = cohort[cohort["status"] == "ok"]
    ok = ok[ok["embedding"].notna()].drop_duplicates("slide_id", keep="last").set_index("slide_id")
    missing = [s for s in slide_ids if s not in ok.index]
    if missing:
        shown = ", ".join(missing[:5]) + (
            f", ... ({len(missing)} in all)" if len(missing) > 5 else ""
        )
        raise ConfigError(where, f"{len(missing)} labelled slide(s) have no embedding: {shown}")
    rows = [np.asarray(e, np.float64) for e in ok.loc[slide_ids, "embedding"]]
    if len({r.shape for r in rows}) > 1:
        raise ConfigError(where, "embeddings of different lengths (mixed methods or encoders?)")
    return np.stack(rows)


def folds_from_run(run: str | Path, labels: LabelsTable) -> np.ndarray:
    """The fold of every labelled slide in a MIL run (its ``oof_predictions.csv``)."""
    path = Path(run) / "oof_predictions.csv"
    if not path.is_file():
        raise ConfigError(path, "no out-of-fold predictions in this run folder")
    oof = pd.read_csv(path, dtype={"slide_id": str}).set_index("slide_id")
    missing = [s for s in labels.slide_ids if s not in oof.index]
    if missing:
        raise ConfigError(
            path, f"{len(missing)} labelled slide(s) not in the run, e.g. {missing[0]}"
        )
    return oof.loc[labels.slide_ids, "fold"].to_numpy(np.int64)


def probe_cohort(
    cohort: pd.DataFrame,
    labels: LabelsTable,
    *,
    n_folds: int = 5,
    seed: int = 0,
    folds: np.ndarray | None = None,
    c: float = 1.0,
    alpha: float = 1.0,
    where: str | Path | None = None,
) -> ProbeResult:
    """Cross-validated logistic regression (classification) or ridge Cox (survival).

    Folds are MIL's patient folds for ``(labels, n_folds, seed)`` unless ``folds`` is given.
    """
    x = embedding_matrix(cohort, labels.slide_ids, where)
    if folds is None:
        folds = patient_folds(labels, n_folds, seed)
    table = labels.table
    groups = table["patient_id"].to_numpy(str)
    if labels.task == "classification":
        index = {name: i for i, name in enumerate(labels.classes)}  # classes sort as numbers
        y = np.array([index[v] for v in table["label"].astype(str)], np.int64)
        return linear_probe(x, y, groups, folds=folds, c=c, seed=seed)
    return cox_probe(
        x,
        table["time"].to_numpy(),
        table["event"].to_numpy(),
        groups,
        folds=folds,
        alpha=alpha,
        seed=seed,
    )
