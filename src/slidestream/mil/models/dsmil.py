"""DSMIL: dual-stream MIL (Li, Li & Eliceiri, CVPR 2021).

* Instance stream: a linear classifier scores every tile per class; its per-class max is a
  max-pooling MIL prediction and picks the *critical instance* ``m_c = argmax_n c_{n,c}``.
* Bag stream: every tile's query is compared with the critical instance's query,
  ``U_{n,c} = softmax_n(⟨q(x_n), q(x_{m_c})⟩ / √d_q)``; the class-``c`` bag vector is
  ``b_c = Σ_n U_{n,c} v(x_n)`` and a ``Conv1d(C, C, kernel=D)`` maps the ``C × D`` bag matrix to
  ``C`` logits.

Training uses ``0.5 · bag_loss + 0.5 · max_instance_loss`` (``aux_weight = 0.5``); prediction
uses the bag stream. Defaults are the later upstream ones (``nonlinear=True`` query network,
``passing_v=False`` identity values). Deviation: the reference treats classes as independent
labels with BCE (binary = one output); here both streams use the task loss of the run (softmax
cross-entropy over ``C`` classes, or a survival loss), so DSMIL plugs into the same tasks as the
other models.
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from slidestream.mil.models.base import (
    BagLoss,
    MILModel,
    MILOutput,
    Targets,
    full_mask,
    masked_softmax,
    scores_for_predicted_class,
)
from slidestream.mil.models.registry import register


@register("dsmil")
class DSMIL(MILModel):
    """Instance stream + critical-instance attention bag stream."""

    aux_weight = 0.5

    def __init__(
        self,
        in_dim: int,
        n_classes: int,
        query_dim: int = 128,
        nonlinear: bool = True,
        passing_v: bool = False,
        dropout_v: float = 0.0,
    ):
        super().__init__()
        self.instance_classifier = nn.Linear(in_dim, n_classes)
        if nonlinear:
            self.q: nn.Module = nn.Sequential(
                nn.Linear(in_dim, query_dim), nn.ReLU(), nn.Linear(query_dim, query_dim), nn.Tanh()
            )
        else:
            self.q = nn.Linear(in_dim, query_dim)
        self.v: nn.Module = (
            nn.Sequential(nn.Dropout(dropout_v), nn.Linear(in_dim, in_dim), nn.ReLU())
            if passing_v
            else nn.Identity()
        )
        self.bag_classifier = nn.Conv1d(n_classes, n_classes, kernel_size=in_dim)
        self.query_dim = query_dim

    def forward(self, x: Tensor, mask: Tensor | None = None, coords: Tensor | None = None):
        mask = full_mask(x, mask)
        inst = self.instance_classifier(x)  # (B, N, C)
        max_logits, critical = inst.masked_fill(~mask.unsqueeze(-1), float("-inf")).max(dim=1)
        critical_feats = x.gather(1, critical.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
        q_all, q_crit = self.q(x), self.q(critical_feats)  # (B, N, q), (B, C, q)
        attn = masked_softmax(q_crit @ q_all.transpose(1, 2) / math.sqrt(self.query_dim), mask)
        bag = attn @ self.v(x)  # (B, C, D)
        logits = self.bag_classifier(bag).squeeze(-1)  # (B, C)
        extra = {"instance_logits": inst, "max_instance_logits": max_logits, "attention": attn}
        return MILOutput(logits, scores_for_predicted_class(attn, logits), extra)

    def auxiliary_loss(self, out: MILOutput, targets: Targets, bag_loss: BagLoss) -> Tensor:
        """The max-pooling instance stream trained with the same loss as the bag."""
        return bag_loss(out.extra["max_instance_logits"])
