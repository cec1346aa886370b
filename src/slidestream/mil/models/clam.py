"""CLAM: clustering-constrained attention MIL (Lu et al., Nature BME 2021).

Gated attention pooling (single branch: CLAM-SB; one branch per class: CLAM-MB) plus an
*instance-level clustering* loss: the tiles the model attends to most should look like class
evidence and the tiles it ignores should not. For a bag of class ``y`` (``k = k_sample``):

* in-class branch ``y``: the ``k`` highest-attention tiles get pseudo-label 1, the ``k`` lowest 0,
  and the class-``y`` instance classifier is trained on them;
* out-of-class branches (only when ``subtyping``, i.e. the classes are mutually exclusive
  subtypes): the ``k`` highest-attention tiles get pseudo-label 0.

The training loop mixes ``0.7 · bag_loss + 0.3 · instance_loss`` (``bag_weight = 0.7``).
Differences from the reference code: ``k`` is clipped to ``N // 2`` for small bags (the
reference crashes when ``k > N``), and padded batches are supported via the mask.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from slidestream.mil.losses import smooth_top1_svm
from slidestream.mil.models.abmil import AttentionNet
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

_SIZES = {"small": (512, 256), "big": (512, 384)}


class _CLAM(MILModel):
    n_branches: int

    def __init__(
        self,
        in_dim: int,
        n_classes: int,
        size: Literal["small", "big"] = "small",
        dropout: float = 0.25,
        k_sample: int = 8,
        instance_loss: Literal["svm", "ce"] = "svm",
        subtyping: bool | None = None,
        bag_weight: float = 0.7,
    ):
        super().__init__()
        embed_dim, attn_dim = _SIZES[size]
        self.n_classes = n_classes
        self.k_sample = k_sample
        self.instance_loss_fn = smooth_top1_svm if instance_loss == "svm" else F.cross_entropy
        # CLAM sets subtyping for multi-class subtype problems; tumour-vs-normal (binary) is not.
        self.subtyping = n_classes > 2 if subtyping is None else subtyping
        self.aux_weight = 1.0 - bag_weight
        self.embed = nn.Sequential(nn.Linear(in_dim, embed_dim), nn.ReLU(), nn.Dropout(dropout))
        self.attention = AttentionNet(
            embed_dim, attn_dim, self._branches(n_classes), gated=True, dropout=dropout
        )
        self.instance_classifiers = nn.ModuleList(nn.Linear(embed_dim, 2) for _ in range(n_classes))
        self._build_classifier(embed_dim, n_classes)

    @staticmethod
    def _branches(n_classes: int) -> int:
        raise NotImplementedError

    def _build_classifier(self, embed_dim: int, n_classes: int) -> None:
        raise NotImplementedError

    def _pool(self, x: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        h = self.embed(x)
        attn = masked_softmax(self.attention(h), mask)  # (B, K, N)
        return h, attn, attn @ h  # pooled: (B, K, E)

    def auxiliary_loss(self, out: MILOutput, targets: Targets, bag_loss: BagLoss) -> Tensor | None:
        """Instance-level clustering loss, averaged over the bags of the batch.

        Needs class labels, so it is skipped (``None``) for survival targets.
        """
        if targets.label is None:
            return None
        h, attn, mask = out.extra["h"], out.extra["attention"], out.extra["mask"]
        losses = [
            self._bag_instance_loss(h[b, mask[b]], attn[b][:, mask[b]], int(targets.label[b]))
            for b in range(h.shape[0])
        ]
        losses = [loss for loss in losses if loss is not None]
        return torch.stack(losses).mean() if losses else None

    def _bag_instance_loss(self, h: Tensor, attn: Tensor, label: int) -> Tensor | None:
        k = min(self.k_sample, h.shape[0] // 2)
        if k == 0:
            return None
        total = h.new_zeros(())
        for c, classifier in enumerate(self.instance_classifiers):
            a = attn[0] if attn.shape[0] == 1 else attn[c]
            top = a.topk(k).indices
            if c == label:
                bottom = (-a).topk(k).indices
                inst = h[torch.cat([top, bottom])]
                pseudo = torch.cat([h.new_ones(k), h.new_zeros(k)]).long()
            elif self.subtyping:
                inst, pseudo = h[top], h.new_zeros(k).long()
            else:
                continue
            total = total + self.instance_loss_fn(classifier(inst), pseudo)
        return total / self.n_classes if self.subtyping else total


@register("clam_sb")
class CLAMSingleBranch(_CLAM):
    """CLAM-SB: one attention branch, one bag classifier ``Linear(512, C)``."""

    @staticmethod
    def _branches(n_classes: int) -> int:
        return 1

    def _build_classifier(self, embed_dim: int, n_classes: int) -> None:
        self.classifier = nn.Linear(embed_dim, n_classes)

    def forward(self, x: Tensor, mask: Tensor | None = None, coords: Tensor | None = None):
        h, attn, pooled = self._pool(x, mask)
        logits = self.classifier(pooled[:, 0])
        extra = {"h": h, "attention": attn, "mask": full_mask(x, mask)}
        return MILOutput(logits, attn[:, 0], extra)


@register("clam_mb")
class CLAMMultiBranch(_CLAM):
    """CLAM-MB: one attention branch and one ``Linear(512, 1)`` bag classifier per class."""

    @staticmethod
    def _branches(n_classes: int) -> int:
        return n_classes

    def _build_classifier(self, embed_dim: int, n_classes: int) -> None:
        self.classifiers = nn.ModuleList(nn.Linear(embed_dim, 1) for _ in range(n_classes))

    def forward(self, x: Tensor, mask: Tensor | None = None, coords: Tensor | None = None):
        h, attn, pooled = self._pool(x, mask)
        logits = torch.cat([clf(pooled[:, c]) for c, clf in enumerate(self.classifiers)], dim=1)
        extra = {"h": h, "attention": attn, "mask": full_mask(x, mask)}
        return MILOutput(logits, scores_for_predicted_class(attn, logits), extra)
