"""Losses that torch does not ship: smooth top-1 SVM, Cox partial likelihood, discrete-time NLL.

Every function takes logits (never probabilities) and returns the batch mean as a scalar.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def smooth_top1_svm(
    scores: Tensor, target: Tensor, alpha: float = 1.0, tau: float = 1.0, thresh: float = 1e3
) -> Tensor:
    """Smooth multi-class hinge (Berrada et al., ICLR 2018), CLAM's ``--inst_loss svm``.

    ``ℓ(s, y) = τ · log Σ_j exp((α·[j ≠ y] + s_j − s_y) / τ)``. Rows whose best score beats the
    runner-up by at least ``τ · log(thresh)`` use the hard hinge ``max_j(α·[j ≠ y] + s_j) − s_y``
    instead, exactly as the reference package does (there the smooth and hard values agree to
    within ``τ/thresh`` anyway, and the hard form has exact zero gradients).
    """
    top2 = scores.topk(2, dim=1).values
    hard = (top2[:, 0] - top2[:, 1]) >= tau * math.log(thresh)
    margin = alpha * (1.0 - F.one_hot(target, scores.shape[1]).to(scores.dtype))
    aug = scores + margin - scores.gather(1, target[:, None])
    smooth = tau * torch.logsumexp(aug / tau, dim=1)
    hinge = aug.max(dim=1).values
    return torch.where(hard, hinge, smooth).mean()


def cox_partial_nll(risk: Tensor, time: Tensor, event: Tensor) -> Tensor:
    """Negative Cox partial log-likelihood of a batch of bags (Breslow handling of ties).

    ``−(1/#events) Σ_{i: event} [r_i − log Σ_{j: t_j ≥ t_i} exp(r_j)]``. The risk set is built
    from the explicit ``t_j ≥ t_i`` comparison rather than a sorted cumulative sum, so tied
    times are handled correctly; batches are small (tens of bags), so O(B²) is nothing.
    A batch without events carries no information for Cox: the loss is zero (with a graph).
    """
    risk = risk.reshape(-1)
    event = event.reshape(-1).bool()
    if not bool(event.any()):
        return risk.sum() * 0.0
    at_risk = time.reshape(1, -1) >= time.reshape(-1, 1)  # [i, j]: j in the risk set of i
    log_denom = torch.logsumexp(risk.reshape(1, -1).masked_fill(~at_risk, float("-inf")), dim=1)
    return -(risk - log_denom)[event].mean()


def discrete_survival_nll(
    logits: Tensor, bin_index: Tensor, event: Tensor, alpha: float = 0.0
) -> Tensor:
    """Discrete-time survival NLL (Zadeh & Schmid 2020), as used by Patch-GCN, MCAT, PANTHER.

    ``logits (B, K)`` give per-bin hazards ``h_k = σ(z_k)`` and survival ``S_k = Π_{i≤k}(1 − h_i)``.
    For a patient in bin ``y``: an event contributes ``−log S_{y−1} − log h_y``, a censored one
    ``−log S_y``. ``alpha`` up-weights the uncensored term:
    ``(1 − α)·nll + α·uncensored_nll``. Computed in log space with ``logsigmoid`` (the reference
    code clamps probabilities at 1e-7 instead; the values agree wherever that clamp is inactive).
    """
    y = bin_index.reshape(-1, 1).long()
    e = event.reshape(-1, 1).to(logits.dtype)
    log_h = F.logsigmoid(logits)
    log_surv = torch.cumsum(F.logsigmoid(-logits), dim=1)
    log_surv = torch.cat([torch.zeros_like(log_surv[:, :1]), log_surv], dim=1)  # S_{-1} = 1
    uncensored = -e * (log_surv.gather(1, y) + log_h.gather(1, y))
    censored = -(1.0 - e) * log_surv.gather(1, y + 1)
    loss = (1.0 - alpha) * (censored + uncensored) + alpha * uncensored
    return loss.mean()


def discrete_survival_curve(logits: Tensor) -> Tensor:
    """``S_k = Π_{i≤k} (1 − σ(z_i))`` for every bin, ``(B, K)``."""
    return torch.exp(torch.cumsum(F.logsigmoid(-logits), dim=1))
