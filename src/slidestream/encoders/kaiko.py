"""kaiko.ai: the five "Towards large-scale training" ViTs and Midnight-12k.

Kaiko ViT-S/16, S/8, B/16, B/8, L/14 (kaiko-ai/towards_large_pathology_fms hubconf.py, release
tag 0.0.1): each is ``timm.create_model(arch, pretrained=True, pretrained_cfg={"url": <release
.pth>, "num_classes": 0}, dynamic_img_size=True)``. The S and B models are timm's plain defaults
(GELU MLP, qkv bias, one CLS token, no LayerScale); ViT-L/14 is
``vit_large_patch14_reg4_dinov2`` at its default 518 px (4 registers, ``no_embed_class``,
LayerScale). timm's pretrained path runs ``checkpoint_filter_fn`` on the file before its strict
load, which resamples a ``pos_embed`` saved on another grid to the model's (bicubic, antialias);
the same function is applied here, so the L/14 file loads whether it holds a 16×16 or a 37×37
table. At the 224-px input the L/14 then resamples its 37×37 table to 16×16 on every forward, as
the original does (``dynamic_img_size``). Embedding: ``model(x)`` = CLS after the final norm.

Midnight-12k (kaiko-ai/Midnight README): ``AutoModel.from_pretrained("kaiko-ai/midnight")``, a
transformers ``Dinov2Model`` (ViT-g/14: 1536 × 40 layers × 24 heads, SwiGLU FFN 4096, LayerScale,
no registers). The module is ``hf_layout.HFVisionTransformer`` at 224 px with the 4.x Dinov2 key
names. If the file's position table is on another grid (the config's ``image_size`` was not
retrieved; 518 is inferred), it is resampled once at load exactly as transformers does on every
224-px forward (``interpolate_hf_positions``), which gives the same numbers. Two embeddings, both
used by tools (ZOO.md §3.4): ``midnight-12k-cls`` (CLS, 1536; TRIDENT's code default, eva) and
``midnight-12k-cls-mean`` (CLS ‖ mean of patch tokens, 3072; kaiko README, slide2vec, lazyslide).
"""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import checkpoint_filter_fn
from torch import nn

from slidestream.encoders.hf_layout import HFVisionTransformer, HFViTConfig
from slidestream.encoders.spec import EncoderSpec, KeyMap, ResizeRecipe, StateDict
from slidestream.encoders.vit_timm import _timm

KAIKO_MEAN = (0.5, 0.5, 0.5)
KAIKO_STD = (0.5, 0.5, 0.5)
RELEASE = "https://github.com/kaiko-ai/towards_large_pathology_fms/releases/download/0.0.1"
_LICENSE = "Kaiko Non-Commercial Public License v1"


def timm_filter(state_dict: StateDict, model: nn.Module) -> StateDict:
    """timm's own ``checkpoint_filter_fn``: what ``pretrained=True`` applies before loading."""
    return checkpoint_filter_fn(dict(state_dict), model)  # type: ignore[arg-type]


_RESIZE = ResizeRecipe(
    224, 224, "bilinear", source="Resize(224) → CenterCrop(224) (kaiko hubconf README; TRIDENT)"
)


def _kaiko(name: str, arch: str, dim: int, params: int, desc: str, **kw: object) -> EncoderSpec:
    stem = name.removeprefix("kaiko-")
    return EncoderSpec(
        name=name,
        family="kaiko",
        description=f"Kaiko {desc}; CLS embedding",
        embed_dim=dim,
        input_size=224,
        tile_size=224,
        native_mpp=0.5,
        mean=KAIKO_MEAN,
        std=KAIKO_STD,
        resize=_RESIZE,
        pooling="cls",
        expected_params=params,
        published_params=None,
        published_source="no published count; computed from the hubconf architecture",
        builder=_timm(arch, num_classes=0, dynamic_img_size=True, **kw),
        hf_repo=f"1aurent/{arch}.kaiko_ai_towards_large_pathology_fms",
        weight_files=(f"{stem}.pth", "model.safetensors", "pytorch_model.bin"),
        gated=False,
        license=_LICENSE,
        default_precision="fp32",
        key_map=KeyMap(fixup=timm_filter),
        extra={"weights_url": f"{RELEASE}/{stem}.pth"},
        notes=(
            "Native scale not stated by kaiko (trained on mixed magnifications); 224 px at "
            "0.5 µm/px here, TRIDENT reads 256 px at 20×. Also loads the 1aurent timm port."
        ),
    )


KAIKO_SPECS = (
    _kaiko("kaiko-vits16", "vit_small_patch16_224", 384, 21_665_664, "ViT-S/16"),
    _kaiko("kaiko-vits8", "vit_small_patch8_224", 384, 21_670_272, "ViT-S/8"),
    _kaiko("kaiko-vitb16", "vit_base_patch16_224", 768, 85_798_656, "ViT-B/16"),
    _kaiko("kaiko-vitb8", "vit_base_patch8_224", 768, 85_807_872, "ViT-B/8"),
    replace(
        _kaiko(
            "kaiko-vitl14",
            "vit_large_patch14_reg4_dinov2",
            1024,
            304_370_688,
            "ViT-L/14, 4 registers, built at 518 and run at 224",
        ),
        num_prefix_tokens=5,
    ),
)

# --- Midnight-12k ------------------------------------------------------------------------

MIDNIGHT = HFViTConfig(
    hidden_size=1536,
    num_layers=40,
    num_heads=24,
    patch_size=14,
    image_size=224,
    layer_norm_eps=1e-6,
    use_swiglu_ffn=True,
)


def interpolate_hf_positions(state_dict: StateDict, model: nn.Module) -> StateDict:
    """Fit ``embeddings.position_embeddings`` to the model grid the way transformers does.

    transformers' ``Dinov2Embeddings.interpolate_pos_encoding`` keeps the CLS entry and resizes the
    patch table bicubically to the exact target grid, ``align_corners=False``, no antialias, in
    float32, then casts back. The input is always 224 px here, so doing it once at load gives the
    numbers transformers computes on every forward.
    """
    key = "embeddings.position_embeddings"
    if key not in state_dict:
        return state_dict
    pos = state_dict[key]
    want = model.state_dict()[key].shape
    if pos.ndim != 3 or pos.shape == want:
        return state_dict
    old = round((pos.shape[1] - 1) ** 0.5)
    new = round((want[1] - 1) ** 0.5)
    if old * old != pos.shape[1] - 1 or pos.shape[2] != want[2]:
        return state_dict  # not a square table: let the strict check report it
    grid = pos[:, 1:].reshape(1, old, old, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(
        grid.to(torch.float32),
        size=(new, new),
        mode="bicubic",
        align_corners=False,
        antialias=False,
    ).to(pos.dtype)
    out = dict(state_dict)
    out[key] = torch.cat((pos[:, :1], grid.permute(0, 2, 3, 1).reshape(1, new * new, -1)), dim=1)
    return out


def build_midnight(**overrides: object) -> HFVisionTransformer:
    """Midnight's ``Dinov2Model`` layout; ``overrides`` (e.g. ``num_layers``) are for tests."""
    return HFVisionTransformer(replace(MIDNIGHT, **overrides))  # type: ignore[arg-type]


MIDNIGHT_CLS = EncoderSpec(
    name="midnight-12k-cls",
    family="kaiko",
    description="Midnight-12k (kaiko.ai), DINOv2 ViT-g/14, SwiGLU; CLS embedding",
    embed_dim=1536,
    input_size=224,
    tile_size=224,
    native_mpp=0.5,
    mean=KAIKO_MEAN,
    std=KAIKO_STD,
    resize=ResizeRecipe(
        224, 224, "bilinear", source="Resize(224) → CenterCrop(224) (kaiko-ai/Midnight README)"
    ),
    pooling="cls",
    num_prefix_tokens=1,
    expected_params=1_134_771_200,
    published_params=1_140_000_000,
    published_source="1.14B (lazyslide-models; counts the 518-px position table)",
    builder=build_midnight,
    hf_repo="kaiko-ai/midnight",
    weight_files=("model.safetensors", "pytorch_model.bin"),
    gated=False,
    license="MIT",
    default_precision="fp16",
    key_map=KeyMap(fixup=interpolate_hf_positions),
    notes=(
        "CLS only (TRIDENT code default, eva). The kaiko README uses CLS ‖ patch mean: "
        "midnight-12k-cls-mean. Trained on 0.25-2 µm/px; 0.5 here."
    ),
)
MIDNIGHT_CLS_MEAN = replace(
    MIDNIGHT_CLS,
    name="midnight-12k-cls-mean",
    description="Midnight-12k (kaiko.ai), DINOv2 ViT-g/14, SwiGLU; CLS ‖ mean(patch tokens)",
    embed_dim=3072,
    pooling="cls+mean",
    notes=(
        "CLS ‖ mean of patch tokens, as in the kaiko README, slide2vec and lazyslide; "
        "midnight-12k-cls is the CLS-only variant. Trained on 0.25-2 µm/px; 0.5 here."
    ),
)

SPECS: tuple[EncoderSpec, ...] = (*KAIKO_SPECS, MIDNIGHT_CLS, MIDNIGHT_CLS_MEAN)
