"""GPFM and mSTAR (HKUST SmartLab): timm ViT-L encoders released as plain timm state dicts.

GPFM (``majiabo/GPFM`` ``GPFM.pth``): ``timm.create_model("vit_large_patch14_dinov2.lvd142m",
pretrained=False, img_size=224, init_values=1e-5)`` then a strict load (TRIDENT, slide2vec,
lazyslide). The ``lvd142m`` tag makes ``num_classes=0``; the result is ViT-L/14 with a GELU MLP,
LayerScale and no registers (303,227,904 parameters). The GitHub release of the same name is a
DINOv2 *training* checkpoint in another layout (``teacher`` → ``backbone.blocks.{chunk}.{i}``)
and is not accepted. Preprocessing follows GPFM's ``build_transform``: ``Resize((224, 224))``
bicubic, ImageNet statistics, on 512-px tiles read at 40× (≈0.25 µm/px) as its README advises.

mSTAR (``Wangyh/mSTAR`` ``mSTAR.pth``): ``timm.create_model("vit_large_patch16_224",
img_size=224, patch_size=16, init_values=1e-5, num_classes=0, dynamic_img_size=True)``, the UNI
architecture (Innse/mSTAR README and Feature_extract/models/mSTAR.py). ``Resize(224)`` bilinear,
no crop, ImageNet statistics, 256-px tiles at 20×. Both embeddings are the CLS token (1024).
"""

from __future__ import annotations

from slidestream.encoders.spec import IMAGENET_MEAN, IMAGENET_STD, EncoderSpec, ResizeRecipe
from slidestream.encoders.vit_timm import UNI_KWARGS, _timm

SPECS: tuple[EncoderSpec, ...] = (
    EncoderSpec(
        name="gpfm",
        family="hkust",
        description="GPFM (HKUST), ViT-L/14 DINOv2-style, LayerScale; CLS embedding",
        embed_dim=1024,
        input_size=224,
        tile_size=512,
        native_mpp=0.25,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        resize=ResizeRecipe(
            224,
            None,
            "bicubic",
            mode="square",
            source="Resize((224, 224), BICUBIC) (GPFM build_transform)",
        ),
        pooling="cls",
        expected_params=303_227_904,
        published_params=303_000_000,
        published_source="303M (lazyslide-models)",
        builder=_timm(
            "vit_large_patch14_dinov2.lvd142m",
            img_size=224,
            init_values=1e-5,
            dynamic_img_size=True,
        ),
        hf_repo="majiabo/GPFM",
        weight_files=("GPFM.pth",),
        gated=False,
        license="CC-BY-NC-ND-4.0 (GPFM repository; slide2vec says MIT)",
        default_precision="fp32",
        notes=(
            "512-px tiles at 40× resized to 224 (GPFM README); TRIDENT reads 224 px at 20×. "
            "fp16 in TRIDENT, fp32 upstream."
        ),
    ),
    EncoderSpec(
        name="mstar",
        family="hkust",
        description="mSTAR patch encoder (HKUST), ViT-L/16 (UNI architecture); CLS embedding",
        embed_dim=1024,
        input_size=224,
        tile_size=256,
        native_mpp=0.5,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        resize=ResizeRecipe(224, None, "bilinear", source="Resize(224), no crop (mSTAR README)"),
        pooling="cls",
        expected_params=303_350_784,
        published_params=None,
        published_source="no published count; same architecture as UNI (303.4M)",
        builder=_timm("vit_large_patch16_224", **UNI_KWARGS),
        hf_repo="Wangyh/mSTAR",
        weight_files=("mSTAR.pth",),
        gated=True,
        license="CC-BY-NC-ND-4.0",
        default_precision="fp32",
        notes="256 px at 20× resized to 224 (slide2vec, CLAM coordinates).",
    ),
)
