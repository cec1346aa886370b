"""CTransPath (TransPath; CHIEF's retrained copy): Swin-T with a convolutional patch stem.

Official construction (Xiyue-Wang/TransPath: ctran.py; CHIEF models/ctran.py; TRIDENT
model_zoo/ctranspath): ``timm.create_model("swin_tiny_patch4_window7_224",
embed_layer=ConvStem, pretrained=False)`` on TransPath's patched timm 0.5.4, ``head`` replaced by
``Identity``, and the file's ``model`` entry loaded strictly. Swin-T: embed 96, depths 2-2-6-2,
heads 3-6-12-24, window 7, MLP ratio 4, patch norm, no absolute positions. The stem (ZOO.md §2
corrects ENCODERS.md: it is built with ``embed_dim=96``): Conv3×3/2 (3→12, no bias) → BN → ReLU →
Conv3×3/2 (12→24, no bias) → BN → ReLU → Conv1×1 (24→96, bias), then ``patch_embed.norm``
LayerNorm(96). Embedding: final LayerNorm over the 7×7 tokens, averaged: 768.

Here the same network is timm 1.x's Swin (identical maths; it keeps features NHWC and puts each
``downsample`` at the start of the next stage) with ``ConvStem`` emitting NHWC. timm's own Swin
``checkpoint_filter_fn`` converts the 0.5.4 layout — ``layers.{i}.downsample`` →
``layers.{i+1}.downsample`` — and drops the ``relative_position_index`` and ``attn_mask`` buffers,
which timm 1.x recomputes (they are functions of the window size and resolution, not learned).
Everything else must match strictly, so either release file (``ctranspath.pth`` or
``CHIEF_CTransPath.pth``, same keys) and a file saved from this module both load.

Preprocessing: ``Resize(224)`` bilinear, no crop, ImageNet statistics (CHIEF, TRIDENT); 256-px
tiles at 10× (≈1 µm/px, TRIDENT/CHIEF; TransPath's README: "first try 1.0 mpp"). The stem, like
CHIEF's copy, refuses inputs other than 224 px.
"""

from __future__ import annotations

from typing import Any

import timm
import torch
from timm.models.swin_transformer import checkpoint_filter_fn
from torch import nn

from slidestream.encoders.spec import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    EncoderSpec,
    KeyMap,
    ResizeRecipe,
    StateDict,
)


class ConvStem(nn.Module):
    """TransPath's ConvStem with timm 1.x's patch-embed interface (NHWC output)."""

    def __init__(
        self,
        img_size: int | tuple[int, int] = 224,
        patch_size: int = 4,
        in_chans: int = 3,
        embed_dim: int = 96,
        norm_layer: Any = None,
        strict_img_size: bool = True,
        output_fmt: str = "NHWC",
        **_: Any,
    ) -> None:
        super().__init__()
        if patch_size != 4 or embed_dim % 8 or output_fmt != "NHWC":
            raise ValueError("ConvStem supports patch 4, embed_dim % 8 == 0 and NHWC output")
        size = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        self.img_size = (int(size[0]), int(size[1]))
        self.patch_size = (patch_size, patch_size)
        self.grid_size = (self.img_size[0] // patch_size, self.img_size[1] // patch_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.strict_img_size = strict_img_size
        layers: list[nn.Module] = []
        c_in, c_out = in_chans, embed_dim // 8
        for _ in range(2):
            layers += [
                nn.Conv2d(c_in, c_out, kernel_size=3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
            ]
            c_in, c_out = c_out, c_out * 2
        layers.append(nn.Conv2d(c_in, embed_dim, kernel_size=1))
        self.proj = nn.Sequential(*layers)
        self.norm = norm_layer(embed_dim) if norm_layer else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.strict_img_size and tuple(x.shape[-2:]) != self.img_size:
            raise ValueError(
                f"CTransPath runs at {self.img_size[0]} px only, got {x.shape[-2]}x{x.shape[-1]}"
            )
        return self.norm(self.proj(x).permute(0, 2, 3, 1))


def build_ctranspath(**overrides: Any) -> nn.Module:
    """Swin-T + ConvStem, no head; ``overrides`` are for tests only."""
    kwargs: dict[str, Any] = dict(embed_layer=ConvStem, num_classes=0, **overrides)
    return timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, **kwargs)


def from_timm_05(state_dict: StateDict, model: nn.Module) -> StateDict:
    """timm's Swin checkpoint filter: 0.5.4 layout → 1.x layout (see the module docstring)."""
    return checkpoint_filter_fn(dict(state_dict), model)


SPECS: tuple[EncoderSpec, ...] = (
    EncoderSpec(
        name="ctranspath",
        family="ctranspath",
        description="CTransPath (TransPath / CHIEF), Swin-T with a conv stem; mean of tokens",
        embed_dim=768,
        input_size=224,
        tile_size=256,
        native_mpp=1.0,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        resize=ResizeRecipe(224, None, "bilinear", source="Resize(224), no crop (CHIEF, TRIDENT)"),
        pooling="gap",
        expected_params=27_520_038,
        published_params=27_500_000,
        published_source="27.5M (lazyslide-models)",
        builder=build_ctranspath,
        hf_repo="MahmoodLab/hest-bench",
        hf_repo_type="dataset",
        weight_files=(
            "fm_v1/ctranspath/CHIEF_CTransPath.pth",
            "CHIEF_CTransPath.pth",
            "ctranspath.pth",
        ),
        gated=False,
        license="GPL-3.0 (TransPath weights); AGPL-3.0 (CHIEF weights)",
        default_precision="fp32",
        key_map=KeyMap(fixup=from_timm_05),
        extra={"weights_url": "TransPath README (Google Drive) / CHIEF README"},
        notes=(
            "Two weight files share this architecture: TransPath's ctranspath.pth and CHIEF's "
            "CHIEF_CTransPath.pth (the one CHIEF/TITAN-era tools pair with). STAMP adds "
            "CenterCrop(224) for the TransPath file; a no-op at 256→224 here."
        ),
    ),
)
