"""H0-mini (Bioptimus): ViT-B/14 with 4 registers and a SwiGLU MLP, distilled from H-optimus-0.

Every loader calls ``timm.create_model("hf-hub:bioptimus/H0-mini", pretrained=True,
mlp_layer=SwiGLUPacked, act_layer=SiLU)``; the rest comes from the hub ``config.json``, which was
not retrieved. What is **inferred** (ZOO.md §3.3): architecture ``vit_base_patch14_reg4_dinov2``
at 224 px with ``mlp_ratio`` 5.33334 (packed ``fc1`` 4096 → SwiGLU hidden 2048), LayerScale, and
``global_pool=""``: the model card shows ``model(x)`` returning (1, 261, 768) = CLS + 4 registers
+ 16×16 patches. That configuration has 85,739,520 parameters, matching the published 85.7M; a
GELU MLP would also round to 85.7M but contradicts the explicit SwiGLU arguments.

Two embeddings, both in use (ZOO.md §3.3): ``h0-mini-cls`` = CLS (768; TRIDENT default) and
``h0-mini-cls-mean`` = CLS ‖ mean of the patch tokens, registers excluded (1536; the model card,
slide2vec, lazyslide). Normalisation: H-optimus statistics; 224 px at 0.5 µm/px.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from timm.layers import SwiGLUPacked
from torch import nn

from slidestream.encoders.spec import EncoderSpec, ResizeRecipe
from slidestream.encoders.vit_timm import HOPTIMUS_MEAN, HOPTIMUS_STD, _timm

H0_MINI_KWARGS: dict[str, Any] = dict(
    img_size=224,
    mlp_ratio=5.33334,
    mlp_layer=SwiGLUPacked,
    act_layer=nn.SiLU,
    num_classes=0,
    global_pool="",
    dynamic_img_size=True,
)

H0_MINI_CLS = EncoderSpec(
    name="h0-mini-cls",
    family="bioptimus",
    description="H0-mini (Bioptimus), ViT-B/14, 4 registers, SwiGLU; CLS embedding",
    embed_dim=768,
    input_size=224,
    tile_size=224,
    native_mpp=0.5,
    mean=HOPTIMUS_MEAN,
    std=HOPTIMUS_STD,
    resize=ResizeRecipe(
        224,
        224,
        "bicubic",
        source="Resize(224, BICUBIC) → CenterCrop(224) (slide2vec, lazyslide)",
    ),
    pooling="cls",
    num_prefix_tokens=5,
    expected_params=85_739_520,
    published_params=85_700_000,
    published_source="85.7M (lazyslide-models vision/h_optimus.py)",
    builder=_timm("vit_base_patch14_reg4_dinov2", **H0_MINI_KWARGS),
    hf_repo="bioptimus/H0-mini",
    weight_files=("model.safetensors", "pytorch_model.bin"),
    gated=True,
    license="CC-BY-NC-ND-4.0",
    default_precision="fp16",
    notes="CLS only (TRIDENT default); h0-mini-cls-mean is the model card's CLS ‖ patch mean.",
)
H0_MINI_CLS_MEAN = replace(
    H0_MINI_CLS,
    name="h0-mini-cls-mean",
    description="H0-mini (Bioptimus), ViT-B/14, 4 registers, SwiGLU; CLS ‖ mean(tokens[5:])",
    embed_dim=1536,
    pooling="cls+mean",
    notes="CLS ‖ mean of patch tokens (model card, slide2vec, lazyslide); h0-mini-cls is CLS only.",
)

SPECS: tuple[EncoderSpec, ...] = (H0_MINI_CLS, H0_MINI_CLS_MEAN)
