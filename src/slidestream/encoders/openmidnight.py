"""OpenMidnight (Sophont / MedARC): DINOv2 ViT-g/14 with 4 registers, trained at 224 px.

The official loaders (TRIDENT, lazyslide) build ``torch.hub.load("facebookresearch/dinov2",
"dinov2_vitg14_reg", pretrained=False)`` — DINOv2 ``vit_giant2``: 1536 × 40 × 24, fused SwiGLU
(``mlp.w12`` 8192×1536, ``mlp.w3`` 1536×4096), LayerScale, 4 register tokens, LayerNorm eps 1e-6,
bicubic antialiased position interpolation with no offset — then replace ``pos_embed`` with the
checkpoint's tensor and load ``teacher_checkpoint_load.pt`` strictly. Embedding: ``model(x)`` =
``x_norm_clstoken`` (1536).

The same network is timm's ``vit_giant_patch14_reg4_dinov2``, and timm's ``checkpoint_filter_fn``
converts the DINOv2 names (``w12``/``w3`` → ``fc1``/``fc2``, ``register_tokens`` → ``reg_token``,
and the CLS position folded into ``cls_token``, since timm keeps CLS and registers out of the
position table, exactly as DINOv2 adds positions before inserting the registers). ``mask_token``
is training-only and is the one tensor the conversion drops. A table saved on another grid is
resampled to 16×16 with DINOv2's own recipe (bicubic, antialias, exact size), which is what the
original does on every 224-px forward. The module here is built at 224 px, so it has 3,072 fewer
parameters than the DINOv2 one (the mask token and the CLS position live in ``cls_token``).

Preprocessing: ``Resize((224, 224))`` (TRIDENT; lazyslide crops instead), ImageNet statistics,
224 px at 20×.
"""

from __future__ import annotations

from typing import Any

from timm.layers import SwiGLUPacked
from torch import nn

from slidestream.encoders.kaiko import timm_filter
from slidestream.encoders.spec import IMAGENET_MEAN, IMAGENET_STD, EncoderSpec, KeyMap, ResizeRecipe
from slidestream.encoders.vit_timm import _timm

OPENMIDNIGHT_KWARGS: dict[str, Any] = dict(
    img_size=224,
    mlp_ratio=2.66667 * 2,
    mlp_layer=SwiGLUPacked,
    act_layer=nn.SiLU,
    init_values=1.0,
    num_classes=0,
    dynamic_img_size=False,
)

SPECS: tuple[EncoderSpec, ...] = (
    EncoderSpec(
        name="openmidnight",
        family="openmidnight",
        description="OpenMidnight (Sophont), DINOv2 ViT-g/14, 4 registers, SwiGLU; CLS embedding",
        embed_dim=1536,
        input_size=224,
        tile_size=224,
        native_mpp=0.5,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        resize=ResizeRecipe(
            224, None, "bilinear", mode="square", source="Resize((224, 224)) (TRIDENT)"
        ),
        pooling="cls",
        num_prefix_tokens=5,
        expected_params=1_134_774_272,
        published_params=1_134_777_344,
        published_rtol=1e-4,
        published_source=(
            "1,134,777,344 for DINOv2 vitg14_reg with a 257-token table (ZOO.md, computed); "
            "timm keeps the CLS position in cls_token and has no mask_token"
        ),
        builder=_timm("vit_giant_patch14_reg4_dinov2", **OPENMIDNIGHT_KWARGS),
        hf_repo="SophontAI/OpenMidnight",
        weight_files=("teacher_checkpoint_load.pt",),
        gated=True,
        license="Apache-2.0",
        default_precision="fp16",
        key_map=KeyMap(fixup=timm_filter),
        notes="Squash resize (TRIDENT); lazyslide uses Resize + CenterCrop (same at 224 px).",
    ),
)
