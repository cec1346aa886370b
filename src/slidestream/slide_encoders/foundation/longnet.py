"""LongNet dilated attention (torchscale, as used by Prov-GigaPath), in plain torch.

The reference ``DilatedAttention`` only runs with flash-attn (or xformers on older GPUs): each
branch needs the attention output *and* the log-sum-exp (lse) of the scaled logits, to merge the
branches. This module computes both exactly in torch, query block by query block so memory stays
``heads x block x keys``, and reproduces the reference's bookkeeping [code quirk]s:

- for each (segment length ``sl``, dilation ``r``) branch, ``sl`` is clipped to the sequence
  length ``L`` and the sequence is zero-padded to a multiple of ``sl``; each segment is zero-padded
  again to a multiple of ``r``. The padding is *zero keys and values* that do enter the softmax
  (logit 0), exactly as the flash kernel sees them;
- within a segment, head group ``g`` (heads ``g*H/r .. (g+1)*H/r - 1``) attends among positions
  ``g, g+r, g+2r, ...`` of the segment only;
- segments are re-joined at their padded length before truncation to ``L``;
- positions a branch does not cover get lse ``-1e8``; branches are merged per query and head with
  weights ``softmax`` over branches of their lse.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["DilatedAttention", "LongNetEncoder", "attention_with_lse", "dilated_attention"]

_NOT_COVERED = -1e8
QUERY_BLOCK = 1024


def attention_with_lse(q: Tensor, k: Tensor, v: Tensor, block: int = QUERY_BLOCK) -> tuple[Tensor, Tensor]:
    """``softmax(q kᵀ/√d) v`` and ``logsumexp(q kᵀ/√d)`` for ``(..., Lq, d)`` inputs, in fp32.

    Queries are processed in blocks of ``block`` so a 10k-tile slide never materialises the full
    ``L x L`` logits of all heads at once.
    """
    scale = q.shape[-1] ** -0.5
    outs, lses = [], []
    for start in range(0, q.shape[-2], block):
        logits = (q[..., start : start + block, :].float() @ k.float().transpose(-1, -2)) * scale
        lse = torch.logsumexp(logits, dim=-1)
        outs.append(torch.exp(logits - lse[..., None]) @ v.float())
        lses.append(lse)
    return torch.cat(outs, dim=-2), torch.cat(lses, dim=-1)


def _branch(q: Tensor, k: Tensor, v: Tensor, sl: int, r: int) -> tuple[Tensor, Tensor]:
    """One (segment, dilation) branch: output ``(B, L, H, d)`` and lse ``(B, L, H)``."""
    b, length, heads, d = q.shape
    if heads % r:
        raise ValueError(f"{heads} heads are not divisible by dilation ratio {r}")
    sl = min(sl, length)
    n_seg = math.ceil(length / sl)
    seg = math.ceil(sl / r) * r  # segment length after padding to a multiple of r

    def segments(x: Tensor) -> Tensor:
        x = F.pad(x, (0, 0, 0, 0, 0, n_seg * sl - length))  # zero tokens to a multiple of sl
        x = x.reshape(b * n_seg, sl, heads, d)
        return F.pad(x, (0, 0, 0, 0, 0, seg - sl))  # and each segment to a multiple of r

    qs, ks, vs = segments(q), segments(k), segments(v)
    out = q.new_zeros((b * n_seg, seg, heads, d), dtype=torch.float32)
    lse = q.new_full((b * n_seg, seg, heads), _NOT_COVERED, dtype=torch.float32)
    group = heads // r
    for g in range(r):
        hs = slice(g * group, (g + 1) * group)
        q_g, k_g, v_g = (x[:, g::r, hs].transpose(1, 2) for x in (qs, ks, vs))  # (B*n, h, l, d)
        o, s = attention_with_lse(q_g, k_g, v_g)
        out[:, g::r, hs] = o.transpose(1, 2)
        lse[:, g::r, hs] = s.transpose(1, 2)
    # segments are concatenated at their padded length before truncating to L, as the reference
    # does; positions only shift when a segment length is not a multiple of r and there are
    # several segments (185363 tiles at r=8), and then the reference shifts them too [code quirk]
    out = out.reshape(b, n_seg * seg, heads, d)[:, :length]
    lse = lse.reshape(b, n_seg * seg, heads)[:, :length]
    return out, lse


def dilated_attention(
    q: Tensor, k: Tensor, v: Tensor, segment_lengths: Sequence[int], dilated_ratios: Sequence[int]
) -> Tensor:
    """LongNet attention of ``(B, L, H, d)`` projections → ``(B, L, H*d)`` (fp32)."""
    outs, lses = zip(
        *(_branch(q, k, v, sl, r) for sl, r in zip(segment_lengths, dilated_ratios, strict=True)),
        strict=True,
    )
    weights = torch.softmax(torch.stack(lses), dim=0)  # over branches, per query and head
    out = (torch.stack(outs) * weights[..., None]).sum(0)
    return out.flatten(2)


class DilatedAttention(nn.Module):
    """torchscale ``DilatedAttention`` with ``subln`` (``inner_attn_ln`` before ``out_proj``)."""

    def __init__(self, dim: int, heads: int, segment_lengths: Sequence[int],
                 dilated_ratios: Sequence[int], eps: float = 1e-5) -> None:
        super().__init__()
        self.heads = heads
        self.segment_lengths, self.dilated_ratios = list(segment_lengths), list(dilated_ratios)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.q_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)
        self.inner_attn_ln = nn.LayerNorm(dim, eps=eps)

    def forward(self, x: Tensor) -> Tensor:
        split = lambda t: t.unflatten(-1, (self.heads, -1))  # noqa: E731
        q, k, v = split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x))
        attn = dilated_attention(q, k, v, self.segment_lengths, self.dilated_ratios).type_as(x)
        return self.out_proj(self.inner_attn_ln(attn))


class _FFN(nn.Module):
    def __init__(self, dim: int, hidden: int, eps: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.ffn_layernorm = nn.LayerNorm(hidden, eps=eps)

    def forward(self, x: Tensor) -> Tensor:
        h = F.gelu(self.fc1(x).float()).type_as(x)
        return self.fc2(self.ffn_layernorm(h))


class _Layer(nn.Module):
    def __init__(self, dim: int, heads: int, hidden: int, segments: Sequence[int],
                 ratios: Sequence[int], eps: float) -> None:
        super().__init__()
        self.self_attn = DilatedAttention(dim, heads, segments, ratios, eps)
        self.self_attn_layer_norm = nn.LayerNorm(dim, eps=eps)
        self.ffn = _FFN(dim, hidden, eps)
        self.final_layer_norm = nn.LayerNorm(dim, eps=eps)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.self_attn(self.self_attn_layer_norm(x))
        return x + self.ffn(self.final_layer_norm(x))


class LongNetEncoder(nn.Module):
    """torchscale ``Encoder`` (pre-norm, subln, final ``layer_norm``), no token embedding."""

    def __init__(self, dim: int = 768, depth: int = 12, heads: int = 16, hidden: int = 3072,
                 segment_lengths: Sequence[int] = (1024, 5792, 32768, 185363, 1048576),
                 dilated_ratios: Sequence[int] = (1, 2, 4, 8, 16), eps: float = 1e-5) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            _Layer(dim, heads, hidden, segment_lengths, dilated_ratios, eps) for _ in range(depth)
        )
        self.layer_norm = nn.LayerNorm(dim, eps=eps)

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """``(encoder_out, encoder_states)``; states[0] is the input, states[i] layer i's output."""
        states = [x]
        for layer in self.layers:
            x = layer(x)
            states.append(x)
        return self.layer_norm(x), states
