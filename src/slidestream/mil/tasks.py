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

    def __init__(
        self,
        inner_edges: list[float],
        alpha: float = 0.0,
        baseline: list[float] | None = None,
    ):
        self.inner_edges = [float(e) for e in inner_edges]
        self.n_bins = len(self.inner_edges) + 1
        self.alpha = alpha
        self.baseline = None if baseline is None else [float(b) for b in baseline]
        if self.baseline is not None and len(self.baseline) != self.n_bins:
            raise ValueError(f"{len(self.baseline)} baseline hazards for {self.n_bins} bins")
        # shared head: one log-odds risk per bag, added to every bin's baseline log-odds
        self.n_outputs = self.n_bins if self.baseline is None else 1

    @classmethod
    def from_training(
        cls, train: pd.DataFrame, n_bins: int, alpha: float, head: str = "shared"
    ) -> DiscreteSurvivalTask:
        """Inner edges = the ``1/n … (n-1)/n`` quantiles of the uncensored training times.

        With ``head="shared"`` the baseline log-odds of each bin is the life-table hazard of
        the training slides (events in the bin / slides still at risk in it), so the model only
        learns a single risk per bag (a discrete-time proportional-odds model).
        """
        times = train.loc[train["event"] == 1, "time"].to_numpy(dtype=float)
        if len(times) == 0:
            times = train["time"].to_numpy(dtype=float)
        qs = np.quantile(times, np.arange(1, n_bins) / n_bins)
        task = cls(qs.tolist(), alpha)
        if head == "shared":
            b = task.bins(train["time"].to_numpy(dtype=float))
            e = train["event"].to_numpy(dtype=float)
            events = np.bincount(b, weights=e, minlength=n_bins)
            at_risk = np.cumsum(np.bincount(b, minlength=n_bins)[::-1])[::-1]
            h = np.clip((events + 0.5) / (at_risk + 1.0), 0.01, 0.99)
            task = cls(qs.tolist(), alpha, np.log(h / (1 - h)).tolist())
        return task

    def hazard_logits(self, logits: Tensor) -> Tensor:
        """Per-bin hazard log-odds ``(B, K)``: the model's own, or baseline + shared risk."""
        if self.baseline is None:
            return logits
        return logits[:, :1] + torch.tensor(self.baseline, dtype=logits.dtype)

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
        z = self.hazard_logits(logits)
        return discrete_survival_nll(z, targets.bin, targets.event, self.alpha)

    def outputs(self, logits: np.ndarray) -> pd.DataFrame:
        z = self.hazard_logits(torch.from_numpy(logits).double())
        surv = discrete_survival_curve(z).numpy()
        out = pd.DataFrame(surv, columns=[f"surv_{k}" for k in range(self.n_bins)])
        return self.add_prediction(out)

    def add_prediction(self, out: pd.DataFrame) -> pd.DataFrame:
        """Risk = minus the sum of the survival curve (the expected number of bins survived)."""
        surv = out[[f"surv_{k}" for k in range(self.n_bins)]].to_numpy()
        out.insert(0, "risk", -surv.sum(axis=1))
        return out

    def metrics(self, rows: pd.DataFrame, outputs: pd.DataFrame) -> dict:
        return survival_metrics(rows["time"], rows["event"], outputs["risk"])

    def spec(self) -> dict[str, Any]:
        spec = {"kind": self.kind, "inner_edges": self.inner_edges, "alpha": self.alpha}
        if self.baseline is not None:
            spec["baseline"] = self.baseline
        return spec


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
    return DiscreteSurvivalTask.from_training(
        train, config.n_bins, config.nll_alpha, config.nll_head
    )


def task_from_spec(spec: dict[str, Any]) -> Task:
    kind = spec["kind"]
    if kind == "classification":
        return ClassificationTask(spec["classes"])
    if kind == "cox":
        return CoxTask()
    if kind == "discrete_survival":
        return DiscreteSurvivalTask(
            spec["inner_edges"], spec.get("alpha", 0.0), spec.get("baseline")
        )
    raise ValueError(f"unknown task kind {kind!r}")
