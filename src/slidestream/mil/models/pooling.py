"""Mean- and max-pooling baselines: the bars every attention model has to clear.

Both score each tile with the same small instance network. Mean pooling averages the
*instance logits*, which equals classifying the mean embedding (the classifier is linear) and
gives every tile a score for free. Max pooling is CLAM's ``MIL_fc`` baseline: the bag takes the
logits of its single most convincing tile — for two classes the tile with the highest
probability of class 1, for more classes (``MIL_fc_mc``) the tile holding the highest
probability of any class. (Taking an independent max per class instead trains poorly: the
class-0 maximum of a positive bag sits on the same background tiles that negative bags push
up, and in our synthetic tests that variant got stuck in about half of the seeds.) Even so,
max pooling trains only through one tile per bag and can stay on its initial plateau: give it
``--min-epochs`` so early stopping does not end it there (on synthetic planted bags, one seed in
three still failed to leave the plateau within 12 epochs).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from slidestream.mil.models.base import (
    MILModel,
    MILOutput,
    full_mask,
    scores_for_predicted_class,
)
from slidestream.mil.models.registry import register


class _InstanceScorer(MILModel):
    """``Linear(D, E) → ReLU → Dropout → Linear(E, C)`` applied to every tile."""

    def __init__(self, in_dim: int, n_classes: int, embed_dim: int = 512, dropout: float = 0.25):
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(in_dim, embed_dim), nn.ReLU(), nn.Dropout(dropout))
        self.classifier = nn.Linear(embed_dim, n_classes)

    def instance_logits(self, x: Tensor) -> Tensor:
        return self.classifier(self.fc(x))  # (B, N, C)


@register("mean_pool")
class MeanPool(_InstanceScorer):
    """Bag logits = mean of the tile logits over real tiles."""

    def forward(self, x: Tensor, mask: Tensor | None = None, coords: Tensor | None = None):
        mask = full_mask(x, mask)
        inst = self.instance_logits(x)
        w = mask.unsqueeze(-1).to(inst.dtype)
        logits = (inst * w).sum(1) / w.sum(1).clamp_min(1.0)
        scores = scores_for_predicted_class(inst.transpose(1, 2), logits) * mask
        return MILOutput(logits, scores, {"instance_logits": inst})


@register("max_pool")
class MaxPool(_InstanceScorer):
    """Bag logits = the logits of the top tile; tile scores = probability of the predicted class."""

    def forward(self, x: Tensor, mask: Tensor | None = None, coords: Tensor | None = None):
        mask = full_mask(x, mask)
        inst = self.instance_logits(x)
        if inst.shape[-1] == 1:  # a single output (Cox risk): the highest one
            evidence, probs = inst[..., 0], inst
        else:
            probs = torch.softmax(inst, dim=-1)
            evidence = probs[..., 1] if inst.shape[-1] == 2 else probs.max(dim=-1).values
        top = evidence.masked_fill(~mask, float("-inf")).argmax(dim=1)
        logits = inst[torch.arange(inst.shape[0], device=x.device), top]
        scores = scores_for_predicted_class(probs.transpose(1, 2), logits) * mask
        return MILOutput(logits, scores, {"instance_logits": inst, "top_tile": top})
