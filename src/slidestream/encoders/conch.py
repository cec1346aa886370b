"""CONCH v1 (MahmoodLab): the image tower of the CoCa model, named as the released file names it.

The released ``pytorch_model.bin`` holds the whole CoCa minus its decoder: the image tower under
``visual.*``, the text tower under ``text.*`` and ``logit_scale``. This module is the image tower
with the attribute names of CONCH's ``VisualModel`` (mahmoodlab/CONCH: vision_tower.py, read at
commit 141cc09), so ``visual.*`` loads strictly once the prefix is removed::

    trunk.*                 timm VisionTransformer, ViT-B/16 at 448 px (vit_timm.build_conch_trunk)
    attn_pool_contrast.*    AttentionalPooler(d_model=512, context_dim=768, 8 heads, 1 query)
    ln_contrast.*           LayerNorm(512)
    proj_contrast           (512, 512) parameter, used only for image–text retrieval
    attn_pool_caption.*     AttentionalPooler(d_model=768, context_dim=768, 8 heads, 256 queries)
    ln_caption.*            LayerNorm(768)

The caption pooler is not used for the embedding; it is kept so that every ``visual.*`` tensor has
a home and a wrong file cannot hide behind a permissive load. The text tower is dropped by name.

The pooler's inner ``nn.MultiheadAttention`` has ``kdim = vdim = 768`` ≠ 512 for the contrastive
pooler, so it stores ``q_proj_weight`` / ``k_proj_weight`` / ``v_proj_weight`` + ``in_proj_bias``
(not a packed ``in_proj_weight``); the caption pooler (768 = 768) stores the packed form. PyTorch
decides this from the dimensions, exactly as in the original.

Embedding: ``encode_image(proj_contrast=False, normalize=False)`` = ``ln_contrast`` of the single
pooled query, 512-d (TRIDENT, STAMP, CLAM and slide2vec use this form; lazyslide multiplies by
``proj_contrast``, a different vector of the same size, available here as ``project``).

Parameter count: this tower has 90,392,832 parameters, matching the "~90M" image encoder reported
for CONCH. The 395.2M quoted in ENCODERS.md is the full CoCa (image tower + 110.1M text tower +
194.7M multimodal decoder + ``logit_scale``); the tests check that sum.
"""

from __future__ import annotations

import torch
from timm.layers import resample_abs_pos_embed
from torch import nn

from slidestream.encoders.spec import (
    OPENAI_CLIP_MEAN,
    OPENAI_CLIP_STD,
    EncoderSpec,
    KeyMap,
    ResizeRecipe,
    StateDict,
)
from slidestream.encoders.vit_timm import build_conch_trunk


class AttentionalPooler(nn.Module):
    """Learned queries attend over LayerNorm-ed tokens (CoCa's pooler, CONCH parameter names)."""

    def __init__(self, d_model: int, context_dim: int, n_head: int, n_queries: int) -> None:
        super().__init__()
        self.query = nn.Parameter(torch.randn(n_queries, d_model))
        # batch_first only changes the call convention, not the parameters or their names.
        self.attn = nn.MultiheadAttention(
            d_model, n_head, kdim=context_dim, vdim=context_dim, batch_first=True
        )
        self.ln_q = nn.LayerNorm(d_model)
        self.ln_k = nn.LayerNorm(context_dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        kv = self.ln_k(tokens)
        q = self.ln_q(self.query).unsqueeze(0).expand(tokens.shape[0], -1, -1)
        return self.attn(q, kv, kv, need_weights=False)[0]


class ConchVisionTower(nn.Module):
    """CONCH v1 ``visual``: forward gives the 512-d ``encode_image(proj_contrast=False)``."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk = build_conch_trunk()
        width = self.trunk.num_features
        self.attn_pool_contrast = AttentionalPooler(512, width, n_head=8, n_queries=1)
        self.ln_contrast = nn.LayerNorm(512)
        self.proj_contrast = nn.Parameter(width**-0.5 * torch.randn(512, 512))
        self.attn_pool_caption = AttentionalPooler(768, width, n_head=8, n_queries=256)
        self.ln_caption = nn.LayerNorm(768)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.trunk.forward_features(x)
        return self.ln_contrast(self.attn_pool_contrast(tokens)[:, 0])

    def project(self, embedding: torch.Tensor) -> torch.Tensor:
        """The retrieval vector (before L2 normalisation): ``embedding @ proj_contrast``."""
        return embedding @ self.proj_contrast


def resample_trunk_pos_embed(state_dict: StateDict, model: nn.Module) -> StateDict:
    """Fit a checkpoint's position embedding to the 448-px grid, as CONCH's own loader does.

    CONCH resamples ``visual.trunk.pos_embed`` with timm (bilinear, no antialias, one prefix
    token) whenever its shape differs from the model's; this keeps that behaviour so a checkpoint
    saved at another resolution still loads. A matching shape is left untouched.
    """
    key = "trunk.pos_embed"
    target = getattr(model, "trunk", None)
    if key not in state_dict or target is None:
        return state_dict
    pos = state_dict[key]
    if pos.ndim == 3 and pos.shape != target.pos_embed.shape:
        state_dict = dict(state_dict)
        state_dict[key] = resample_abs_pos_embed(
            pos,
            new_size=list(target.patch_embed.grid_size),
            num_prefix_tokens=1,
            interpolation="bilinear",
            antialias=False,
        )
    return state_dict


SPECS: tuple[EncoderSpec, ...] = (
    EncoderSpec(
        name="conch-v1",
        family="conch",
        description="CONCH v1 (MahmoodLab), CoCa image tower, ViT-B/16 at 448 + attentional pool",
        embed_dim=512,
        input_size=448,
        tile_size=448,
        native_mpp=0.5,
        mean=OPENAI_CLIP_MEAN,
        std=OPENAI_CLIP_STD,
        resize=ResizeRecipe(
            448,
            448,
            "bicubic",
            source="Resize(448, BICUBIC) → CenterCrop(448) (CONCH transform.py image_transform)",
        ),
        pooling="attn-pool",
        expected_params=90_392_832,
        published_params=90_000_000,
        published_source=(
            "~90M image encoder (bio.rodeo/models/conch); 395.2M full CoCa (lazyslide), "
            "checked as a sum in the tests"
        ),
        builder=ConchVisionTower,
        hf_repo="MahmoodLab/conch",
        weight_files=("pytorch_model.bin",),
        gated=True,
        license="CC-BY-NC-ND-4.0",
        default_precision="fp32",
        key_map=KeyMap(
            strip_prefixes=("module.",),
            select_prefix="visual.",
            fixup=resample_trunk_pos_embed,
        ),
        notes=(
            "Embedding = encode_image(proj_contrast=False, normalize=False). CLAM feeds 224 px; "
            "the native 448 is used here. Tile size 448 at 0.5 µm/px is this project's choice."
        ),
    ),
)
