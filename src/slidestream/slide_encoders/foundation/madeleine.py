"""MADELEINE (Jaume et al., ECCV 2024): multi-head gated ABMIL slide encoder (H&E branch).

``encode_he``: a shared MLP (``pre_attn``: 512→512→512→512·heads, LayerNorm + GELU each) embeds
the tiles; the wide embedding is split into heads *strided* (``'b t (e c) -> b t e c'``: head c
gets channels c, c+heads, ... [code quirk]); each head pools with its own gated attention
(softmax over tiles); the pooled heads, flattened in ``(e, c)`` order, go through ``projector``
to 512-d. ``token_projector`` is only used in pre-training but is in the checkpoint.

The architecture comes from the release's ``model_config.json`` when it sits next to
``model.pt`` (``patch_embedding_dim``, ``wsi_encoder_hidden_dim``, ``n_heads``, ``activation``);
the defaults are the pre-training script's (which gives 4,996,740 parameters).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from slidestream.slide_encoders.cobra import GatedAttention
from slidestream.slide_encoders.foundation.spec import (
    InputRequirement,
    SlideEncoderSpec,
    SlideInput,
)

__all__ = ["SPECS", "Madeleine"]

_ACTIVATIONS = ("softmax", "sigmoid", "relu", "leaky_relu")


class _Embedder(nn.Module):
    def __init__(self, in_dim: int, hidden: int, n_heads: int, attn_hidden: int) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        for d_in, d_out in ((in_dim, hidden), (hidden, hidden), (hidden, hidden * n_heads)):
            blocks += [nn.Linear(d_in, d_out), nn.LayerNorm(d_out), nn.GELU(), nn.Dropout(0.1)]
        self.pre_attn = nn.Sequential(*blocks)
        self.attn = nn.ModuleList(GatedAttention(hidden, attn_hidden, True) for _ in range(n_heads))


class Madeleine(nn.Module):
    """The MADELEINE slide model (``MADELEINE(config, stain_encoding=False)``)."""

    def __init__(self, patch_embedding_dim: int = 512, wsi_encoder_hidden_dim: int = 512,
                 n_heads: int = 4, activation: str = "softmax") -> None:
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation {activation!r} not in {_ACTIVATIONS}")
        self.n_heads, self.activation = n_heads, activation
        attn_hidden = 512  # hard-coded in the reference (attention_params['hidden_dim'])
        self.wsi_embedders = _Embedder(patch_embedding_dim, wsi_encoder_hidden_dim, n_heads, attn_hidden)
        self.token_projector = nn.Linear(attn_hidden * n_heads, 128)
        self.projector = nn.Linear(attn_hidden * n_heads, attn_hidden)

    def _activate(self, scores: Tensor) -> Tensor:
        if self.activation == "softmax":
            return torch.softmax(scores, dim=0)
        if self.activation == "sigmoid":
            return torch.sigmoid(scores)
        return F.relu(scores) if self.activation == "relu" else F.leaky_relu(scores)

    def attention(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """Per-head attention ``(N, heads)`` and head embeddings ``(N, e, heads)``."""
        emb = self.wsi_embedders.pre_attn(features).unflatten(-1, (-1, self.n_heads))
        att = torch.stack(
            [self._activate(head(emb[..., i])) for i, head in enumerate(self.wsi_embedders.attn)],
            dim=-1,
        )
        return att, emb

    def embed(self, slide: SlideInput) -> Tensor:
        att, emb = self.attention(slide.features)
        pooled = (emb * att[:, None, :]).sum(0)  # (e, heads)
        return self.projector(pooled.reshape(-1))


SPECS = (
    SlideEncoderSpec(
        name="madeleine",
        family="madeleine",
        description="MADELEINE multi-head gated ABMIL (H&E branch, encode_he)",
        embed_dim=512,
        requirement=InputRequirement(
            ("conch-v1", "conch_v1", "conch"), 512, 1.0, 256,
            note="CONCH v1 image embedding without projection, 256-px tiles at 10x "
            "(MADELEINE's extractor feeds CONCH 224 px; TRIDENT feeds 448 px)",
        ),
        expected_params=4_996_740,
        published_params=3_200_000,
        published_source="lazyslide model card (3.2M; disagrees with the pre-training config)",
        builder=lambda **cfg: Madeleine(**cfg),
        hf_repo="MahmoodLab/madeleine",
        weight_files=("model.pt",),
        license="CC-BY-NC-ND-4.0",
        gated=True,
        default_precision="bf16",
        config_file="model_config.json",
        config_keys=("patch_embedding_dim", "wsi_encoder_hidden_dim", "n_heads", "activation"),
        notes="Trained on breast slides at 10x; architecture read from model_config.json.",
    ),
)
