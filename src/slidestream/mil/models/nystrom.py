"""Nyström self-attention (Xiong et al., AAAI 2021), the attention TransMIL uses.

Full softmax attention over ``n`` tiles costs ``O(n²)``; Nyström approximates the ``n × n``
softmax matrix through ``m`` landmarks (segment means of the queries and keys):

    ``softmax(QKᵀ) ≈ softmax(Q K̃ᵀ) · pinv(softmax(Q̃ K̃ᵀ)) · softmax(Q̃ Kᵀ)``

so the cost is ``O(n·m)``. The pseudo-inverse is the iterative Moore–Penrose scheme of the paper
(6 iterations). Details follow the implementation TransMIL imports (lucidrains'
``nystrom-attention``, no-mask path): the sequence is zero-padded *at the front* to a multiple of
``m``, the padding tokens take part in the landmark means and the softmaxes, a depthwise
convolution over the value sequence (kernel 33) is added as a residual, and the last ``n``
outputs are kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def iterative_pinv(a: Tensor, iters: int = 6) -> Tensor:
    """Moore–Penrose pseudo-inverse of the (row-stochastic) matrices ``a (..., m, m)``.

    ``Z₀ = aᵀ / (max row-sum · max column-sum)`` (maxima over the whole tensor, as in the
    reference), then ``Z ← ¼ Z (13I − aZ(15I − aZ(7I − aZ)))``: a third-order Newton–Schulz
    iteration that converges for this start and needs only matrix products.
    """
    abs_a = a.abs()
    z = a.transpose(-1, -2) / (abs_a.sum(dim=-1).max() * abs_a.sum(dim=-2).max())
    eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
    for _ in range(iters):
        az = a @ z
        z = 0.25 * z @ (13 * eye - az @ (15 * eye - az @ (7 * eye - az)))
    return z


@dataclass
class NystromFactors:
    """The three factors of the approximate attention ``A ≈ attn1 · attn2⁺ · attn3`` per head.

    Kept so that products with ``A`` can be formed in ``O(n·m)`` without the ``n × n`` matrix.
    ``pad`` is the number of zero tokens prepended before the ``n`` real ones.
    """

    attn1: Tensor  # (B, H, n + pad, m)
    attn2_inv: Tensor  # (B, H, m, m)
    attn3: Tensor  # (B, H, m, n + pad)
    pad: int

    def left_multiply(self, v: Tensor) -> Tensor:
        """``v · A`` for row vectors ``v (B, n)`` over the real tokens, averaged over heads."""
        v = F.pad(v, (self.pad, 0)).unsqueeze(1).unsqueeze(2)  # (B, 1, 1, n + pad)
        out = ((v @ self.attn1) @ self.attn2_inv) @ self.attn3
        return out[:, :, 0, self.pad :].mean(dim=1)

    def row(self, index: int) -> Tensor:
        """Head-averaged attention of token ``index`` over all real tokens, ``(B, n)``."""
        b, n = self.attn1.shape[0], self.attn1.shape[2] - self.pad
        one_hot = self.attn1.new_zeros(b, n)
        one_hot[:, index] = 1.0
        return self.left_multiply(one_hot)


class NystromAttention(nn.Module):
    """Multi-head Nyström attention; optionally also returns the attention factors."""

    def __init__(
        self,
        dim: int,
        heads: int = 8,
        dim_head: int = 64,
        num_landmarks: int = 256,
        pinv_iterations: int = 6,
        residual_kernel: int | None = 33,
        dropout: float = 0.0,
    ):
        super().__init__()
        inner = heads * dim_head
        self.heads, self.dim_head = heads, dim_head
        self.num_landmarks = num_landmarks
        self.pinv_iterations = pinv_iterations
        self.scale = dim_head**-0.5
        self.to_qkv = nn.Linear(dim, 3 * inner, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, dim), nn.Dropout(dropout))
        self.res_conv = (
            nn.Conv2d(
                heads,
                heads,
                (residual_kernel, 1),
                padding=(residual_kernel // 2, 0),
                groups=heads,
                bias=False,
            )
            if residual_kernel
            else None
        )

    def forward(
        self, x: Tensor, keep_factors: bool = False
    ) -> tuple[Tensor, NystromFactors | None]:
        """``x (B, n, dim)`` → ``(out (B, n, dim), factors or None)``."""
        b, n, _ = x.shape
        m = self.num_landmarks
        pad = (m - n % m) % m
        x = F.pad(x, (0, 0, pad, 0))
        q, k, v = (
            t.reshape(b, n + pad, self.heads, self.dim_head).transpose(1, 2)
            for t in self.to_qkv(x).chunk(3, dim=-1)
        )
        q = q * self.scale
        seg = math.ceil(n / m)  # tokens per landmark; n + pad == m * seg
        q_land = q.reshape(b, self.heads, m, seg, self.dim_head).mean(dim=3)
        k_land = k.reshape(b, self.heads, m, seg, self.dim_head).mean(dim=3)
        attn1 = torch.softmax(q @ k_land.transpose(-1, -2), dim=-1)
        attn2_inv = iterative_pinv(
            torch.softmax(q_land @ k_land.transpose(-1, -2), dim=-1), self.pinv_iterations
        )
        attn3 = torch.softmax(q_land @ k.transpose(-1, -2), dim=-1)
        out = (attn1 @ attn2_inv) @ (attn3 @ v)
        if self.res_conv is not None:
            out = out + self.res_conv(v)
        out = out.transpose(1, 2).reshape(b, n + pad, self.heads * self.dim_head)
        out = self.to_out(out)[:, -n:]
        factors = NystromFactors(attn1, attn2_inv, attn3, pad) if keep_factors else None
        return out, factors
