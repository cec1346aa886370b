"""Hibou-B and Hibou-L (HistAI): DINOv2 ViT/14 with 4 registers, SwiGLU FFN and LayerScale.

The hub repositories ship a ``model.safetensors`` for a custom ``Dinov2ModelWithRegisters``
(``trust_remote_code``, transformers-4.x era). The module here reproduces that file's key names
with plain torch (``hf_layout.HFVisionTransformer``), so the file loads strictly with no renaming
and no transformers install.

What is verified and what is inferred (see /work/shared/ENCODERS.md, Hibou section):

* verified from the Hibou-B ``config.json``: width 768, 12 layers, 12 heads, patch 14, 224 px,
  4 registers, ``use_swiglu_ffn=true``, ``layer_norm_eps=1e-6``, qkv bias;
* verified from the HistAI repository: the SwiGLU width formula (2048 for D=768), the token order
  ``[CLS, registers, patches]``, the embedding (CLS after the final LayerNorm = ``pooler_output``)
  and the preprocessing constants;
* **inferred**: the exact key names of the hub file. They are the transformers-4.x ``Dinov2Model``
  names plus ``embeddings.register_tokens`` of shape (1, 4, D), with ``mlp.weights_in`` /
  ``mlp.weights_out`` for the SwiGLU FFN, ``layer_scale{1,2}.lambda1`` and
  ``embeddings.mask_token``. The custom modeling file and the file's key list were not available
  offline; one independent third-party converter uses the same names. If a real file differs,
  the strict load fails with a ``WeightsError`` listing the first differing keys;
* **inferred** for Hibou-L: the same layout at ViT-L/14 with SwiGLU, from the parameter count
  (303,659,264 with SwiGLU matches the published 303.7M; a plain MLP would give 303,233,024).
"""

from __future__ import annotations

from collections.abc import Callable

from slidestream.encoders.hf_layout import HFVisionTransformer, HFViTConfig
from slidestream.encoders.spec import EncoderSpec, ResizeRecipe

HIBOU_MEAN = (0.7068, 0.5755, 0.722)
HIBOU_STD = (0.195, 0.2316, 0.1816)

HIBOU_B = HFViTConfig(
    hidden_size=768,
    num_layers=12,
    num_heads=12,
    patch_size=14,
    image_size=224,
    layer_norm_eps=1e-6,
    num_register_tokens=4,
    use_swiglu_ffn=True,
)
HIBOU_L = HFViTConfig(
    hidden_size=1024,
    num_layers=24,
    num_heads=16,
    patch_size=14,
    image_size=224,
    layer_norm_eps=1e-6,
    num_register_tokens=4,
    use_swiglu_ffn=True,
)


def _builder(cfg: HFViTConfig) -> Callable[[], HFVisionTransformer]:
    def build() -> HFVisionTransformer:
        return HFVisionTransformer(cfg)

    return build


_RESIZE = ResizeRecipe(
    224,
    224,
    "bicubic",
    mode="square",
    source="Resize((224,224), BICUBIC) → CenterCrop(224) (HistAI/hibou example.ipynb)",
)
_KEY_NOTE = "Hub key names inferred (transformers-4.x Dinov2 + register_tokens); see hibou.py."

SPECS: tuple[EncoderSpec, ...] = (
    EncoderSpec(
        name="hibou-b",
        family="hibou",
        description="Hibou-B (HistAI), DINOv2 ViT-B/14, 4 registers, SwiGLU; CLS embedding",
        embed_dim=768,
        input_size=224,
        tile_size=224,
        native_mpp=0.5,
        mean=HIBOU_MEAN,
        std=HIBOU_STD,
        resize=_RESIZE,
        pooling="cls",
        num_prefix_tokens=5,
        expected_params=85_741_056,
        published_params=85_700_000,
        published_source="85.7M (lazyslide-models vision/hibou.py)",
        builder=_builder(HIBOU_B),
        hf_repo="histai/hibou-b",
        weight_files=("model.safetensors",),
        gated=False,
        license="Apache-2.0",
        default_precision="fp16",
        notes=_KEY_NOTE,
    ),
    EncoderSpec(
        name="hibou-l",
        family="hibou",
        description="Hibou-L (HistAI), DINOv2 ViT-L/14, 4 registers, SwiGLU; CLS embedding",
        embed_dim=1024,
        input_size=224,
        tile_size=224,
        native_mpp=0.5,
        mean=HIBOU_MEAN,
        std=HIBOU_STD,
        resize=_RESIZE,
        pooling="cls",
        num_prefix_tokens=5,
        expected_params=303_659_264,
        published_params=303_700_000,
        published_source="303.7M (lazyslide-models); 304M (hf: histai/hibou-L model page)",
        builder=_builder(HIBOU_L),
        hf_repo="histai/hibou-L",
        weight_files=("model.safetensors",),
        gated=True,
        license="Apache-2.0",
        default_precision="fp16",
        notes=_KEY_NOTE + " SwiGLU for Hibou-L inferred from the parameter count.",
    ),
)
