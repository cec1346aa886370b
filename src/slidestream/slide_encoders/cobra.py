"""COBRA slide encoder (Lenz et al., CVPR 2025): projections per patch encoder, Mamba-2, attention.

A bag of tile features from one or more patch encoders ("foundation models", FMs) is projected by a
small MLP per FM into a shared width ``D`` (several FMs of the same tiles are averaged), mixed along
the tile sequence by Mamba-2 layers, and scored by multi-head gated attention. The slide embedding is
the attention-weighted mean of the *input* tile features of one FM (the reference pools the raw
features, not the hidden states), so it lives in that FM's space.

Module and parameter names follow ``KatherLab/COBRA`` so released weights load with a key rename
only (``embed.<dim>`` → ``embed.<encoder name>``, see :mod:`.cobra_weights`). Two [code quirk]s are
kept for that reason: the unused ``mamba_enc.norm`` and the *strided* channel split across heads.

Bags of different lengths are padded at the end and masked: Mamba-2 is causal, so trailing padding
never reaches real tiles, and masked tiles get zero attention.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from slidestream.errors import ConfigError
from slidestream.slide_encoders.mamba2 import Mamba2

__all__ = ["Cobra", "CobraConfig", "cobra_i_config", "cobra_ii_config", "embed"]

Bag = Mapping[str, Tensor]


@dataclass
class CobraConfig:
    """Architecture of a :class:`Cobra`; stored inside slidestream checkpoints.

    ``input_dims`` maps patch-encoder name → feature dimension, one input projection each.
    Defaults are the reference constructor's; ``headdim`` and ``chunk_size`` are mamba_ssm's.
    """

    input_dims: dict[str, int]
    embed_dim: int = 768
    num_heads: int = 8
    layers: int = 2
    dropout: float = 0.25
    att_dim: int = 96
    d_state: int = 128
    headdim: int = 64
    chunk_size: int = 256
    embed_dropout: float = 0.25

    def __post_init__(self) -> None:
        if not self.input_dims:
            raise ConfigError(None, "input_dims: at least one patch encoder is required")
        for name in self.input_dims:
            if not name or "." in name:
                raise ConfigError(
                    None, f"input_dims: encoder name {name!r} must be non-empty, no '.'"
                )
        if self.embed_dim % self.num_heads:
            raise ConfigError(None, f"embed_dim={self.embed_dim} not divisible by num_heads")
        if (2 * self.embed_dim) % self.headdim:
            raise ConfigError(None, f"2*embed_dim={2 * self.embed_dim} not divisible by headdim")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CobraConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(None, f"unknown CobraConfig keys: {sorted(unknown)}")
        return cls(**{**data, "input_dims": dict(data["input_dims"])})


def cobra_i_config(input_dims: Mapping[str, int] | None = None) -> CobraConfig:
    """COBRA I as released (2 Mamba layers, 8 heads, att_dim 96); names default to the FMs."""
    dims = input_dims or {"ctranspath": 768, "uni": 1024, "virchow2": 1280, "h-optimus-0": 1536}
    return CobraConfig(dict(dims), layers=2, num_heads=8, att_dim=96, dropout=0.25)


def cobra_ii_config(input_dims: Mapping[str, int] | None = None) -> CobraConfig:
    """COBRA II as released (1 Mamba layer, 4 heads, att_dim 256, dropout 0.2)."""
    dims = input_dims or {"conch": 512, "uni": 1024, "virchow2": 1280, "h-optimus-0": 1536}
    return CobraConfig(dict(dims), layers=1, num_heads=4, att_dim=256, dropout=0.2)


class InputProjection(nn.Module):
    """``LayerNorm → Linear(d_in, D) → Dropout → SiLU → Linear(D, D)`` (reference ``Embed``)."""

    def __init__(self, d_in: int, dim: int, dropout: float) -> None:
        super().__init__()
        self.head = nn.Sequential(
            nn.LayerNorm(d_in),
            nn.Linear(d_in, dim),
            nn.Dropout(dropout),
            nn.SiLU(),
            nn.Linear(dim, dim),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.head(x)


class MambaEncoder(nn.Module):
    """``Linear+GELU+Dropout``, pre-norm residual Mamba-2 layers, a final ``Linear``."""

    def __init__(self, cfg: CobraConfig) -> None:
        super().__init__()
        dim = cfg.embed_dim
        self._fc1 = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Dropout(cfg.dropout))
        self.layers = nn.ModuleList(
            nn.Sequential(
                nn.LayerNorm(dim),
                Mamba2(dim, d_state=cfg.d_state, headdim=cfg.headdim, chunk_size=cfg.chunk_size),
            )
            for _ in range(cfg.layers)
        )
        self.norm = nn.LayerNorm(dim)  # in the reference state dict but never applied [code quirk]
        self.classifier = nn.Linear(dim, dim)
        for module in self.modules():  # the reference re-initialises every Linear, Mamba's included
            if isinstance(module, nn.Linear):
                nn.init.xavier_normal_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, h: Tensor) -> Tensor:
        h = self._fc1(h)
        for layer in self.layers:
            h = h + layer(h)
        return self.classifier(h)


class GatedAttention(nn.Module):
    """Gated ABMIL scorer (Ilse et al.): ``w_c · (tanh(W_a h) ⊙ σ(W_b h))``, raw scores out."""

    def __init__(self, d_in: int, hidden: int, dropout: bool) -> None:
        super().__init__()
        extra = [nn.Dropout(0.25)] if dropout else []  # the reference hard-codes 0.25 here
        self.attention_a = nn.Sequential(nn.Linear(d_in, hidden), nn.Tanh(), *extra)
        self.attention_b = nn.Sequential(nn.Linear(d_in, hidden), nn.Sigmoid(), *extra)
        self.attention_c = nn.Linear(hidden, 1)

    def forward(self, h: Tensor) -> Tensor:
        return self.attention_c(self.attention_a(h) * self.attention_b(h)).squeeze(-1)


class Cobra(nn.Module):
    """The COBRA encoder. Inputs are ``{encoder name: (B, N, d_name)}`` for the same ``N`` tiles."""

    def __init__(self, config: CobraConfig) -> None:
        super().__init__()
        self.config = config
        dim = config.embed_dim
        self.embed = nn.ModuleDict(
            {
                name: InputProjection(d, dim, config.embed_dropout)
                for name, d in config.input_dims.items()
            }
        )
        self.mamba_enc = MambaEncoder(config)
        self.norm = nn.LayerNorm(dim)
        self.attn = nn.ModuleList(
            GatedAttention(dim // config.num_heads, config.att_dim, config.dropout > 0)
            for _ in range(config.num_heads)
        )

    def project(self, bag: Bag) -> Tensor:
        """Per-FM projections of the same tiles, averaged with equal weight → ``(B, N, D)``."""
        if not bag:
            raise ValueError("empty bag: pass at least one encoder's features")
        unknown = set(bag) - set(self.embed)
        if unknown:
            raise KeyError(
                f"no input projection for {sorted(unknown)}; model has {sorted(self.embed)}"
            )
        projected = [self.embed[name](x) for name, x in bag.items()]
        return torch.stack(projected).mean(0) if len(projected) > 1 else projected[0]

    def attention_scores(self, h: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Raw scores ``(B, N)`` (masked tiles at ``-inf``) and the hidden states ``(B, N, D)``."""
        hidden = self.norm(self.mamba_enc(h))
        c = self.config.num_heads
        # 'b t (e c) -> b t e c': head i sees channels i, i+c, i+2c, ... [code quirk]
        split = hidden.unflatten(-1, (-1, c))
        scores = torch.stack([head(split[..., i]) for i, head in enumerate(self.attn)]).mean(0)
        if mask is not None:
            scores = scores.masked_fill(~mask.bool(), float("-inf"))
        return scores, hidden

    def attention(self, bag: Bag, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Attention weights ``(B, N)`` (softmax over tiles) and hidden states ``(B, N, D)``."""
        scores, hidden = self.attention_scores(self.project(bag), mask)
        return torch.softmax(scores, dim=-1), hidden

    def forward(self, bag: Bag, mask: Tensor | None = None, aggregate: str | None = None) -> Tensor:
        """Slide embedding ``(B, d_aggregate)``: attention-weighted mean of one FM's input features.

        ``aggregate`` names that FM (default: the first in ``bag``). The pooled features may also
        come from an FM the model has no projection for, as in the reference's ``--feat_dir_a``:
        put them in ``bag`` under their name and exclude them from projection with :meth:`pool`.
        """
        name = aggregate or next(iter(bag))
        weights, _ = self.attention(self._projectable(bag), mask)
        return self.pool(weights, bag[name])

    def _projectable(self, bag: Bag) -> dict[str, Tensor]:
        """The part of ``bag`` the model can project; an error if that is nothing."""
        usable = {k: v for k, v in bag.items() if k in self.embed}
        if not usable:
            raise KeyError(f"no input projection for {sorted(bag)}; model has {sorted(self.embed)}")
        return usable

    @staticmethod
    def pool(weights: Tensor, features: Tensor) -> Tensor:
        """``Σ_n w_n x_n`` for ``weights (B, N)`` and ``features (B, N, d)``."""
        return torch.einsum("bn,bnd->bd", weights, features)


@torch.inference_mode()
def embed(
    model: Cobra,
    features: Mapping[str, np.ndarray | Tensor],
    *,
    aggregate: str | None = None,
    top_k: int | None = None,
    device: str | torch.device = "cpu",
    pool: Literal["features", "hidden"] = "features",
    return_attention: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """One slide (or patient: concatenate its slides' tiles) → float32 embedding ``(d_aggregate,)``.

    ``features`` maps encoder name → ``(N, d)`` for the same ``N`` tiles; encoders the model has no
    projection for are only usable as ``aggregate``. ``top_k`` reproduces the reference extraction
    script: keep the ``k`` most attended tiles and weight them by ``softmax`` of their attention —
    a softmax of probabilities, hence nearly uniform [code quirk]. ``pool="hidden"`` returns the
    attention-pooled Mamba hidden states ``(D,)`` instead — the space pre-training shapes.
    """
    if aggregate is None:
        aggregate = next(iter(features))
    bag = {
        k: torch.as_tensor(np.asarray(v), dtype=torch.float32, device=device)[None]
        for k, v in features.items()
    }
    n = bag[aggregate].shape[1]
    if n == 0:
        raise ValueError("cannot embed an empty slide (0 tiles)")
    model = model.to(device).eval()
    weights, hidden = model.attention(model._projectable(bag))
    values = hidden if pool == "hidden" else bag[aggregate]
    if top_k is not None:
        k = min(top_k, n)
        top, idx = torch.topk(weights[0], k)
        z = (torch.softmax(top, dim=0)[:, None] * values[0, idx]).sum(0)
    else:
        z = model.pool(weights, values)[0]
    out = z.float().cpu().numpy()
    if return_attention:
        return out, weights[0].float().cpu().numpy()
    return out
