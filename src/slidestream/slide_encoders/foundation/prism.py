"""PRISM (Shaikovski et al., 2024, Paige): the Perceiver that makes the slide embedding.

PRISM is a Perceiver resampler over Virchow (v1) tile embeddings plus a BioGPT text decoder for
report generation. The slide embedding (``slide_representations(...)['image_embedding']``, what
TRIDENT, STAMP and slide2vec use) needs only the resampler, so only it is built and loaded
(keys under ``image_resampler.``); the decoder, ``img_to_latents`` and the text parts of the
release are deliberately left out.

Resampler: 513 latents × 1280 (latent 0 becomes the slide embedding); 8 Perceiver layers, each a
single-head cross-attention to the tiles (LayerNorm on the latents only, no biases) with a GEGLU
feed-forward, then a 6-block self-attention transformer (``nn.MultiheadAttention``, 8 heads,
no biases, each block with a GEGLU feed-forward). Weight sharing [code quirk]: layers 0 and 1
own cross-attention modules and layers 2–7 reuse layer 1's; only layer 0 owns the transformer
and every layer reuses it. Output: ``cls_norm(latents[0])`` (1280-d). With one slide the
reference adds a float mask of ones to every cross-attention logit, which cancels in the
softmax, so it is omitted.

Loading: ``state_dict()`` of the reference lists shared modules under every alias (573 keys,
87 distinct tensors); a saved file may hold every alias or one of them. :func:`_fill_aliases`
accepts both: it checks that aliases present agree and fills in the missing ones.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from slidestream.encoders.spec import KeyMap
from slidestream.errors import WeightsError
from slidestream.slide_encoders.foundation.spec import (
    InputRequirement,
    SlideEncoderSpec,
    SlideInput,
)

__all__ = ["SPECS", "PrismResampler"]


class _GEGLUFeedForward(nn.Module):
    def __init__(self, dim: int, mult: int = 1) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.net = nn.Sequential(nn.Linear(dim, 2 * dim * mult), nn.Identity(), nn.Linear(dim * mult, dim))

    def forward(self, x: Tensor) -> Tensor:
        h, gates = self.net[0](self.norm(x)).chunk(2, dim=-1)
        return self.net[2](h * F.gelu(gates))


class _CrossAttention(nn.Module):
    def __init__(self, dim: int, context_dim: int) -> None:
        super().__init__()
        self.x_norm = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_kv = nn.Linear(context_dim, 2 * dim, bias=False)
        self.to_out = nn.Linear(dim, dim, bias=False)

    def forward(self, x: Tensor, kv: tuple[Tensor, Tensor]) -> Tensor:
        q = self.to_q(self.x_norm(x))
        return self.to_out(F.scaled_dot_product_attention(q, *kv))

    def keys_values(self, context: Tensor) -> tuple[Tensor, Tensor]:
        k, v = self.to_kv(context).chunk(2, dim=-1)
        return k, v


class _MHSA(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.mha = nn.MultiheadAttention(dim, heads, bias=False, batch_first=True)

    def forward(self, x: Tensor) -> Tensor:
        h = self.norm(x)
        return self.mha(h, h, h, need_weights=False)[0]


class _Perceiver(nn.Module):
    def __init__(self, latents: int, dim: int, context_dim: int, heads: int, depth: int,
                 tf_depth: int, share_xattn_start: int = 1, share_tf_start: int = 0) -> None:
        super().__init__()
        self.latents = nn.Parameter(torch.zeros(latents, dim))
        layers: list[nn.ModuleDict] = []
        for i in range(depth):
            xattn = (nn.ModuleDict({"xattn": _CrossAttention(dim, context_dim), "ff": _GEGLUFeedForward(dim)})
                     if i <= share_xattn_start else layers[-1]["xattn"])
            tf = (nn.ModuleList(nn.ModuleDict({"mhsa": _MHSA(dim, heads), "ff": _GEGLUFeedForward(dim)})
                                for _ in range(tf_depth))
                  if i <= share_tf_start else layers[-1]["tf"])
            layers.append(nn.ModuleDict({"xattn": xattn, "tf": tf}))
        self.layers = nn.ModuleList(layers)

    def forward(self, context: Tensor) -> Tensor:
        x = self.latents[None]
        cache: dict[int, tuple[Tensor, Tensor]] = {}
        for layer in self.layers:
            xattn = layer["xattn"]
            kv = cache.setdefault(id(xattn), xattn["xattn"].keys_values(context))
            x = xattn["xattn"](x, kv) + x
            x = xattn["ff"](x) + x
            for block in layer["tf"]:
                x = block["mhsa"](x) + x
                x = block["ff"](x) + x
        return x


class PrismResampler(nn.Module):
    """PRISM's ``image_resampler`` (``PerceiverResampler``)."""

    def __init__(self, latent_seq: int = 512, latent_dim: int = 1280, context_dim: int = 2560,
                 mhsa_heads: int = 8, perceiver_depth: int = 8, transformer_depth: int = 6) -> None:
        super().__init__()
        self.cls_norm = nn.LayerNorm(latent_dim)
        self.img_norm = nn.LayerNorm(latent_dim)
        self.perceiver = _Perceiver(latent_seq + 1, latent_dim, context_dim, mhsa_heads,
                                    perceiver_depth, transformer_depth)

    def embed(self, slide: SlideInput) -> Tensor:
        return self.cls_norm(self.perceiver(slide.features[None])[0, 0])


_ALIAS = re.compile(r"^perceiver\.layers\.(\d+)\.(xattn|tf)\.(.*)$")


def _canonical(key: str) -> str:
    m = _ALIAS.match(key)
    if not m:
        return key
    layer, part, rest = int(m.group(1)), m.group(2), m.group(3)
    owner = min(layer, 1) if part == "xattn" else 0
    return f"perceiver.layers.{owner}.{part}.{rest}"


def _fill_aliases(state: dict[str, Tensor], model: nn.Module) -> dict[str, Tensor]:
    """Every alias of a shared tensor, from whichever alias the file holds (they must agree)."""
    by_canon: dict[str, Tensor] = {}
    for key, value in state.items():
        canon = _canonical(key)
        if canon in by_canon and not torch.equal(by_canon[canon], value):
            raise WeightsError(None, f"prism: shared tensor {canon} differs between its aliases")
        by_canon.setdefault(canon, value)
    out = {k: v for k, v in state.items() if _canonical(k) == k}
    for key in model.state_dict():
        canon = _canonical(key)
        if key not in out and canon in by_canon:
            out[key] = by_canon[canon]
    return out


SPECS = (
    SlideEncoderSpec(
        name="prism",
        family="prism",
        description="PRISM Perceiver resampler (image_embedding); BioGPT decoder not loaded",
        embed_dim=1280,
        requirement=InputRequirement(
            ("virchow", "virchow-v1"), 2560, 0.5, 224,
            note="Virchow v1 CLS‖mean(patch tokens) 2560-d, 224-px tiles at 20x",
        ),
        expected_params=99_037_440,
        published_params=None,
        published_source="computed (whole PRISM with decoder: 557.7M, lazyslide)",
        builder=lambda **cfg: PrismResampler(**cfg),
        hf_repo="paige-ai/Prism",
        weight_files=("model.safetensors", "pytorch_model.bin"),
        key_map=KeyMap(select_prefix="image_resampler.", fixup=_fill_aliases),
        license="CC-BY-NC-ND-4.0",
        gated=True,
        default_precision="fp16",
        notes="Only the Perceiver is needed for the slide embedding; decoder keys are left out.",
    ),
)
