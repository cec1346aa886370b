"""Prov-GigaPath slide encoder (Xu et al., Nature 2024): LongNet over GigaPath tile features.

``LongNetViT`` (``gigapath_slide_enc12l768d``): ``patch_embed.proj`` 1536→768, plus a fixed 2-D
sin-cos position of each tile's grid cell, a CLS token, a 12-layer LongNet encoder (dilated
attention, 16 heads, segment lengths ``[1024, 5792, 32768, 185363, 1048576]`` and ratios
``[1, 2, 4, 8, 16]``), and ``norm``. The dilated attention runs in plain torch (:mod:`.longnet`):
no flash-attn needed.

Positions [code quirk]: index = ``floor(x/t)·1000 + floor(y/t) + 1`` with ``t`` the tile size
in level-0 pixels (TRIDENT passes ``patch_size_level0``; slide2vec rescales to 0.5 um/px and uses
256: the same cells). The row of the MAE table ``get_2d_sincos_pos_embed(768, 1000)`` is computed
on demand in float64 (the reference holds a 3 GB buffer): its first half encodes the y index,
the second the x index. A y index ≥ 1000 wraps into the next row, as in the reference.

Tile order matters (segments and dilation follow sequence position): tiles are fed in store
order, which is the tiling order. Output conventions differ between tools; two are offered:
``gigapath`` (the official demo's ``last_layer_embed`` with ``global_pool=True``: mean of the
tile tokens of layer 12, before the encoder's final LayerNorm, then ``norm``) and
``gigapath-trident`` (TRIDENT: the same pooling on layer 11's output).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from slidestream.slide_encoders.foundation.longnet import LongNetEncoder
from slidestream.slide_encoders.foundation.spec import (
    InputRequirement,
    SlideEncoderSpec,
    SlideInput,
)

__all__ = ["SPECS", "GigaPathSlide", "sincos_rows"]

SLIDE_NGRIDS = 1000


def sincos_rows(pos: Tensor, dim: int = 768, ngrids: int = SLIDE_NGRIDS) -> Tensor:
    """Rows ``pos`` (≥ 1; 0 is the CLS row of zeros) of MAE's ``get_2d_sincos_pos_embed``."""
    cell = pos.to(torch.float64) - 1
    i, j = torch.div(cell, ngrids, rounding_mode="floor"), torch.remainder(cell, ngrids)
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim / 4))

    def one_d(p: Tensor) -> Tensor:
        out = p[:, None] * omega[None]
        return torch.cat([torch.sin(out), torch.cos(out)], dim=1)

    rows = torch.cat([one_d(j), one_d(i)], dim=1)  # meshgrid(w, h): first half is j (y)
    return torch.where((pos == 0)[:, None], torch.zeros_like(rows), rows).float()


class _PatchEmbed(nn.Module):
    def __init__(self, in_chans: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(in_chans, dim)


class GigaPathSlide(nn.Module):
    """``LongNetViT`` with its pooling convention (``layer``: index into the encoder states,
    0 = input, 12 = last layer before the final LayerNorm, ``None`` = ``encoder_out``)."""

    def __init__(self, in_chans: int = 1536, dim: int = 768, depth: int = 12, heads: int = 16,
                 layer: int | None = 12, global_pool: bool = True,
                 segment_lengths: tuple[int, ...] = (1024, 5792, 32768, 185363, 1048576),
                 dilated_ratios: tuple[int, ...] = (1, 2, 4, 8, 16)) -> None:
        super().__init__()
        self.patch_embed = _PatchEmbed(in_chans, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.encoder = LongNetEncoder(dim, depth, heads, 4 * dim, segment_lengths, dilated_ratios)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.layer, self.global_pool = layer, global_pool
        self.slide_ngrids = SLIDE_NGRIDS

    def positions(self, coords: Tensor, tile_size: float) -> Tensor:
        cells = torch.floor(coords.double() / tile_size)
        n = self.slide_ngrids
        pos = (cells[:, 0] * n + cells[:, 1]).long() + 1
        if len(pos) and (pos.min() < 1 or pos.max() > n**2):
            raise ValueError(f"tile grid exceeds GigaPath's {n}x{n} position table")
        return pos

    def hidden_states(self, features: Tensor, coords: Tensor, tile_size: float) -> tuple[Tensor, list[Tensor]]:
        """``(encoder_out, states)`` of one slide, each ``(1, 1+N, dim)``."""
        rows = sincos_rows(self.positions(coords, tile_size), self.cls_token.shape[-1],
                           self.slide_ngrids)
        x = self.patch_embed.proj(features) + rows.to(features)
        x = torch.cat([self.cls_token[0], x])[None]  # the CLS position row is zeros
        return self.encoder(x)

    def embed(self, slide: SlideInput) -> Tensor:
        if slide.coords is None or slide.patch_size_level0 is None:
            raise ValueError("GigaPath needs tile coordinates and the level-0 tile size")
        out, states = self.hidden_states(slide.features, slide.coords, slide.patch_size_level0)
        x = out if self.layer is None else states[self.layer]
        return self.norm(x[0, 1:].mean(0)) if self.global_pool else self.norm(x[0])[0]


def _spec(name: str, layer: int, description: str) -> SlideEncoderSpec:
    return SlideEncoderSpec(
        name=name,
        family="gigapath",
        description=description,
        embed_dim=768,
        requirement=InputRequirement(
            ("gigapath", "prov-gigapath"), 1536, 0.5, 256, uses_coords=True,
            note="GigaPath tile encoder, 256-px tiles at 0.5 um/px, level-0 coordinates",
        ),
        expected_params=86_330_880,
        published_params=86_300_000,
        published_source="MIL-Lab README (86.3M)",
        builder=lambda **cfg: GigaPathSlide(**{"layer": layer, "global_pool": True, **cfg}),
        hf_repo="prov-gigapath/prov-gigapath",
        weight_files=("slide_encoder.pth",),
        license="Prov-GigaPath licence (Apache-2.0 with conditions), gated",
        gated=True,
        default_precision="fp16",
        notes="LongNet dilated attention in plain torch; tile order = store order.",
    )


SPECS = (
    _spec("gigapath", 12, "Prov-GigaPath LongNet slide encoder (official demo: layer-12 mean → norm)"),
    _spec("gigapath-trident", 11, "Prov-GigaPath LongNet slide encoder (TRIDENT: layer-11 mean → norm)"),
)
