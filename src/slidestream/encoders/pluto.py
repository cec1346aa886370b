"""PLUTO (PathAI): a FlexiViT-S, listed for benchmarking only; its weights are not public.

No weights, code, key names or normalisation constants for PLUTO were found in any public
repository or on the Hugging Face hub (see /work/shared/ENCODERS.md, PLUTO section). What is
published is the architecture class: FlexiViT-S, width 384, 12 layers, 6 heads, MLP 1536,
≈22M parameters, patch size selectable from {8, 16, 32}, trained at 0.25–2 µm/px.

What this entry gives: the same-size architecture as a timm ``VisionTransformer`` in FlexiViT's
convention (class token, position embedding over patches only), at patch 16 and 224 px, so that
throughput and memory can be measured with ``random_init=True``. Everything that would decide
whether a real PLUTO checkpoint loads (key names, position-embedding grid, normalisation) is a
guess: ImageNet statistics are placeholders. A private checkpoint in timm ``VisionTransformer``
layout can still be passed with ``weights=``; it is loaded strictly like any other.
"""

from __future__ import annotations

from timm.models.vision_transformer import VisionTransformer

from slidestream.encoders.spec import IMAGENET_MEAN, IMAGENET_STD, EncoderSpec, ResizeRecipe


def build_flexivit_small() -> VisionTransformer:
    """FlexiViT-S at patch 16 / 224 px: 384 × 12 × 6, MLP 1536, pos-embed over patches only."""
    return VisionTransformer(
        img_size=224,
        patch_size=16,
        embed_dim=384,
        depth=12,
        num_heads=6,
        mlp_ratio=4.0,
        no_embed_class=True,
        num_classes=0,
        dynamic_img_size=True,
    )


SPECS: tuple[EncoderSpec, ...] = (
    EncoderSpec(
        name="pluto",
        family="pluto",
        description="PLUTO (PathAI) FlexiViT-S 384×12×6 — weights NOT public; random-init only",
        embed_dim=384,
        input_size=224,
        tile_size=224,
        native_mpp=0.5,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        resize=ResizeRecipe(224, 224, "bilinear", source="unknown; placeholder"),
        pooling="cls",
        expected_params=21_665_280,
        published_params=22_000_000,
        published_source="≈22M FlexiViT-S (bio.rodeo/models/pluto; PLUTO-4 paper)",
        builder=build_flexivit_small,
        gated=False,
        license="proprietary (not released)",
        default_precision="fp32",
        weights_public=False,
        notes="Weights not publicly released; normalisation and key names unknown. "
        "Use random_init=True for benchmarking.",
    ),
)
