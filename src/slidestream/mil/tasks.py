"""Tasks: what the logits mean, how they are scored, and what a prediction row holds.

* :class:`ClassificationTask` — softmax cross-entropy (optionally class-weighted);
  prediction columns ``prob_<class>`` and ``pred``.
* :class:`CoxTask` — one output, the log-risk; Cox partial likelihood over each batch of bags.
* :class:`DiscreteSurvivalTask` — one hazard logit per time bin; discrete-time NLL. Bin edges
  are the quantiles of the *uncensored* training times (as in Patch-GCN/MCAT/PANTHER, but
  computed on the training fold only, so the test fold does not shape the bins).

A task's :meth:`spec` is stored in every checkpoint and :func:`task_from_spec` rebuilds it.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor

from slidestream.mil.config import TrainConfig
from slidestream.mil.labels import LabelsTable
from slidestream.mil.losses import cox_partial_nll, discrete_survival_curve, discrete_survival_nll
from slidestream.mil.metrics import classification_metrics, survival_metrics
from slidestream.mil.models.base import Targets


class Task(Protocol):
    kind: str
    n_outputs: int
    main_metric: str
    derived: tuple[str, ...]
    """Output columns computed from the others by :meth:`add_prediction` (not averaged)."""

    def targets(self, rows: pd.DataFrame) -> Targets: ...
    def loss(self, logits: Tensor, targets: Targets) -> Tensor: ...
    def outputs(self, logits: np.ndarray) -> pd.DataFrame: ...
    def add_prediction(self, out: pd.DataFrame) -> pd.DataFrame: ...
    def metrics(self, rows: pd.DataFrame, outputs: pd.DataFrame) -> dict: ...
    def spec(self) -> dict[str, Any]: ...


class ClassificationTask:
    kind = "classification"
    main_metric = "auroc_macro"
    derived = ("pred",)

    def __init__(self, classes: list[str], class_weights: list[float] | None = None):
        self.classes = list(classes)
        self.n_outputs = len(classes)
        self.index = {c: i for i, c in enumerate(self.classes)}
        self.class_weights = None if class_weights is None else torch.tensor(class_weights)

    def label_index(self, rows: pd.DataFrame) -> np.ndarray:
        return rows["label"].map(self.index).to_numpy(dtype=np.int64)

    def targets(self, rows: pd.DataFrame) -> Targets:
        return Targets(label=torch.tensor(self.label_index(rows)))

    def loss(self, logits: Tensor, targets: Targets) -> Tensor:
        return F.cross_entropy(logits, targets.label, weight=self.class_weights)

    def outputs(self, logits: np.ndarray) -> pd.DataFrame:
        probs = torch.softmax(torch.from_numpy(logits).double(), dim=1).numpy()
        out = pd.DataFrame(probs, columns=[f"prob_{c}" for c in self.classes])
        return self.add_prediction(out)

    def add_prediction(self, out: pd.DataFrame) -> pd.DataFrame:
        """``pred`` = the most probable class (recomputed after ensembling probabilities)."""
        probs = out[[f"prob_{c}" for c in self.classes]].to_numpy()
        out["pred"] = np.asarray(self.classes)[probs.argmax(axis=1)]
        return out

    def metrics(self, rows: pd.DataFrame, outputs: pd.DataFrame) -> dict:
        probs = outputs[[f"prob_{c}" for c in self.classes]].to_numpy()
        return classification_metrics(self.label_index(rows), probs, self.classes)

    def spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "classes": self.classes}


class CoxTask:
    kind = "cox"
    n_outputs = 1
    main_metric = "c_index"
    derived = ()

    def targets(self, rows: pd.DataFrame) -> Targets:
        return Targets(
            time=torch.tensor(rows["time"].to_numpy(dtype=np.float32)),
            event=torch.tensor(rows["event"].to_numpy(dtype=np.float32)),
        )

    def loss(self, logits: Tensor, targets: Targets) -> Tensor:
        return cox_partial_nll(logits[:, 0], targets.time, targets.event)

    def outputs(self, logits: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame({"risk": logits[:, 0].astype(np.float64)})

    def add_prediction(self, out: pd.DataFrame) -> pd.DataFrame:
        return out

    def metrics(self, rows: pd.DataFrame, outputs: pd.DataFrame) -> dict:
        return survival_metrics(rows["time"], rows["event"], outputs["risk"])

    def spec(self) -> dict[str, Any]:
        return {"kind": self.kind}


class DiscreteSurvivalTask:
    kind = "discrete_survival"
    main_metric = "c_index"
    derived = ("risk",)

    def __init__(self, inner_edges: list[float], alpha: float = 0.0):
        self.inner_edges = [float(e) for e in inner_edges]
        self.n_outputs = len(self.inner_edges) + 1
        self.alpha = alpha

    @classmethod
    def from_training(cls, train: pd.DataFrame, n_bins: int, alpha: float) -> DiscreteSurvivalTask:
        """Inner edges = the ``1/n … (n-1)/n`` quantiles of the uncensored training times."""
        times = train.loc[train["event"] == 1, "time"].to_numpy(dtype=float)
        if len(times) == 0:
            times = train["time"].to_numpy(dtype=float)
        qs = np.quantile(times, np.arange(1, n_bins) / n_bins)
        return cls(qs.tolist(), alpha)

    def bins(self, time: np.ndarray) -> np.ndarray:
        """Bin index of each time; bins are ``[e_{k-1}, e_k)`` and open at both ends."""
        return np.searchsorted(np.asarray(self.inner_edges), time, side="right")

    def targets(self, rows: pd.DataFrame) -> Targets:
        time = rows["time"].to_numpy(dtype=np.float64)
        return Targets(
            time=torch.tensor(time.astype(np.float32)),
            event=torch.tensor(rows["event"].to_numpy(dtype=np.float32)),
            bin=torch.tensor(self.bins(time).astype(np.int64)),
        )

    def loss(self, logits: Tensor, targets: Targets) -> Tensor:
        return discrete_survival_nll(logits, targets.bin, targets.event, self.alpha)

    def outputs(self, logits: np.ndarray) -> pd.DataFrame:
        surv = discrete_survival_curve(torch.from_numpy(logits).double()).numpy()
        out = pd.DataFrame(surv, columns=[f"surv_{k}" for k in range(self.n_outputs)])
        return self.add_prediction(out)

    def add_prediction(self, out: pd.DataFrame) -> pd.DataFrame:
        """Risk = minus the sum of the survival curve (the expected number of bins survived)."""
        surv = out[[f"surv_{k}" for k in range(self.n_outputs)]].to_numpy()
        out.insert(0, "risk", -surv.sum(axis=1))
        return out

    def metrics(self, rows: pd.DataFrame, outputs: pd.DataFrame) -> dict:
        return survival_metrics(rows["time"], rows["event"], outputs["risk"])

    def spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "inner_edges": self.inner_edges, "alpha": self.alpha}


def build_task(config: TrainConfig, labels: LabelsTable, train_ids: list[str]) -> Task:
    """The task of one fold; class weights and time bins come from its training slides only."""
    train = labels.subset(train_ids).table
    if config.task == "classification":
        weights = None
        if config.balance == "weights":
            counts = train["label"].value_counts().reindex(labels.classes).fillna(0).to_numpy()
            inv = np.where(counts > 0, 1.0 / np.maximum(counts, 1), 0.0)
            weights = (inv * len(inv) / inv.sum()).tolist()
        return ClassificationTask(labels.classes, weights)
    if config.survival_loss == "cox":
        return CoxTask()
    return DiscreteSurvivalTask.from_training(train, config.n_bins, config.nll_alpha)


def task_from_spec(spec: dict[str, Any]) -> Task:
    kind = spec["kind"]
    if kind == "classification":
        return ClassificationTask(spec["classes"])
    if kind == "cox":
        return CoxTask()
    if kind == "discrete_survival":
        return DiscreteSurvivalTask(spec["inner_edges"], spec.get("alpha", 0.0))
    raise ValueError(f"unknown task kind {kind!r}")
