"""Encoders that are plain timm ``VisionTransformer`` instances.

UNI, UNI2-h, Virchow, Virchow2, H-optimus-0/1, Prov-GigaPath (tile) and PathDino are all released
as timm-named state dicts, so the only thing that decides whether the official file loads with
``strict=True`` is the exact set of constructor arguments. Those are written out in full below,
one per encoder, as the reference loaders pass them (see /work/shared/ENCODERS.md §2–3), including
the arguments that cannot live in a hub ``config.json`` (``mlp_layer``, ``act_layer``) and an
explicit ``img_size`` for the ``*_dinov2`` architectures, whose default of 518 px would give a
position embedding that does not fit a 224-px checkpoint.

``pretrained=False`` everywhere: timm never reaches the network from here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import timm
from timm.layers import SwiGLUPacked
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from slidestream.encoders.spec import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    EncoderSpec,
    KeyMap,
    ResizeRecipe,
)

HOPTIMUS_MEAN = (0.707223, 0.578729, 0.703617)
HOPTIMUS_STD = (0.211883, 0.230117, 0.177517)


def _timm(arch: str, **kwargs: Any) -> Callable[[], nn.Module]:
    """A zero-argument builder: the spec stays data, the model is made only when asked."""

    def build(**overrides: Any) -> nn.Module:
        # ``overrides`` (e.g. ``depth=2``) exist for reduced-size forward tests only.
        return timm.create_model(arch, pretrained=False, **{**kwargs, **overrides})

    build.__doc__ = f"timm.create_model({arch!r}, pretrained=False, **{kwargs!r})"
    return build


# --- constructor arguments, exactly as the reference loaders pass them ----------------------

UNI_KWARGS: dict[str, Any] = dict(
    img_size=224, patch_size=16, init_values=1e-5, num_classes=0, dynamic_img_size=True
)
UNI2H_KWARGS: dict[str, Any] = dict(
    img_size=224,
    patch_size=14,
    depth=24,
    num_heads=24,
    init_values=1e-5,
    embed_dim=1536,
    mlp_ratio=2.66667 * 2,
    num_classes=0,
    no_embed_class=True,
    mlp_layer=SwiGLUPacked,
    act_layer=nn.SiLU,
    reg_tokens=8,
    dynamic_img_size=True,
)
VIRCHOW_KWARGS: dict[str, Any] = dict(
    img_size=224,
    init_values=1e-5,
    num_classes=0,
    mlp_ratio=5.3375,
    global_pool="",  # the model returns all tokens; the embedding is CLS ‖ mean(patches)
    dynamic_img_size=True,
    mlp_layer=SwiGLUPacked,
    act_layer=nn.SiLU,
)
VIRCHOW2_KWARGS: dict[str, Any] = {**VIRCHOW_KWARGS, "reg_tokens": 4}
HOPTIMUS_KWARGS: dict[str, Any] = dict(
    num_classes=0, img_size=224, global_pool="token", init_values=1e-5, dynamic_img_size=False
)
GIGAPATH_KWARGS: dict[str, Any] = dict(
    img_size=224,
    in_chans=3,
    patch_size=16,  # 16, not 14, despite the architecture name (checked against the weights)
    embed_dim=1536,
    depth=40,
    num_heads=24,
    mlp_ratio=5.33334,
    num_classes=0,
    dynamic_img_size=True,
)
PATHDINO_KWARGS: dict[str, Any] = dict(img_size=512, depth=5, num_classes=0)


def build_conch_trunk() -> VisionTransformer:
    """CONCH v1 image trunk: a default timm ViT-B/16 at 448 px (no LayerScale, qkv bias).

    Built with the ``VisionTransformer`` class rather than a named architecture, as CONCH's
    ``_build_vision_tower`` does, so timm's named-model defaults cannot creep in.
    """
    return VisionTransformer(
        embed_dim=768,
        depth=12,
        num_heads=12,
        mlp_ratio=4,
        img_size=448,
        patch_size=16,
        num_classes=0,
        dynamic_img_size=True,
    )


# --- recipes --------------------------------------------------------------------------------

_RESIZE_224_CROP_BILINEAR = ResizeRecipe(
    224, 224, "bilinear", source="Resize(224) → CenterCrop(224) (mahmoodlab/UNI README)"
)
_RESIZE_224_CROP_BICUBIC = ResizeRecipe(
    224, 224, "bicubic", source="timm resolve_data_config: bicubic Resize(224) → CenterCrop(224)"
)

H_OPTIMUS_0 = EncoderSpec(
    name="h-optimus-0",
    family="vit_timm",
    description="H-optimus-0 (Bioptimus), ViT-g/14, 4 registers, SwiGLU; CLS embedding",
    embed_dim=1536,
    input_size=224,
    tile_size=224,
    native_mpp=0.5,
    mean=HOPTIMUS_MEAN,
    std=HOPTIMUS_STD,
    resize=ResizeRecipe(
        224, None, "bilinear", mode="square", source="Resize(224) (TRIDENT, STAMP)"
    ),
    pooling="cls",
    num_prefix_tokens=5,
    expected_params=1_134_774_272,
    published_params=1_130_000_000,
    published_source="1.13B (lazyslide-models vision/h_optimus.py)",
    builder=_timm("vit_giant_patch14_reg4_dinov2", **HOPTIMUS_KWARGS),
    hf_repo="bioptimus/H-optimus-0",
    weight_files=("pytorch_model.bin", "model.safetensors"),
    gated=False,
    license="Apache-2.0",
    default_precision="fp16",
)

# H-optimus-1 is the same network with other weights and licence (bioptimus/releases).
H_OPTIMUS_1 = replace(
    H_OPTIMUS_0,
    name="h-optimus-1",
    description="H-optimus-1 (Bioptimus), same architecture as H-optimus-0; CLS embedding",
    hf_repo="bioptimus/H-optimus-1",
    gated=True,
    license="CC-BY-NC-ND-4.0",
)

SPECS: tuple[EncoderSpec, ...] = (
    EncoderSpec(
        name="uni",
        family="vit_timm",
        description="UNI (MahmoodLab), ViT-L/16, LayerScale; CLS embedding",
        embed_dim=1024,
        input_size=224,
        tile_size=224,
        native_mpp=0.5,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        resize=_RESIZE_224_CROP_BILINEAR,
        pooling="cls",
        expected_params=303_350_784,
        published_params=303_400_000,
        published_source="303.4M (lazyslide-models vision/uni.py)",
        builder=_timm("vit_large_patch16_224", **UNI_KWARGS),
        hf_repo="MahmoodLab/UNI",
        weight_files=("pytorch_model.bin", "model.safetensors"),
        gated=True,
        license="CC-BY-NC-ND-4.0",
        default_precision="fp16",
    ),
    EncoderSpec(
        name="uni2-h",
        family="vit_timm",
        description="UNI2-h (MahmoodLab), ViT-H/14, 8 registers, SwiGLU; CLS embedding",
        embed_dim=1536,
        input_size=224,
        tile_size=224,
        native_mpp=0.5,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        resize=_RESIZE_224_CROP_BILINEAR,
        pooling="cls",
        num_prefix_tokens=9,
        expected_params=681_394_176,
        published_params=681_400_000,
        published_source="681.4M (lazyslide-models vision/uni.py)",
        builder=_timm("vit_giant_patch14_224", **UNI2H_KWARGS),
        hf_repo="MahmoodLab/UNI2-h",
        weight_files=("pytorch_model.bin", "model.safetensors"),
        gated=True,
        license="CC-BY-NC-ND-4.0",
        default_precision="bf16",
        notes="Precision: bf16 (TRIDENT) vs fp16 (slide2vec); bf16 chosen.",
    ),
    EncoderSpec(
        name="virchow",
        family="vit_timm",
        description="Virchow (Paige), ViT-H/14, SwiGLU; CLS ‖ mean(patch tokens)",
        embed_dim=2560,
        input_size=224,
        tile_size=224,
        native_mpp=0.5,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        resize=_RESIZE_224_CROP_BICUBIC,
        pooling="cls+mean",
        num_prefix_tokens=1,
        expected_params=631_229_184,
        published_params=631_200_000,
        published_source="631.2M (lazyslide-models vision/virchow.py)",
        builder=_timm("vit_huge_patch14_224", **VIRCHOW_KWARGS),
        hf_repo="paige-ai/Virchow",
        weight_files=("pytorch_model.bin", "model.safetensors"),
        gated=True,
        license="Apache-2.0",
        default_precision="fp16",
    ),
    EncoderSpec(
        name="virchow2",
        family="vit_timm",
        description="Virchow2 (Paige), ViT-H/14, 4 registers, SwiGLU; CLS ‖ mean(tokens[5:])",
        embed_dim=2560,
        input_size=224,
        tile_size=224,
        native_mpp=0.5,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        resize=_RESIZE_224_CROP_BICUBIC,
        pooling="cls+mean",
        num_prefix_tokens=5,  # registers are excluded from the patch mean
        expected_params=631_239_424,
        published_params=631_200_000,
        published_source="631.2M (lazyslide-models vision/virchow.py)",
        builder=_timm("vit_huge_patch14_224", **VIRCHOW2_KWARGS),
        hf_repo="paige-ai/Virchow2",
        weight_files=("pytorch_model.bin", "model.safetensors"),
        gated=True,
        license="CC-BY-NC-ND-4.0",
        default_precision="fp16",
        notes="Trained at mixed scales (0.25, 0.5, 1, 2 µm/px); 0.5 is the default here.",
    ),
    H_OPTIMUS_0,
    H_OPTIMUS_1,
    EncoderSpec(
        name="gigapath",
        family="vit_timm",
        description="Prov-GigaPath tile encoder, ViT-g with patch 16, SwiGLU; CLS embedding",
        embed_dim=1536,
        input_size=224,
        tile_size=256,
        native_mpp=0.5,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        resize=ResizeRecipe(
            256,
            224,
            "bicubic",
            source="Resize(256, BICUBIC) → CenterCrop(224) (prov-gigapath README, demo)",
        ),
        pooling="cls",
        expected_params=1_134_953_984,
        published_params=1_130_000_000,
        published_source="1.13B (lazyslide-models vision/gigapath.py)",
        builder=_timm("vit_giant_patch14_dinov2", **GIGAPATH_KWARGS),
        hf_repo="prov-gigapath/prov-gigapath",
        weight_files=("pytorch_model.bin",),
        gated=True,
        license="Apache-2.0 (hub card; not verified offline)",
        default_precision="fp16",
    ),
    EncoderSpec(
        name="pathdino",
        family="vit_timm",
        description="PathDino-512 (KimiaLab), 5-block ViT-S/16 at 512 px; CLS embedding",
        embed_dim=384,
        input_size=512,
        tile_size=512,
        native_mpp=0.5,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        resize=ResizeRecipe(
            512, 512, "bilinear", source="Resize(512) → CenterCrop(512) (PathDino.py)"
        ),
        pooling="cls",
        expected_params=9_562_368,
        published_params=9_000_000,
        published_rtol=0.07,  # the README gives "≈9 million", one significant digit
        published_source="≈9 million (KimiaLabMayo/PathDino README)",
        builder=_timm("vit_small_patch16_224", **PATHDINO_KWARGS),
        hf_repo="Saghir/PathDino",
        hf_repo_type="space",
        weight_files=("PathDino512.pth",),
        gated=False,
        license="Apache-2.0 (code repository)",
        default_precision="fp32",
        # The training script wraps the backbone (``backbone.`` prefix); a full DINO training
        # checkpoint also carries the projection head, which is not part of the encoder.
        key_map=KeyMap(strip_prefixes=("module.", "backbone."), drop=(r"^head\.",)),
    ),
)
