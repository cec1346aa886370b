"""Lunit DINO ViT-S/8 (lunit-io/benchmark-ssl-pathology, release tag ``pretrained-weights``).

The README builds ``timm.models.vision_transformer.VisionTransformer(img_size=224, patch_size=8,
embed_dim=384, num_heads=6, num_classes=0)`` — timm's defaults otherwise: depth 12, MLP ratio 4,
qkv bias, no LayerScale, one CLS token — and loads ``dino_vit_small_patch8_ep200.torch`` (a bare
state dict in timm names) with a strict ``load_state_dict``. The class is used directly, as there,
so no named-architecture default can creep in. Embedding: CLS after the final norm (384).

Normalisation: Lunit's training statistics (eva: pathology/lunit.py; ZOO.md §3.6). TRIDENT reads
224 px at 20×, i.e. the input size, so the resize step is the identity at the native tile size.
"""

from __future__ import annotations

from typing import Any

from timm.models.vision_transformer import VisionTransformer

from slidestream.encoders.spec import EncoderSpec, ResizeRecipe

LUNIT_MEAN = (0.70322989, 0.53606487, 0.66096631)
LUNIT_STD = (0.21716536, 0.26081574, 0.20723464)
RELEASE = "https://github.com/lunit-io/benchmark-ssl-pathology/releases/download/pretrained-weights"


def build_lunit_vits8(**overrides: Any) -> VisionTransformer:
    """The README's constructor call; ``overrides`` (e.g. ``depth``) are for tests only."""
    kwargs: dict[str, Any] = dict(
        img_size=224, patch_size=8, embed_dim=384, num_heads=6, num_classes=0
    )
    return VisionTransformer(**{**kwargs, **overrides})


SPECS: tuple[EncoderSpec, ...] = (
    EncoderSpec(
        name="lunit-dino-vits8",
        family="lunit",
        description="Lunit DINO ViT-S/8 (benchmark-ssl-pathology); CLS embedding",
        embed_dim=384,
        input_size=224,
        tile_size=224,
        native_mpp=0.5,
        mean=LUNIT_MEAN,
        std=LUNIT_STD,
        resize=ResizeRecipe(
            224, 224, "bicubic", source="timm eval transform: Resize(224) → CenterCrop(224)"
        ),
        pooling="cls",
        expected_params=21_670_272,
        published_params=21_700_000,
        published_source="21.7M (lazyslide-models)",
        builder=build_lunit_vits8,
        hf_repo="1aurent/vit_small_patch8_224.lunit_dino",
        weight_files=("dino_vit_small_patch8_ep200.torch", "model.safetensors"),
        gated=False,
        license="Lunit non-commercial public licence",
        default_precision="fp32",
        extra={"weights_url": f"{RELEASE}/dino_vit_small_patch8_ep200.torch"},
        notes="224 px at 20× (TRIDENT); also loads the 1aurent timm port.",
    ),
)
