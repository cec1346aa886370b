# ruff: noqa: N803, N806  (A, B, C, Δ keep the names of the Mamba-2 paper and mamba_ssm)
"""The Mamba-2 state-space scan: a chunked (SSD) form and a step-by-step reference.

The recurrence per head is ``h_t = exp(Δ_t A) h_{t-1} + Δ_t x_t ⊗ B_t`` and ``y_t = h_t C_t``.
Run literally it is a Python loop over thousands of tiles. The state-space-duality form cuts the
sequence into chunks of ``Q`` steps: inside a chunk the output is a masked, decayed attention
(``C_l · B_s`` weighted by the decay between ``s`` and ``l``), and only the ``T/Q`` chunk states are
passed through the recurrence. Same function, mostly matrix products, so it is fast on a CPU.

``ssd_sequential`` is the literal recurrence. It is slow on purpose and exists so that tests can
prove the chunked form exact; never use it in a model.

Shapes: ``x (b, T, h, p)``, ``dt (b, T, h)`` (already positive: softplus applied), ``A (h,)``
(negative), ``B, C (b, T, g, n)`` with ``g`` groups shared by ``h/g`` consecutive heads each,
states ``(b, h, p, n)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

try:  # the fused kernel only helps on a GPU; on CPU the torch path below is the only one
    from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined as _fused_scan
except ImportError:  # pragma: no cover - depends on the machine
    _fused_scan = None

_SCORE_BUDGET = 1 << 24  # elements of intra-chunk scores materialised at once (64 MB in fp32)

__all__ = ["fused_scan_available", "segsum", "ssd_chunked", "ssd_scan", "ssd_sequential"]


def fused_scan_available(device: torch.device) -> bool:
    """Whether ``mamba_ssm``'s Triton kernel can run on ``device`` (importable and CUDA)."""
    return _fused_scan is not None and device.type == "cuda"


def segsum(a: Tensor) -> Tensor:
    """Segment sums ``out[..., i, j] = a[..., j+1] + ... + a[..., i]`` (``-inf`` above the diagonal).

    Built from a masked cumulative sum rather than ``cumsum[i] - cumsum[j]``: the difference of two
    large running sums loses the small segment sums that matter most (long sequences with small
    decays), the masked form adds only the terms that belong to each segment.
    """
    t = a.shape[-1]
    rows = a.unsqueeze(-1).expand(*a.shape, t)  # rows[..., k, j] = a_k
    strictly_lower = torch.tril(torch.ones(t, t, dtype=torch.bool, device=a.device), diagonal=-1)
    sums = torch.cumsum(rows.masked_fill(~strictly_lower, 0.0), dim=-2)
    lower = torch.tril(torch.ones(t, t, dtype=torch.bool, device=a.device), diagonal=0)
    return sums.masked_fill(~lower, float("-inf"))


def _heads_from_groups(t: Tensor, nheads: int) -> Tensor:
    """Broadcast group-shared ``B``/``C`` (``..., g, n``) to one copy per head (``..., h, n``)."""
    groups = t.shape[-2]
    if nheads % groups:
        raise ValueError(f"nheads={nheads} is not a multiple of ngroups={groups}")
    return t.repeat_interleave(nheads // groups, dim=-2)


def _scan_dtype(t: Tensor) -> torch.dtype:
    # Half precision cumulative decays drift quickly; the reference kernels also accumulate in fp32.
    return torch.float32 if t.dtype in (torch.float16, torch.bfloat16) else t.dtype


def ssd_chunked(
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    chunk_size: int,
    initial_state: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Chunked SSD scan; returns ``(y (b, T, h, p), final_state (b, h, p, n))``.

    Lengths that are not a multiple of ``chunk_size`` are padded at the end with ``dt = 0`` and
    ``x = 0``: a zero step neither decays nor feeds the state, and causality keeps it from touching
    earlier outputs, so padding changes nothing that is returned.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    out_dtype = x.dtype
    work = _scan_dtype(x)
    x, dt, A, B, C = (t.to(work) for t in (x, dt, A, B, C))
    b, length, h, p = x.shape
    n = B.shape[-1]
    pad = (-length) % chunk_size
    if pad:
        x = F.pad(x, (0, 0, 0, 0, 0, pad))
        dt = F.pad(dt, (0, 0, 0, pad))
        B = F.pad(B, (0, 0, 0, 0, 0, pad))
        C = F.pad(C, (0, 0, 0, 0, 0, pad))
    c, q = (length + pad) // chunk_size, chunk_size

    g = B.shape[-2]
    if h % g:
        raise ValueError(f"nheads={h} is not a multiple of ngroups={g}")
    r = h // g  # heads per group: B and C are shared by them, never copied per head
    xs = (x * dt.unsqueeze(-1)).reshape(b, c, q, g, r, p)  # Δ-weighted inputs
    a = (dt * A).reshape(b, c, q, g, r).permute(0, 3, 4, 1, 2)  # (b, g, r, c, q) log-decays
    Bc = B.reshape(b, c, q, g, n)
    Cc = C.reshape(b, c, q, g, n)
    a_cum = torch.cumsum(a, dim=-1)

    # 1. within each chunk: decayed, causally masked "attention" C_l·B_s. The (q × q) score
    # blocks are the only quadratic tensors, so they are built a few chunks at a time: a 20k-tile
    # slide would otherwise need GBs for them alone.
    step = max(1, _SCORE_BUDGET // (b * h * q * q))
    y_diag = torch.cat(
        [
            torch.einsum(
                "bgrcls,bcsgrp->bclgrp",
                torch.einsum("bclgn,bcsgn->bgcls", Cc[:, k : k + step], Bc[:, k : k + step])[
                    :, :, None
                ]
                * torch.exp(segsum(a[..., k : k + step, :])),
                xs[:, k : k + step],
            )
            for k in range(0, c, step)
        ],
        dim=1,
    )

    # 2. the state each chunk leaves behind when entered with a zero state
    to_end = torch.exp(a_cum[..., -1:] - a_cum)  # (b, g, r, c, q)
    states = torch.einsum("bcsgn,bgrcs,bcsgrp->bcgrpn", Bc, to_end, xs)

    # 3. pass states from chunk to chunk (a tiny scan of length c+1, again as a masked product)
    if initial_state is None:
        initial_state = torch.zeros(b, h, p, n, dtype=work, device=x.device)
    start = initial_state.to(work).reshape(b, 1, g, r, p, n)
    states = torch.cat([start, states], dim=1)
    chunk_decay = torch.exp(segsum(F.pad(a_cum[..., -1], (1, 0))))  # (b, g, r, c+1, c+1)
    states = torch.einsum("bgrzc,bcgrpn->bzgrpn", chunk_decay, states)
    entering, final = states[:, :-1], states[:, -1].reshape(b, h, p, n)

    # 4. contribution of the entering state to every position of the chunk
    y_off = torch.einsum("bclgn,bcgrpn,bgrcl->bclgrp", Cc, entering, torch.exp(a_cum))

    y = (y_diag + y_off).reshape(b, c * q, h, p)[:, :length]
    return y.to(out_dtype), final.to(out_dtype)


def ssd_sequential(
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    initial_state: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """The literal recurrence, one step at a time (test reference; O(T) Python iterations)."""
    b, length, h, p = x.shape
    n = B.shape[-1]
    Bh, Ch = _heads_from_groups(B, h), _heads_from_groups(C, h)
    state = (
        torch.zeros(b, h, p, n, dtype=x.dtype, device=x.device)
        if initial_state is None
        else initial_state.clone()
    )
    ys = []
    for t in range(length):
        keep = torch.exp(dt[:, t] * A)[..., None, None]  # (b, h, 1, 1)
        feed = (dt[:, t, :, None] * x[:, t]).unsqueeze(-1) * Bh[:, t].unsqueeze(-2)
        state = keep * state + feed
        ys.append(torch.einsum("bhpn,bhn->bhp", state, Ch[:, t]))
    y = torch.stack(ys, dim=1) if ys else x.new_zeros(b, 0, h, p)
    return y, state


def ssd_scan(x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, chunk_size: int) -> Tensor:
    """The scan a model should call: fused CUDA kernel when available, the torch SSD otherwise."""
    if fused_scan_available(x.device):  # pragma: no cover - needs a GPU and mamba_ssm
        return _fused_scan(x, dt, A, B, C, chunk_size=chunk_size)
    return ssd_chunked(x, dt, A, B, C, chunk_size)[0]
