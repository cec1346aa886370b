"""What every MIL aggregator shares: the output record, masking helpers and the base class.

All models take a padded batch of bags ``x: (B, N, D)`` with an optional boolean ``mask: (B, N)``
(``True`` = a real tile) and return :class:`MILOutput`. Keeping one signature lets the training
loop, the predictor and the heatmap writer treat an ABMIL and a TransMIL the same way; whatever
a model needs beyond logits (instance scores for CLAM's clustering loss, DSMIL's max-instance
logits) travels in ``extra`` and is consumed by the model's own :meth:`MILModel.auxiliary_loss`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

BagLoss = Callable[[Tensor], Tensor]
"""The task loss bound to the current targets: ``logits (B, C) -> scalar``."""


@dataclass
class MILOutput:
    """Logits ``(B, C)``, one score per tile ``(B, N)`` (0 on padding), and model-specific extras."""

    logits: Tensor
    scores: Tensor
    extra: dict[str, Tensor] = field(default_factory=dict)


@dataclass
class Targets:
    """Batch targets. Classification fills ``label``; survival fills ``time``/``event`` (+ ``bin``)."""

    label: Tensor | None = None
    time: Tensor | None = None
    event: Tensor | None = None
    bin: Tensor | None = None


def full_mask(x: Tensor, mask: Tensor | None) -> Tensor:
    """The mask to use when none is given: every tile is real."""
    if mask is None:
        return torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
    return mask


def masked_softmax(logits: Tensor, mask: Tensor | None, dim: int = -1) -> Tensor:
    """Softmax over tiles that ignores padding.

    ``mask`` is ``(B, N)`` and is broadcast over the middle axes of ``logits`` (``(B, K, N)``), so
    padded tiles get exactly zero weight and the real tiles' weights sum to one.
    """
    if mask is not None:
        while mask.dim() < logits.dim():
            mask = mask.unsqueeze(1)
        logits = logits.masked_fill(~mask, float("-inf"))
    return torch.softmax(logits, dim=dim)


def scores_for_predicted_class(per_class: Tensor, logits: Tensor) -> Tensor:
    """Pick ``(B, N)`` tile scores out of per-class scores ``(B, C, N)``.

    A heatmap answers "which tiles made the model say what it said", so models that score tiles
    per class report the branch of the predicted class (one output: that output).
    """
    if per_class.shape[1] == 1:
        return per_class[:, 0]
    idx = logits.argmax(dim=1)
    return per_class[torch.arange(per_class.shape[0], device=per_class.device), idx]


class MILModel(nn.Module):
    """Base class of the aggregators.

    ``aux_weight`` is the share of the auxiliary loss in the total,
    ``loss = (1 - w) · bag_loss + w · aux_loss`` (CLAM: ``w = 1 - bag_weight = 0.3``; DSMIL: 0.5).
    Models without an auxiliary loss keep ``w = 0`` and return ``None``.
    """

    aux_weight: float = 0.0
    hparams: dict[str, Any]

    def forward(
        self, x: Tensor, mask: Tensor | None = None, coords: Tensor | None = None
    ) -> MILOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    def auxiliary_loss(self, out: MILOutput, targets: Targets, bag_loss: BagLoss) -> Tensor | None:
        """Extra training signal computed from ``out.extra``; ``None`` when the model has none."""
        return None
