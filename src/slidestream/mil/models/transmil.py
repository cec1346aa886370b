"""TransMIL (Shao et al., NeurIPS 2021): self-attention between tiles plus a positional module.

``Linear → ReLU`` to 512 channels, pad the bag to a square number of tokens by *repeating its
first tiles*, prepend a CLS token, then ``TransLayer → PPEG → TransLayer → LayerNorm`` and
classify the CLS token. ``TransLayer`` is pre-norm Nyström attention with a residual and no
MLP; PPEG reshapes the tokens (row-major, in bag order) into a ``√N × √N`` image and adds
depthwise 7/5/3 convolutions to it — a conditional positional encoding.

Tile scores are the *attention rollout* (Abnar & Zuidema, ACL 2020) of the CLS token through
both layers, ``e_clsᵀ · Ã₂ · Ã₁`` with ``Ã = ½A + ½I`` (residual) and heads averaged; PPEG is
treated as identity. The last layer's CLS row alone does not localise evidence: after the first
layer every token already carries the bag's evidence, and on synthetic bags with planted
positive tiles the second-layer row ranked them last while the rollout ranks them first. The
product is formed from the Nyström factors in ``O(n·m)``. A tile duplicated by the square
padding gets the sum of its copies' scores. Like the
reference, the model ignores coordinates (tokens are in bag order). Padded batches are handled
by running each bag on its own: the reference has no masking, and square padding would
otherwise mix real and padding tokens.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from slidestream.mil.models.base import MILModel, MILOutput
from slidestream.mil.models.nystrom import NystromAttention, NystromFactors
from slidestream.mil.models.registry import register


class TransLayer(nn.Module):
    """``x + NystromAttention(LayerNorm(x))``."""

    def __init__(self, dim: int, heads: int, num_landmarks: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.attn = NystromAttention(
            dim,
            heads=heads,
            dim_head=dim // heads,
            num_landmarks=num_landmarks,
            pinv_iterations=6,
            residual_kernel=33,
            dropout=dropout,
        )

    def forward(self, x: Tensor) -> tuple[Tensor, NystromFactors]:
        out, factors = self.attn(self.norm(x), keep_factors=True)
        return x + out, factors


class PPEG(nn.Module):
    """Pyramid position encoding generator: ``t + DW7(t) + DW5(t) + DW3(t)`` on the token image."""

    def __init__(self, dim: int):
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv2d(dim, dim, k, padding=k // 2, groups=dim) for k in (7, 5, 3)
        )

    def forward(self, x: Tensor, side: int) -> Tensor:
        cls, tokens = x[:, :1], x[:, 1:]
        b, _, c = tokens.shape
        img = tokens.transpose(1, 2).reshape(b, c, side, side)
        img = img + sum(conv(img) for conv in self.convs)
        return torch.cat([cls, img.flatten(2).transpose(1, 2)], dim=1)


def cls_rollout(*layers: NystromFactors) -> Tensor:
    """CLS row of ``Ã_L ⋯ Ã₁`` (last layer first) with ``Ã = ½A + ½I``: ``(B, tokens)``."""
    last = layers[-1]
    b, n = last.attn1.shape[0], last.attn1.shape[2] - last.pad
    v = last.attn1.new_zeros(b, n)
    v[:, 0] = 1.0
    for factors in reversed(layers):
        v = 0.5 * factors.left_multiply(v) + 0.5 * v
    return v


@register("transmil")
class TransMIL(MILModel):
    """Two Nyström transformer layers with a PPEG in between, classified from the CLS token."""

    def __init__(
        self,
        in_dim: int,
        n_classes: int,
        dim: int = 512,
        heads: int = 8,
        num_landmarks: int | None = None,
        dropout: float = 0.1,
    ):
        super().__init__()
        landmarks = num_landmarks or dim // 2
        self.embed = nn.Sequential(nn.Linear(in_dim, dim), nn.ReLU())
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim))
        self.layer1 = TransLayer(dim, heads, landmarks, dropout)
        self.ppeg = PPEG(dim)
        self.layer2 = TransLayer(dim, heads, landmarks, dropout)
        self.norm = nn.LayerNorm(dim)
        self.classifier = nn.Linear(dim, n_classes)

    def forward(self, x: Tensor, mask: Tensor | None = None, coords: Tensor | None = None):
        if mask is None or bool(mask.all()):
            return self._forward_full(x)
        outs = [self._forward_full(x[b : b + 1, mask[b]]) for b in range(x.shape[0])]
        scores = x.new_zeros(mask.shape)
        for b, out in enumerate(outs):
            scores[b, mask[b]] = out.scores[0]
        return MILOutput(torch.cat([o.logits for o in outs]), scores)

    def _forward_full(self, x: Tensor) -> MILOutput:
        h = self.embed(x)
        n = h.shape[1]
        side = math.ceil(math.sqrt(n))
        extra_tokens = side * side - n
        h = torch.cat([h, h[:, :extra_tokens]], dim=1)
        h = torch.cat([self.cls_token.expand(h.shape[0], -1, -1), h], dim=1)
        h, factors1 = self.layer1(h)
        h = self.ppeg(h, side)
        h, factors2 = self.layer2(h)
        logits = self.classifier(self.norm(h)[:, 0])
        tile_row = cls_rollout(factors1, factors2)[:, 1:]
        scores = tile_row[:, :n].clone()
        scores[:, :extra_tokens] += tile_row[:, n:]
        return MILOutput(logits, scores)
