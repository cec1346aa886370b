# ruff: noqa: N803, N806  (A, B, C, Δ keep the names of the Mamba-2 paper and mamba_ssm)
"""Mamba-2 block (Dao & Gu, 2024) in plain torch, with ``mamba_ssm``'s parameter names.

Parameter names and shapes follow ``mamba_ssm.modules.mamba2.Mamba2`` (``in_proj``, ``conv1d``,
``dt_bias``, ``A_log``, ``D``, ``norm``, ``out_proj``) so that released COBRA checkpoints load
into it unchanged. Only the non-fused semantics are implemented: no ``d_ssm < d_inner`` split, no
MLP side branch, no inference cache — a slide encoder sees the whole bag at once.

The model is causal: position ``t`` sees tiles ``≤ t`` (through the depthwise conv and the scan).
Padding a bag at the *end* therefore leaves every real position untouched, which is how batches of
slides with different tile counts are formed.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from slidestream.slide_encoders.ssd import fused_scan_available, ssd_scan

__all__ = ["GatedRMSNorm", "Mamba2"]


class GatedRMSNorm(nn.Module):
    """``RMSNorm(y · SiLU(z))`` per group of channels (``norm_before_gate=False`` in mamba_ssm)."""

    def __init__(self, dim: int, group_size: int, eps: float = 1e-5) -> None:
        super().__init__()
        if dim % group_size:
            raise ValueError(f"dim={dim} is not a multiple of group_size={group_size}")
        self.group_size = group_size
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, y: Tensor, z: Tensor) -> Tensor:
        gated = y * F.silu(z)
        grouped = gated.unflatten(-1, (-1, self.group_size))
        scale = torch.rsqrt(grouped.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return (grouped * scale).flatten(-2) * self.weight


class Mamba2(nn.Module):
    """One Mamba-2 mixer: input projection, causal conv, SSD scan, gated RMSNorm, output projection.

    Defaults are mamba_ssm's (``d_conv=4, expand=2, headdim=64, ngroups=1, chunk_size=256``);
    COBRA passes ``d_state=128``.
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 128,
        d_conv: int = 4,
        expand: int = 2,
        headdim: int = 64,
        ngroups: int = 1,
        chunk_size: int = 256,
        A_init_range: tuple[float, float] = (1.0, 16.0),
        dt_min: float = 1e-3,
        dt_max: float = 0.1,
        dt_init_floor: float = 1e-4,
        bias: bool = False,
        conv_bias: bool = True,
    ) -> None:
        super().__init__()
        self.d_inner = expand * d_model
        if self.d_inner % headdim:
            raise ValueError(
                f"expand*d_model={self.d_inner} is not a multiple of headdim={headdim}"
            )
        self.d_state, self.d_conv, self.headdim = d_state, d_conv, headdim
        self.ngroups, self.chunk_size = ngroups, chunk_size
        self.nheads = self.d_inner // headdim
        conv_dim = self.d_inner + 2 * ngroups * d_state

        self.in_proj = nn.Linear(d_model, self.d_inner + conv_dim + self.nheads, bias=bias)
        self.conv1d = nn.Conv1d(
            conv_dim, conv_dim, d_conv, groups=conv_dim, padding=d_conv - 1, bias=conv_bias
        )
        # Δ starts log-uniform in [dt_min, dt_max]; dt_bias stores its inverse softplus.
        dt = torch.exp(
            torch.rand(self.nheads) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        ).clamp(min=dt_init_floor)
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))
        low, high = A_init_range
        self.A_log = nn.Parameter(torch.log(torch.empty(self.nheads).uniform_(low, high)))
        self.D = nn.Parameter(torch.ones(self.nheads))
        self.norm = GatedRMSNorm(self.d_inner, group_size=self.d_inner // ngroups)
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias)

    def forward(self, u: Tensor) -> Tensor:
        """``u (b, T, d_model) -> (b, T, d_model)``."""
        length = u.shape[1]
        gs = self.ngroups * self.d_state
        z, xbc, dt = torch.split(
            self.in_proj(u), [self.d_inner, self.d_inner + 2 * gs, self.nheads], dim=-1
        )
        xbc = F.silu(self.conv1d(xbc.transpose(1, 2))[..., :length].transpose(1, 2))
        x, B, C = torch.split(xbc, [self.d_inner, gs, gs], dim=-1)
        x = x.unflatten(-1, (self.nheads, self.headdim))
        B = B.unflatten(-1, (self.ngroups, self.d_state))
        C = C.unflatten(-1, (self.ngroups, self.d_state))
        delta = F.softplus(dt + self.dt_bias)
        A = -torch.exp(self.A_log.float()).to(u.dtype)
        y = ssd_scan(x, delta, A, B, C, self.chunk_size)
        y = y + x * self.D[:, None]
        y = self.norm(y.flatten(-2), z)
        return self.out_proj(y)

    def uses_fused_kernel(self, device: torch.device) -> bool:
        """True when ``forward`` on ``device`` runs mamba_ssm's kernel instead of torch SSD."""
        return fused_scan_available(device)
