"""Phikon (iBOT ViT-B/16) and Phikon-v2 (DINOv2 ViT-L/16) from Owkin.

Both are transformers checkpoints; the key layouts are reproduced in plain torch by
``hf_layout.HFVisionTransformer`` (``layout="vit"`` for Phikon's ``ViTModel``, ``"dinov2"`` for
Phikon-v2's ``Dinov2Model``), so the hub files load strictly without transformers.

Verified vs inferred (see /work/shared/ENCODERS.md, Phikon sections):

* Phikon: the ``config.json`` fields (768 × 12 × 12, patch 16, 224 px, intermediate 3072, GELU,
  qkv bias) are verified; ``layer_norm_eps`` is 1e-6, the value of the later hub revision that
  matches the timm-trained weights (early revisions said 1e-12). The built module has exactly the
  85,798,656 parameters of ``ViTModel(add_pooling_layer=False)``. Whether the hub file carries a
  ``vit.`` prefix or ``pooler.*`` keys was **not verified**; both are accepted (the prefix is
  stripped, the pooler, which ``add_pooling_layer=False`` never uses, is dropped explicitly).
* Phikon-v2: width, depth, heads and patch size are verified; a plain-MLP ``Dinov2Model`` with
  these values has 303,351,808 parameters, which matches the published 303.4M. The remaining
  ``config.json`` fields (``layerscale_value``, ``layer_norm_eps``, registers) were **not
  retrieved**: no registers and eps 1e-6 (the Dinov2 default) are **inferred**. The key names are
  the transformers-4.x Dinov2 names (**inferred** from the library, not from the file).
"""

from __future__ import annotations

from collections.abc import Callable

from slidestream.encoders.hf_layout import HFVisionTransformer, HFViTConfig
from slidestream.encoders.spec import IMAGENET_MEAN, IMAGENET_STD, EncoderSpec, KeyMap, ResizeRecipe

PHIKON = HFViTConfig(
    hidden_size=768,
    num_layers=12,
    num_heads=12,
    patch_size=16,
    image_size=224,
    layer_norm_eps=1e-6,
    layout="vit",
)
PHIKON_V2 = HFViTConfig(
    hidden_size=1024,
    num_layers=24,
    num_heads=16,
    patch_size=16,
    image_size=224,
    layer_norm_eps=1e-6,
    layout="dinov2",
)


def _builder(cfg: HFViTConfig) -> Callable[[], HFVisionTransformer]:
    def build() -> HFVisionTransformer:
        return HFVisionTransformer(cfg)

    return build


SPECS: tuple[EncoderSpec, ...] = (
    EncoderSpec(
        name="phikon",
        family="phikon",
        description="Phikon (Owkin), iBOT ViT-B/16; CLS of last_hidden_state",
        embed_dim=768,
        input_size=224,
        tile_size=224,
        native_mpp=0.5,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        resize=ResizeRecipe(
            224,
            None,
            "bilinear",
            mode="square",
            source="Resize(224, BILINEAR), no crop (TRIDENT; ViTImageProcessor)",
        ),
        pooling="cls",
        expected_params=85_798_656,
        published_params=85_800_000,
        published_source="85.8M (lazyslide-models vision/phikon.py)",
        builder=_builder(PHIKON),
        hf_repo="owkin/phikon",
        weight_files=("model.safetensors", "pytorch_model.bin"),
        gated=False,
        license="Owkin non-commercial (hub: other; not verified offline)",
        default_precision="fp32",
        key_map=KeyMap(strip_prefixes=("module.", "vit."), drop=(r"^pooler\.",)),
        notes="File prefix / pooler keys not verified; both tolerated.",
    ),
    EncoderSpec(
        name="phikon-v2",
        family="phikon",
        description="Phikon-v2 (Owkin), DINOv2 ViT-L/16; CLS of last_hidden_state",
        embed_dim=1024,
        input_size=224,
        tile_size=224,
        native_mpp=0.5,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        resize=ResizeRecipe(224, 224, "bilinear", source="Resize(224) → CenterCrop(224) (TRIDENT)"),
        pooling="cls",
        expected_params=303_351_808,
        published_params=303_400_000,
        published_source="303.4M (lazyslide-models vision/phikon.py)",
        builder=_builder(PHIKON_V2),
        hf_repo="owkin/phikon-v2",
        weight_files=("model.safetensors",),
        gated=False,
        license="Owkin non-commercial (hub: other; not verified offline)",
        default_precision="fp32",
        notes="Key names and config beyond width/depth/heads/patch inferred; see phikon.py.",
    ),
)
