"""Unsupervised COBRA pre-training: MoCo-v3-style contrast between views of the same patient.

A *view* is a random subset of ``n_tiles`` tiles from one (slide, patch encoder) pair of a patient;
two views of a patient can differ in slide, in encoder and in tiles. The base encoder plus a predictor
must match the momentum (EMA) encoder's output for the other view against every other patient in the
batch (symmetrised InfoNCE, temperature ``T``, each term scaled by ``2T`` as in MoCo v3). Because
views from different encoders must land on the same point, the per-encoder input projections learn a
shared space — that is what makes the model "foundation-model agnostic".

As in the reference (``cobra/ssl``): attention pools the Mamba *hidden states* during pre-training
(the inference model pools the raw features), there is no queue or memory bank, and the momentum
encoder's weights are the ones kept for inference. Single process only: there is no all-gather, so
the reference's multi-GPU label-offset quirk does not arise.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from slidestream.slide_encoders.cobra import Cobra, CobraConfig

__all__ = ["CobraSSL", "PretrainConfig", "PretrainResult", "info_nce", "sample_view", "train_cobra"]

SlideFeatures = Mapping[str, np.ndarray]  # encoder name -> (N, d) tile features of one slide


@dataclass
class PretrainConfig:
    """Pre-training hyper-parameters; defaults are the reference's except the epoch counts.

    ``lr=None`` means ``5e-4 · batch_size / 256`` (the reference's scaling rule).
    """

    epochs: int = 100
    batch_size: int = 64
    lr: float | None = None
    weight_decay: float = 0.1
    warmup_epochs: int = 5
    temperature: float = 0.2
    momentum: float = 0.99
    n_tiles: int = 768
    proj_dim: int = 256
    seed: int = 0
    device: str = "cpu"


class CobraSSL(nn.Module):
    """A :class:`Cobra` whose attention pools hidden states, followed by the projector."""

    def __init__(self, config: CobraConfig, proj_dim: int) -> None:
        super().__init__()
        self.cobra = Cobra(config)
        dim = config.embed_dim
        self.proj = nn.Sequential(
            nn.LayerNorm(dim),
            nn.Linear(dim, 4 * dim),
            nn.SiLU(),
            nn.Dropout(config.dropout),
            nn.Linear(4 * dim, proj_dim),
            nn.BatchNorm1d(proj_dim),
        )

    def pooled(self, views: Sequence[tuple[str, Tensor]]) -> Tensor:
        """Attention-pooled hidden states ``(B, D)`` of equally long views ``[(encoder, (n, d))]``.

        Each view goes through its own encoder's projection, so one batch mixes encoders freely.
        """
        h = torch.cat([self.cobra.embed[name](x[None]) for name, x in views])
        scores, hidden = self.cobra.attention_scores(h)
        return self.cobra.pool(torch.softmax(scores, dim=-1), hidden)

    def forward(self, views: Sequence[tuple[str, Tensor]]) -> Tensor:
        return self.proj(self.pooled(views))


def _predictor(dim: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.LayerNorm(dim),
        nn.Linear(dim, 2 * dim),
        nn.SiLU(),
        nn.Dropout(dropout),
        nn.Linear(2 * dim, dim),
        nn.BatchNorm1d(dim),
    )


def info_nce(q: Tensor, k: Tensor, temperature: float) -> Tensor:
    """MoCo-v3 contrastive loss: row ``i`` of ``q`` must pick row ``i`` of ``k`` (scaled by 2T)."""
    logits = F.normalize(q, dim=1) @ F.normalize(k, dim=1).T / temperature
    labels = torch.arange(len(q), device=q.device)
    return F.cross_entropy(logits, labels) * (2 * temperature)


def sample_view(features: np.ndarray, n_tiles: int, rng: np.random.Generator) -> np.ndarray:
    """``n_tiles`` rows in random order; short slides are repeated with fresh permutations."""
    n = len(features)
    if n == 0:
        raise ValueError("cannot draw a view from a slide without tiles")
    reps = -(-n_tiles // n)
    order = np.concatenate([rng.permutation(n) for _ in range(reps)])[:n_tiles]
    return features[order]


@dataclass
class PretrainResult:
    """The momentum encoder's :class:`Cobra` (kept for inference) and the loss of every step."""

    model: Cobra
    step_losses: list[float] = field(default_factory=list)
    epoch_losses: list[float] = field(default_factory=list)


def _lr_at(step: float, total: float, warmup: float, base: float) -> float:
    if step < warmup:
        return base * step / max(warmup, 1e-12)
    return base * 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(total - warmup, 1e-12)))


def train_cobra(
    slides: Sequence[SlideFeatures],
    model_config: CobraConfig,
    config: PretrainConfig | None = None,
    *,
    groups: Sequence[str] | None = None,
    on_epoch: Callable[[int, float], None] | None = None,
    keep: Literal["momentum", "base"] = "momentum",
) -> PretrainResult:
    """Pre-train COBRA on ``slides`` (each ``{encoder: (N, d)}``; lazy sequences are fine).

    ``groups`` gives each slide's patient: views are drawn from all of a patient's slides and
    encoders, and the patient is the unit that is contrasted. Default: every slide on its own.
    ``keep="momentum"`` returns the EMA encoder like the reference loader; after short runs the
    EMA lags far behind, and ``keep="base"`` returns the trained encoder itself.
    """
    cfg = config or PretrainConfig()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    device = torch.device(cfg.device)
    group_ids = list(groups) if groups is not None else [str(i) for i in range(len(slides))]
    if len(group_ids) != len(slides):
        raise ValueError(f"{len(group_ids)} group ids for {len(slides)} slides")
    pools: dict[str, list[tuple[int, str]]] = {}
    for index, gid in enumerate(group_ids):
        for name in slides[index]:
            if name in model_config.input_dims:
                pools.setdefault(gid, []).append((index, name))
    patients = sorted(pools)
    batch = min(cfg.batch_size, len(patients))
    if batch < 2:
        raise ValueError("contrastive pre-training needs at least 2 patients with usable features")

    base = CobraSSL(model_config, cfg.proj_dim).to(device)
    predictor = _predictor(cfg.proj_dim, model_config.dropout).to(device)
    momentum = copy.deepcopy(base).requires_grad_(False)
    lr = cfg.lr if cfg.lr is not None else 5e-4 * batch / 256
    params = list(base.parameters()) + list(predictor.parameters())
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = len(patients) // batch  # a last batch of 1 would break BatchNorm: dropped
    total = cfg.epochs * steps_per_epoch

    def view(patient: str) -> tuple[str, Tensor]:
        pool = pools[patient]
        index, name = pool[rng.integers(len(pool))]
        rows = sample_view(np.asarray(slides[index][name]), cfg.n_tiles, rng)
        return name, torch.as_tensor(rows, dtype=torch.float32, device=device)

    result = PretrainResult(model=momentum.cobra)
    step = 0
    for epoch in range(cfg.epochs):
        m = 1.0 - 0.5 * (1.0 + math.cos(math.pi * epoch / cfg.epochs)) * (1.0 - cfg.momentum)
        order = rng.permutation(len(patients))
        losses = []
        for b in range(steps_per_epoch):
            chosen = [patients[i] for i in order[b * batch : (b + 1) * batch]]
            v1, v2 = [view(p) for p in chosen], [view(p) for p in chosen]
            for group in optimizer.param_groups:
                group["lr"] = _lr_at(step, total, cfg.warmup_epochs * steps_per_epoch, lr)
            q1, q2 = predictor(base(v1)), predictor(base(v2))
            with torch.no_grad():
                k1, k2 = momentum(v1), momentum(v2)
            loss = info_nce(q1, k2, cfg.temperature) + info_nce(q2, k1, cfg.temperature)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                for p_m, p_b in zip(momentum.parameters(), base.parameters(), strict=True):
                    p_m.mul_(m).add_(p_b.detach(), alpha=1.0 - m)
            result.step_losses.append(loss.item())
            losses.append(result.step_losses[-1])
            step += 1
        result.epoch_losses.append(float(np.mean(losses)))
        if on_epoch is not None:
            on_epoch(epoch, result.epoch_losses[-1])
    result.model = (momentum if keep == "momentum" else base).cobra.eval()
    return result
