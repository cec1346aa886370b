"""GenBio-PathFM (GenBio AI): a DINOv3-style ViT that encodes each colour channel separately.

Official construction (genbio-ai/genbio-pathfm: genbio_pathfm/model.py ``GenBio_PathFM_Inference``,
ZOO.md §3.11): ``VisionTransformer(img_size=224, patch_size=16, embed_dim=1536, depth=40,
num_heads=24, ffn_ratio=4, in_chans=1, n_storage_tokens=4, ffn_layer="swiglu64",
layerscale_init=1e-5, qkv_bias=False, proj_bias=True, ffn_bias=True)`` loaded strictly from
``model.pth`` (no prefix). Pieces, with the reference's key names:

* ``patch_embed.proj`` Conv2d(1, 1536, 16, stride 16); ``cls_token`` and 4 ``storage_tokens``
  are prepended; there is no absolute position table.
* RoPE (``rope_embed.periods``, 16 values stored in **bfloat16**): patch centres
  ``(k + 0.5) / H`` mapped to [-1, 1] separately per axis, angles ``2π·coord / period`` tiled to
  the head dimension, rotate-half applied to the patch tokens of q and k only. Quirk reproduced
  here: the coordinates, angles, sin and cos are computed in bfloat16, and q and k are cast to
  bfloat16 for the rotation and back afterwards, even in fp32 inference.
* 40 pre-norm blocks: LayerNorm eps 1e-6, qkv without bias, SDPA, LayerScale, SwiGLU FFN with
  separate ``w1`` (gate), ``w2`` (value), ``w3`` (out), hidden 4096.
* Final ``norm``. The RGB batch (B, 3, H, W) is reshaped to (3B, 1, H, W); the embedding is
  CLS(R) ‖ CLS(G) ‖ CLS(B) = 4608.

Preprocessing: ``Resize((224, 224))`` bilinear, mean (0.697, 0.575, 0.728), std (0.188, 0.240,
0.187); 224 px at 20× (TRIDENT). The training-only coordinate jitter/rescale is not part of
inference and is not implemented.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from slidestream.encoders.spec import EncoderSpec, ResizeRecipe

GENBIO_MEAN = (0.697, 0.575, 0.728)
GENBIO_STD = (0.188, 0.240, 0.187)


class RopeEmbed(nn.Module):
    """2-D RoPE tables (sin, cos) for an H×W patch grid, computed in ``dtype`` (bf16)."""

    def __init__(self, head_dim: int, base: float = 100.0, dtype: torch.dtype = torch.bfloat16):
        super().__init__()
        self.dtype = dtype
        exponents = 2 * torch.arange(head_dim // 4, dtype=dtype) / (head_dim // 2)
        self.register_buffer("periods", base**exponents, persistent=True)

    def forward(self, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
        # The buffer may have been cast to fp32 by ``.float()``; its values are bf16-exact, and
        # the computation runs in bf16 as in the reference.
        periods = self.periods.to(self.dtype)
        dd = {"device": periods.device, "dtype": self.dtype}
        coords_h = torch.arange(0.5, h, **dd) / h
        coords_w = torch.arange(0.5, w, **dd) / w
        coords = torch.stack(torch.meshgrid(coords_h, coords_w, indexing="ij"), dim=-1)
        coords = 2.0 * coords.flatten(0, 1) - 1.0  # (HW, 2) in [-1, 1]
        angles = 2 * math.pi * coords[:, :, None] / periods[None, None, :]
        angles = angles.flatten(1, 2).tile(2)  # (HW, head_dim)
        return torch.sin(angles), torch.cos(angles)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class RopeAttention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).unbind(2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))
        sin, cos = rope
        prefix = n - sin.shape[-2]

        def rotate(t: torch.Tensor) -> torch.Tensor:
            t16 = t.to(sin.dtype)
            patches = t16[:, :, prefix:]
            rotated = patches * cos + _rotate_half(patches) * sin
            return torch.cat((t16[:, :, :prefix], rotated), dim=-2).to(t.dtype)

        out = F.scaled_dot_product_attention(rotate(q), rotate(k), v)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class SwiGLU(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.w1 = nn.Linear(dim, hidden)
        self.w2 = nn.Linear(dim, hidden)
        self.w3 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w3(F.silu(self.w1(x)) * self.w2(x))


class LayerScale(nn.Module):
    def __init__(self, dim: int, init: float = 1e-5) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), init))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, hidden: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = RopeAttention(dim, heads)
        self.ls1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = SwiGLU(dim, hidden)
        self.ls2 = LayerScale(dim)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x), rope))
        return x + self.ls2(self.mlp(self.norm2(x)))


class _PatchEmbed(nn.Module):
    def __init__(self, dim: int, patch: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(1, dim, kernel_size=patch, stride=patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class GenBioPathFM(nn.Module):
    """Single-channel ViT; ``forward`` maps an RGB batch to CLS(R) ‖ CLS(G) ‖ CLS(B)."""

    def __init__(
        self,
        dim: int = 1536,
        depth: int = 40,
        heads: int = 24,
        patch: int = 16,
        storage_tokens: int = 4,
        ffn_ratio: float = 4.0,
    ) -> None:
        super().__init__()
        d = int(dim * ffn_ratio * 2 / 3)
        hidden = d + (-d % 64)  # "swiglu64": 2/3 of the MLP width, rounded up to 64
        self.patch_embed = _PatchEmbed(dim, patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.storage_tokens = nn.Parameter(torch.zeros(1, storage_tokens, dim))
        self.rope_embed = RopeEmbed(dim // heads)
        self.blocks = nn.ModuleList(Block(dim, heads, hidden) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
        nn.init.normal_(self.cls_token, std=0.02)
        nn.init.normal_(self.storage_tokens, std=0.02)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, H, W) → all tokens after the final norm: [CLS, storage×4, patches]."""
        grid = self.patch_embed(x)
        n, _, h, w = grid.shape
        tokens = torch.cat(
            (
                self.cls_token.expand(n, -1, -1),
                self.storage_tokens.expand(n, -1, -1),
                grid.flatten(2).transpose(1, 2),
            ),
            dim=1,
        )
        rope = self.rope_embed(h, w)
        for block in self.blocks:
            tokens = block(tokens, rope)
        return self.norm(tokens)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        cls = self.encode(x.reshape(b * 3, 1, h, w))[:, 0]
        return cls.reshape(b, 3 * cls.shape[-1])  # rows are (R, G, B) per image


def build_genbio(**overrides: Any) -> GenBioPathFM:
    """The reference configuration; ``overrides`` (``depth``) are for reduced-size tests."""
    return GenBioPathFM(**overrides)


SPECS: tuple[EncoderSpec, ...] = (
    EncoderSpec(
        name="genbio-pathfm",
        family="genbio",
        description="GenBio-PathFM, ViT-g/16 on single channels, RoPE; CLS(R) ‖ CLS(G) ‖ CLS(B)",
        embed_dim=4608,
        input_size=224,
        tile_size=224,
        native_mpp=0.5,
        mean=GENBIO_MEAN,
        std=GENBIO_STD,
        resize=ResizeRecipe(
            224, None, "bilinear", mode="square", source="Resize((224, 224)) (GenBio README)"
        ),
        pooling="cls",
        num_prefix_tokens=5,
        expected_params=1_133_686_784,
        published_params=1_100_000_000,
        published_rtol=0.05,  # "1.1B", two significant digits
        published_source="1.1B (genbio-ai/genbio-pathfm README)",
        builder=build_genbio,
        hf_repo="genbio-ai/genbio-pathfm",
        weight_files=("model.pth",),
        gated=False,
        license="GenBio AI Community Licence (non-commercial restrictions)",
        default_precision="fp32",
        notes=(
            "RoPE computed in bf16 as the reference does. bf16 autocast in TRIDENT, fp32 in "
            "slide2vec; fp32 here."
        ),
    ),
)
