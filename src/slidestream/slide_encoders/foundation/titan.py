"""TITAN (Ding et al., 2024; "TITAN-preview"): a ViT over the 2-D grid of CONCH v1.5 features.

Vision encoder only (the text tower is for zero-shot use and not needed for the embedding):
``patch_embed`` (Linear 768→768 + GELU) on each grid cell, a CLS token, 6 pre-norm blocks
(768, 12 heads, LN eps 1e-6, qkv with bias) whose attention carries a 2-D ALiBi bias, a final
``norm``, and two attentional poolers; the slide embedding is ``attn_pool_contrastive``'s single
query output (768-d) without ``proj`` (``encode_slide_from_patch_features``). ``attn_pool`` (128
queries) and ``proj`` are loaded (strict) but not needed for the embedding.

Grid construction [code quirk], as ``preprocess_features``: coordinates minus their per-axis
minimum, floor-divided by the level-0 tile size, index a dense ``[x, y]`` grid; tiles falling in
the same cell are *summed*; a cell whose feature vector is all zero counts as background and is
dropped (with a single slide). ALiBi: bias ``-slope_h · |cell_i - cell_j|`` (Euclidean, in grid
units) between foreground cells, 0 on the CLS row and column; slopes by the ALiBi rule for 12
heads. Checkpoint keys: the HF release prefixes them with ``vision_encoder.``; everything else
(text encoder, logit scale) is deliberately left out.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from slidestream.encoders.spec import KeyMap
from slidestream.slide_encoders.foundation.spec import (
    InputRequirement,
    SlideEncoderSpec,
    SlideInput,
)

__all__ = ["SPECS", "TitanVision", "alibi_slopes", "feature_grid"]


def alibi_slopes(n: int) -> list[float]:
    """ALiBi head slopes (Press et al.), with the interleaving rule for non-powers of two."""
    if math.log2(n).is_integer():
        p = 2 ** (-(2 ** -(math.log2(n) - 3)))
        return [p * p**i for i in range(n)]
    base = 2 ** math.floor(math.log2(n))
    return alibi_slopes(base) + alibi_slopes(2 * base)[0::2][: n - base]


def feature_grid(features: Tensor, coords: Tensor, tile_size: float) -> tuple[Tensor, Tensor]:
    """Foreground cell features ``(M, D)`` in row-major ``[x, y]`` order and their cells ``(M, 2)``."""
    cells = torch.div(coords - coords.min(0).values, tile_size, rounding_mode="floor").long()
    w = int(cells[:, 1].max()) + 1
    flat = cells[:, 0] * w + cells[:, 1]
    n_cells = (int(cells[:, 0].max()) + 1) * w
    grid = features.new_zeros((n_cells, features.shape[1])).index_add_(0, flat, features)
    keep = (grid != 0).any(dim=1)
    idx = keep.nonzero()[:, 0]
    return grid[idx], torch.stack([idx // w, idx % w], dim=1)


class _Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, bias: Tensor) -> Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        out = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class _Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class _Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = _Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = _Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor, bias: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x), bias)
        return x + self.mlp(self.norm2(x))


class _Blocks(nn.Module):
    """The reference's ``CustomSequential``: keys ``blocks.modules_list.{i}``."""

    def __init__(self, blocks: list[_Block]) -> None:
        super().__init__()
        self.modules_list = nn.ModuleList(blocks)


class _AttentionalPooler(nn.Module):
    def __init__(self, dim: int, heads: int, n_queries: int) -> None:
        super().__init__()
        self.query = nn.Parameter(torch.zeros(n_queries, dim))
        self.attn = nn.MultiheadAttention(dim, heads)
        self.ln_q = nn.LayerNorm(dim)
        self.ln_k = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        """``x (1, L, D)`` → ``(n_queries, D)``."""
        kv = self.ln_k(x[0])
        out, _ = self.attn(self.ln_q(self.query), kv, kv, need_weights=False)
        return out


class TitanVision(nn.Module):
    """TITAN's ``vision_encoder`` (ALiBi, parallel attentional pooling)."""

    def __init__(self, dim: int = 768, depth: int = 6, heads: int = 12, mlp_ratio: float = 4.0,
                 in_dim: int = 768, pooler_heads: int = 8, pooler_queries: int = 128) -> None:
        super().__init__()
        self.heads = heads
        self.patch_embed = nn.Sequential(nn.Linear(in_dim, dim), nn.GELU())
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.blocks = _Blocks([_Block(dim, heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.attn_pool = _AttentionalPooler(dim, pooler_heads, pooler_queries)
        self.attn_pool_contrastive = _AttentionalPooler(dim, pooler_heads, 1)
        self.proj = nn.Parameter(torch.zeros(dim, dim))

    def alibi(self, cells: Tensor) -> Tensor:
        """``(1, heads, 1+M, 1+M)`` bias: ``-slope · distance`` between cells, 0 for the CLS token."""
        dist = torch.cdist(cells.double(), cells.double(), compute_mode="donot_use_mm_for_euclid_dist").float()
        slopes = torch.tensor(alibi_slopes(self.heads), dtype=torch.float32)
        bias = torch.zeros(self.heads, len(cells) + 1, len(cells) + 1)
        bias[:, 1:, 1:] = -slopes[:, None, None] * dist[None]
        return bias[None].to(self.cls_token.device)

    def tokens(self, features: Tensor, coords: Tensor, tile_size: float) -> Tensor:
        """The normed token sequence ``(1, 1+M, D)`` of one slide."""
        cells_feat, cells = feature_grid(features, coords, tile_size)
        x = torch.cat([self.cls_token[0], self.patch_embed(cells_feat)])[None]
        bias = self.alibi(cells).to(x.dtype)
        for block in self.blocks.modules_list:
            x = block(x, bias)
        return self.norm(x)

    def embed(self, slide: SlideInput) -> Tensor:
        if slide.coords is None or slide.patch_size_level0 is None:
            raise ValueError("TITAN needs tile coordinates and the level-0 tile size")
        x = self.tokens(slide.features, slide.coords, slide.patch_size_level0)
        return self.attn_pool_contrastive(x)[0]


SPECS = (
    SlideEncoderSpec(
        name="titan",
        family="titan",
        description="TITAN vision encoder: ViT with 2-D ALiBi over the CONCH v1.5 feature grid",
        embed_dim=768,
        requirement=InputRequirement(
            ("conch-v1.5", "conch_v15", "conchv1_5"), 768, 0.5, 512, uses_coords=True,
            note="CONCH v1.5, 512-px tiles at 20x, non-overlapping, level-0 coordinates",
        ),
        expected_params=48_539_904,
        published_params=48_500_000,
        published_source="MIL-Lab README (48.5M, vision encoder)",
        builder=lambda **cfg: TitanVision(**cfg),
        hf_repo="MahmoodLab/TITAN",
        weight_files=("model.safetensors", "pytorch_model.bin"),
        key_map=KeyMap(select_prefix="vision_encoder."),
        license="CC-BY-NC-ND-4.0",
        gated=True,
        default_precision="fp16",
        notes="Text tower of the release not loaded (zero-shot only).",
    ),
)
