"""One model, one training set: the epoch loop with early stopping, and bag-by-bag inference.

Randomness comes from exactly two places — the torch generator (initialisation, dropout) seeded
by the caller, and the numpy ``rng`` passed in (bag order, class-balanced sampling, tile
subsampling) — so a fold is reproducible bit for bit on CPU.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from slidestream.mil.bags import Bag, BagSource
from slidestream.mil.batching import collate, subsample
from slidestream.mil.config import TrainConfig
from slidestream.mil.models.base import MILModel, MILOutput, Targets
from slidestream.mil.tasks import Task


@dataclass
class FitResult:
    best_epoch: int
    history: list[dict] = field(default_factory=list)


@contextmanager
def deterministic(enabled: bool = True) -> Iterator[None]:
    """``torch.use_deterministic_algorithms`` for the duration, restoring the caller's setting."""
    previous = torch.are_deterministic_algorithms_enabled()
    previous_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(enabled, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous, warn_only=previous_warn)


def training_loss(
    model: MILModel, task: Task, out: MILOutput, targets: Targets, aux_weight: float | None
) -> Tensor:
    """``(1 − w) · bag_loss + w · auxiliary_loss`` (just the bag loss when there is no auxiliary)."""

    def bag_loss(logits: Tensor) -> Tensor:
        return task.loss(logits, targets)

    loss = bag_loss(out.logits)
    w = model.aux_weight if aux_weight is None else aux_weight
    if w > 0:
        aux = model.auxiliary_loss(out, targets, bag_loss)
        if aux is not None:
            loss = (1.0 - w) * loss + w * aux
    return loss


def fit(
    model: MILModel,
    task: Task,
    rows: pd.DataFrame,
    train_ids: Sequence[str],
    val_ids: Sequence[str],
    source: BagSource,
    config: TrainConfig,
    rng: np.random.Generator,
    log: Callable[[str], None] | None = None,
) -> FitResult:
    """Train ``model`` in place; on return it holds the weights of the best validation epoch.

    ``rows`` is the labels table indexed by ``slide_id``. Without validation slides the model
    trains for ``config.epochs`` and keeps the last weights.
    """
    optimizer = _optimizer(model, config)
    train_ids, val_ids = list(train_ids), list(val_ids)
    val_targets = task.targets(rows.loc[val_ids]) if val_ids else None
    best_score, best_epoch, best_state = math.inf, 0, None
    history: list[dict] = []
    for epoch in range(config.epochs):
        model.train()
        losses = []
        for batch in _batches(_epoch_order(train_ids, rows, task, config, rng), config):
            bags = [subsample(source.load(s), config.max_tiles, rng) for s in batch]
            x, mask, coords = collate(bags)
            targets = task.targets(rows.loc[batch])
            out = model(x, mask, coords)
            loss = training_loss(model, task, out, targets, config.instance_loss_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
        record = {"epoch": epoch, "train_loss": float(np.mean(losses))}
        if val_ids:
            logits, _ = infer(model, val_ids, source)
            record["val_loss"] = float(task.loss(torch.from_numpy(logits).float(), val_targets))
            outputs = task.outputs(logits)
            record["val_metric"] = task.metrics(rows.loc[val_ids], outputs)[task.main_metric]
            score = _monitored(record, config)
            if score < best_score:
                best_score, best_epoch = score, epoch
                best_state = copy.deepcopy(model.state_dict())
        history.append(record)
        if log:
            log(_format(record))
        patience_over = epoch - best_epoch >= config.patience
        if val_ids and patience_over and epoch + 1 >= config.min_epochs:
            break
    if best_state is None:  # no validation (or never a finite score): keep the last weights
        return FitResult(len(history) - 1, history)
    model.load_state_dict(best_state)
    return FitResult(best_epoch, history)


@torch.no_grad()
def infer_bag(model: MILModel, bag: Bag) -> tuple[np.ndarray, np.ndarray]:
    """Logits ``(C,)`` and tile scores ``(N,)`` of one whole bag (call ``model.eval()`` first)."""
    x, mask, coords = collate([bag])
    out = model(x, mask, coords)
    return out.logits[0].double().numpy(), out.scores[0].double().numpy()


def infer(
    model: MILModel, slide_ids: Sequence[str], source: BagSource
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Full bags, one at a time, in eval mode: logits ``(n, C)`` and per-tile scores per slide.

    One bag per forward keeps inference independent of batch composition, so that ``predict``
    reproduces the out-of-fold values exactly.
    """
    model.eval()
    logits, scores = [], {}
    for slide_id in slide_ids:
        logit, scores[slide_id] = infer_bag(model, source.load(slide_id))
        logits.append(logit)
    return np.stack(logits), scores


def _optimizer(model: MILModel, config: TrainConfig) -> torch.optim.Optimizer:
    cls = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    return cls(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)


def _epoch_order(
    ids: list[str], rows: pd.DataFrame, task: Task, config: TrainConfig, rng: np.random.Generator
) -> list[str]:
    """A permutation of the training slides, or a class-balanced draw with replacement."""
    if config.balance == "sampler" and task.kind == "classification":
        labels = rows.loc[ids, "label"].to_numpy()
        _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
        p = 1.0 / counts[inverse]
        return [ids[i] for i in rng.choice(len(ids), size=len(ids), replace=True, p=p / p.sum())]
    return [ids[i] for i in rng.permutation(len(ids))]


def _batches(order: list[str], config: TrainConfig) -> Iterator[list[str]]:
    size = config.effective_batch_size
    stop = len(order)
    if config.is_cox and len(order) >= 2 * size:
        stop -= len(order) % size  # a Cox loss on a small leftover batch is mostly noise: drop it
    for start in range(0, stop, size):
        yield order[start : start + size]


def _monitored(record: dict, config: TrainConfig) -> float:
    if config.monitor == "loss":
        return record["val_loss"]
    metric = record["val_metric"]
    return math.inf if math.isnan(metric) else -metric


def _format(record: dict) -> str:
    return "  ".join(
        f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in record.items()
    )
