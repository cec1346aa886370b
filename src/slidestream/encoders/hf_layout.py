"""Plain-torch transformers with the key names of Hugging Face ``ViTModel`` and ``Dinov2Model``.

Hibou and Phikon are released as transformers checkpoints. ``transformers`` is not a dependency,
and its module names change between releases (5.x renames the Dinov2-with-registers attention to
``q_proj``/``k_proj``/``v_proj``), so the checkpoint layout is reproduced here with modules whose
attribute paths spell the 4.x names the hub files were written with:

ViT (``ViTModel``, used by Phikon)::

    embeddings.{cls_token, position_embeddings, patch_embeddings.projection.*}
    encoder.layer.{i}.layernorm_before.*
    encoder.layer.{i}.attention.attention.{query,key,value}.*
    encoder.layer.{i}.attention.output.dense.*
    encoder.layer.{i}.layernorm_after.*
    encoder.layer.{i}.intermediate.dense.*
    encoder.layer.{i}.output.dense.*
    layernorm.*

Dinov2 (``Dinov2Model``, used by Phikon-v2; Hibou's custom ``Dinov2ModelWithRegisters`` adds
``embeddings.register_tokens``)::

    embeddings.{cls_token, mask_token, position_embeddings, patch_embeddings.projection.*}
    [embeddings.register_tokens]
    encoder.layer.{i}.norm1.*
    encoder.layer.{i}.attention.attention.{query,key,value}.*
    encoder.layer.{i}.attention.output.dense.*
    encoder.layer.{i}.layer_scale1.lambda1
    encoder.layer.{i}.norm2.*
    encoder.layer.{i}.mlp.{fc1,fc2}.*            (plain MLP)
    encoder.layer.{i}.mlp.{weights_in,weights_out}.*   (SwiGLU FFN)
    encoder.layer.{i}.layer_scale2.lambda1
    layernorm.*

``mask_token`` is only used for masked-image training; it is a parameter of ``Dinov2Model`` and
therefore part of what ``save_pretrained`` writes, so it is kept here to make strict loading
possible. ``forward`` returns ``last_hidden_state`` (all tokens after the final LayerNorm):
``[CLS, registers..., patches]``.

Only the native grid is supported: transformers interpolates position embeddings with its own
scale-factor recipe, and guessing it would give silently different embeddings. The encoder
preprocessing always produces the native input size, so this never triggers in the pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class HFViTConfig:
    """The handful of ``config.json`` fields that change shapes or numerics."""

    hidden_size: int
    num_layers: int
    num_heads: int
    patch_size: int
    image_size: int
    layer_norm_eps: float
    mlp_ratio: float = 4.0
    num_register_tokens: int = 0
    use_swiglu_ffn: bool = False
    layout: str = "dinov2"  # "dinov2" or "vit"

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    @property
    def swiglu_hidden(self) -> int:
        """DINOv2's SwiGLU width: 2/3 of the MLP width, rounded up to a multiple of 8."""
        hidden = int(self.hidden_size * self.mlp_ratio)
        return (int(hidden * 2 / 3) + 7) // 8 * 8


class _PatchEmbeddings(nn.Module):
    def __init__(self, cfg: HFViTConfig) -> None:
        super().__init__()
        self.projection = nn.Conv2d(
            3, cfg.hidden_size, kernel_size=cfg.patch_size, stride=cfg.patch_size
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projection(x).flatten(2).transpose(1, 2)


class HFEmbeddings(nn.Module):
    """CLS + patches + position embedding, then (Dinov2 with registers) the register tokens."""

    def __init__(self, cfg: HFViTConfig) -> None:
        super().__init__()
        d = cfg.hidden_size
        self.cfg = cfg
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        if cfg.layout == "dinov2":
            self.mask_token = nn.Parameter(torch.zeros(1, d))
        if cfg.num_register_tokens:
            self.register_tokens = nn.Parameter(torch.zeros(1, cfg.num_register_tokens, d))
        self.patch_embeddings = _PatchEmbeddings(cfg)
        self.position_embeddings = nn.Parameter(torch.zeros(1, cfg.grid * cfg.grid + 1, d))

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        h, w = pixel_values.shape[-2:]
        if h != self.cfg.image_size or w != self.cfg.image_size:
            raise ValueError(
                f"this encoder runs at its native {self.cfg.image_size} px only, got {h}x{w}"
            )
        weight = self.patch_embeddings.projection.weight
        patches = self.patch_embeddings(pixel_values.to(dtype=weight.dtype))
        cls = self.cls_token.expand(patches.shape[0], -1, -1)
        x = torch.cat((cls, patches), dim=1) + self.position_embeddings
        if self.cfg.num_register_tokens:
            regs = self.register_tokens.expand(x.shape[0], -1, -1)
            x = torch.cat((x[:, :1], regs, x[:, 1:]), dim=1)
        return x


class _SelfAttention(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(d, d)
        self.key = nn.Linear(d, d)
        self.value = nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, n, self.heads, d // self.heads).transpose(1, 2)

        out = F.scaled_dot_product_attention(
            split(self.query(x)), split(self.key(x)), split(self.value(x))
        )
        return out.transpose(1, 2).reshape(b, n, d)


class _SelfOutput(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.dense = nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dense(x)


class HFAttention(nn.Module):
    """``attention.attention.{query,key,value}`` + ``attention.output.dense``."""

    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.attention = _SelfAttention(d, heads)
        self.output = _SelfOutput(d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(self.attention(x))


class _Dense(nn.Module):
    """A module whose only child is ``dense`` (ViT ``intermediate`` / ``output``)."""

    def __init__(self, d_in: int, d_out: int) -> None:
        super().__init__()
        self.dense = nn.Linear(d_in, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dense(x)


class ViTLayer(nn.Module):
    """Pre-norm block with the ``ViTLayer`` names (GELU MLP, no LayerScale)."""

    def __init__(self, cfg: HFViTConfig) -> None:
        super().__init__()
        d = cfg.hidden_size
        inner = int(d * cfg.mlp_ratio)
        self.attention = HFAttention(d, cfg.num_heads)
        self.layernorm_before = nn.LayerNorm(d, eps=cfg.layer_norm_eps)
        self.layernorm_after = nn.LayerNorm(d, eps=cfg.layer_norm_eps)
        self.intermediate = _Dense(d, inner)
        self.output = _Dense(inner, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.layernorm_before(x))
        return x + self.output(F.gelu(self.intermediate(self.layernorm_after(x))))


class _LayerScale(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.lambda1 = nn.Parameter(torch.ones(d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.lambda1


class _MLP(nn.Module):
    def __init__(self, d: int, inner: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d, inner)
        self.fc2 = nn.Linear(inner, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class _SwiGLUFFN(nn.Module):
    """``weights_in`` packs gate and value; SiLU(gate) * value → ``weights_out``."""

    def __init__(self, d: int, inner: int) -> None:
        super().__init__()
        self.weights_in = nn.Linear(d, 2 * inner)
        self.weights_out = nn.Linear(inner, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, value = self.weights_in(x).chunk(2, dim=-1)
        return self.weights_out(F.silu(gate) * value)


class Dinov2Layer(nn.Module):
    """Pre-norm block with the ``Dinov2Layer`` names (LayerScale on both branches)."""

    def __init__(self, cfg: HFViTConfig) -> None:
        super().__init__()
        d = cfg.hidden_size
        self.norm1 = nn.LayerNorm(d, eps=cfg.layer_norm_eps)
        self.attention = HFAttention(d, cfg.num_heads)
        self.layer_scale1 = _LayerScale(d)
        self.norm2 = nn.LayerNorm(d, eps=cfg.layer_norm_eps)
        if cfg.use_swiglu_ffn:
            self.mlp: nn.Module = _SwiGLUFFN(d, cfg.swiglu_hidden)
        else:
            self.mlp = _MLP(d, int(d * cfg.mlp_ratio))
        self.layer_scale2 = _LayerScale(d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.layer_scale1(self.attention(self.norm1(x)))
        return x + self.layer_scale2(self.mlp(self.norm2(x)))


class _Encoder(nn.Module):
    def __init__(self, cfg: HFViTConfig) -> None:
        super().__init__()
        block = Dinov2Layer if cfg.layout == "dinov2" else ViTLayer
        self.layer = nn.ModuleList(block(cfg) for _ in range(cfg.num_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layer:
            x = layer(x)
        return x


class HFVisionTransformer(nn.Module):
    """``ViTModel(add_pooling_layer=False)`` / ``Dinov2Model`` layout; returns all tokens."""

    def __init__(self, cfg: HFViTConfig) -> None:
        super().__init__()
        if cfg.layout not in ("dinov2", "vit"):
            raise ValueError(f"unknown layout {cfg.layout!r}")
        self.config = cfg
        self.embeddings = HFEmbeddings(cfg)
        self.encoder = _Encoder(cfg)
        self.layernorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.num_prefix_tokens = 1 + cfg.num_register_tokens
        self._init_weights()

    def _init_weights(self) -> None:
        """Truncated-normal init like the originals, so random-init benchmarks are realistic."""
        for module in self.modules():
            if isinstance(module, nn.Linear | nn.Conv2d):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        emb = self.embeddings
        nn.init.trunc_normal_(emb.position_embeddings, std=0.02)
        nn.init.trunc_normal_(emb.cls_token, std=0.02)
        if self.config.num_register_tokens:
            nn.init.trunc_normal_(emb.register_tokens, std=0.02)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.layernorm(self.encoder(self.embeddings(pixel_values)))
