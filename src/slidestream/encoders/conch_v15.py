"""CONCH v1.5 (MahmoodLab): the ViT-L/16 image tower that TITAN was trained on.

Official construction (TRIDENT model_zoo/conchv1_5/conchv1_5.py ``CONCHVisionTower``; TITAN's
``return_conch`` has the same keys and shapes, ZOO.md §3.1):

* ``trunk``: a timm-0.9-style ViT-L/16 — 1024 wide, 24 blocks, 16 heads, MLP ratio 4, qkv bias,
  LayerScale, LayerNorm eps 1e-6, one CLS token — **built at 224 px**, so ``trunk.pos_embed`` is
  (1, 197, 1024). It is run at 448 px: every forward interpolates the 14×14 table DINO-v1 style
  (``F.interpolate(scale_factor=(28.1 / 14, 28.1 / 14), mode="bicubic")``, no antialias, CLS
  entry kept). timm's own resampling uses an exact size and antialias, which gives different
  numbers, so ``ConchV15Trunk`` overrides ``_pos_embed`` with the DINO recipe.
* ``attn_pool_contrast``: one learned query (1, 768); ``ln_k`` over the 1024-d tokens, ``ln_q``
  over the query; ``to_q`` 768→768, ``to_kv`` 1024→1536, ``to_out`` 768→768, all without bias;
  8 heads of 96, scale 96^-0.5, the row maximum subtracted before the softmax.
* ``ln_contrast`` LayerNorm(768). Embedding = ``ln_contrast(pool(trunk.forward_features(x))[:, 0])``.

Weights: ``MahmoodLab/conchv1_5`` ``pytorch_model_vision.bin``, prefix-free keys, loaded strictly
after resizing a ``trunk.pos_embed`` of another grid to 14×14 (bilinear, no antialias), as the
official loader does. Preprocessing: 512-px tiles at 20× → ``Resize(448)`` bilinear →
``CenterCrop(448)`` → ImageNet statistics (TRIDENT, TITAN). 306,109,184 parameters (ZOO.md
corrects ENCODERS.md's 303.95M, which assumed a 448-px table).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from slidestream.encoders.conch import resample_trunk_pos_embed
from slidestream.encoders.spec import IMAGENET_MEAN, IMAGENET_STD, EncoderSpec, KeyMap, ResizeRecipe


def dino_interpolate(pos_embed: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """DINO-v1 position interpolation: bicubic by ``(grid + 0.1) / N`` scale factors, CLS kept.

    ``height``/``width`` are in patches. This is the reference's ``interpolate_pos_encoding``
    (scale factors, not sizes, so the sampling positions match it exactly).
    """
    n = pos_embed.shape[1] - 1
    side = math.sqrt(n)
    if height * width == n and height == width:
        return pos_embed
    dim = pos_embed.shape[-1]
    grid = pos_embed[:, 1:].reshape(1, int(side), int(side), dim).permute(0, 3, 1, 2)
    grid = F.interpolate(
        grid, scale_factor=((height + 0.1) / side, (width + 0.1) / side), mode="bicubic"
    )
    grid = grid.permute(0, 2, 3, 1).reshape(1, -1, dim)
    return torch.cat((pos_embed[:, :1], grid), dim=1)


class ConchV15Trunk(VisionTransformer):
    """timm's ViT with the reference's position interpolation (any input size)."""

    def _pos_embed(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape  # dynamic_img_size: the patch embedding keeps the grid (NHWC)
        tokens = torch.cat((self.cls_token.expand(b, -1, -1), x.reshape(b, h * w, c)), dim=1)
        return self.pos_drop(tokens + dino_interpolate(self.pos_embed, h, w))


class ContrastPooler(nn.Module):
    """CoCa attentional pooler with CONCH v1.5's names (``to_q``, ``to_kv``, ``to_out``)."""

    def __init__(self, d_model: int = 768, context_dim: int = 1024, heads: int = 8) -> None:
        super().__init__()
        self.heads = heads
        self.query = nn.Parameter(torch.randn(1, d_model))
        self.ln_k = nn.LayerNorm(context_dim)
        self.ln_q = nn.LayerNorm(d_model)
        self.to_q = nn.Linear(d_model, d_model, bias=False)
        self.to_kv = nn.Linear(context_dim, 2 * d_model, bias=False)
        self.to_out = nn.Linear(d_model, d_model, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        b = tokens.shape[0]
        q = self.to_q(self.ln_q(self.query)).expand(b, -1, -1)  # (B, 1, D)
        k, v = self.to_kv(self.ln_k(tokens)).chunk(2, dim=-1)
        d = q.shape[-1] // self.heads

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(b, t.shape[1], self.heads, d).transpose(1, 2)

        sim = (split(q) * d**-0.5) @ split(k).transpose(-1, -2)
        sim = sim - sim.amax(dim=-1, keepdim=True)
        out = sim.softmax(dim=-1) @ split(v)
        return self.to_out(out.transpose(1, 2).reshape(b, 1, self.heads * d))


class ConchV15Tower(nn.Module):
    """CONCH v1.5 image tower: forward gives the 768-d embedding."""

    def __init__(self, depth: int = 24) -> None:
        super().__init__()
        self.trunk = ConchV15Trunk(
            img_size=224,
            patch_size=16,
            embed_dim=1024,
            depth=depth,
            num_heads=16,
            mlp_ratio=4,
            qkv_bias=True,
            init_values=1.0,
            num_classes=0,
            dynamic_img_size=True,
        )
        self.attn_pool_contrast = ContrastPooler()
        self.ln_contrast = nn.LayerNorm(768)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.attn_pool_contrast(self.trunk.forward_features(x))
        return self.ln_contrast(pooled[:, 0])


def build_conch_v15(**overrides: Any) -> ConchV15Tower:
    """The tower; ``overrides`` (``depth``) are for reduced-size tests only."""
    return ConchV15Tower(**overrides)


SPECS: tuple[EncoderSpec, ...] = (
    EncoderSpec(
        name="conch-v1.5",
        family="conch",
        description="CONCH v1.5 (MahmoodLab), ViT-L/16 built at 224, run at 448 + attn pool",
        embed_dim=768,
        input_size=448,
        tile_size=512,
        native_mpp=0.5,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        resize=ResizeRecipe(
            448,
            448,
            "bilinear",
            source="Resize(448, BILINEAR) → CenterCrop(448) (TRIDENT conchv1_5.py, TITAN)",
        ),
        pooling="attn-pool",
        expected_params=306_109_184,
        published_params=None,
        published_source="no published count; 306,109,184 computed (ZOO.md §2)",
        builder=build_conch_v15,
        hf_repo="MahmoodLab/conchv1_5",
        weight_files=("pytorch_model_vision.bin",),
        gated=True,
        license="CC-BY-NC-ND-4.0",
        default_precision="fp16",
        key_map=KeyMap(fixup=resample_trunk_pos_embed),
        notes=(
            "The patch encoder of TITAN: 512-px tiles at 20×. lazyslide resizes bicubic with "
            "antialias instead of bilinear."
        ),
    ),
)
