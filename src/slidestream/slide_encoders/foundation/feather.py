"""FEATHER-24K (MahmoodLab MIL-Lab): a supervised gated ABMIL used as a slide encoder.

The released models (``MahmoodLab/abmil.base.<encoder>.pc108-24k``) are ABMILs trained on a
108-class pan-cancer task; the slide embedding is ``forward_features``: the attention-weighted
mean of the *embedded* tile features (512-d). Keys follow the remote ``ABMILModel``, which wraps
``ABMIL`` as ``.model``: ``model.patch_embed.0.*``, ``model.global_attn.attention_{a,b}.0.*``,
``model.global_attn.attention_c.*``; a ``model.classifier.*`` head, when a file has one, is
deliberately left out (TRIDENT does not use it either). Dropout is inactive at inference.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from slidestream.encoders.spec import KeyMap
from slidestream.slide_encoders.cobra import GatedAttention
from slidestream.slide_encoders.foundation.spec import (
    InputRequirement,
    SlideEncoderSpec,
    SlideInput,
)

__all__ = ["SPECS", "FeatherABMIL"]


class _ABMIL(nn.Module):
    def __init__(
        self, in_dim: int, embed_dim: int, attn_dim: int, num_fc_layers: int, dropout: float
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        d = in_dim
        for _ in range(num_fc_layers - 1):  # MIL-Lab create_mlp: hidden layers end with dropout
            layers += [nn.Linear(d, embed_dim), nn.ReLU(), nn.Dropout(dropout)]
            d = embed_dim
        layers += [nn.Linear(d, embed_dim), nn.ReLU()]  # end_with_fc=False, no final dropout
        self.patch_embed = nn.Sequential(*layers)
        self.global_attn = GatedAttention(embed_dim, attn_dim, dropout > 0)


class FeatherABMIL(nn.Module):
    """``ABMILModel`` of MIL-Lab without its classifier; :meth:`embed` is ``forward_features``."""

    def __init__(
        self,
        in_dim: int = 768,
        embed_dim: int = 512,
        attn_dim: int = 384,
        num_fc_layers: int = 1,
        dropout: float = 0.25,
    ) -> None:
        super().__init__()
        self.model = _ABMIL(in_dim, embed_dim, attn_dim, num_fc_layers, dropout)

    def attention(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """Softmax attention over tiles ``(N,)`` and embedded features ``(N, 512)``."""
        h = self.model.patch_embed(features)
        return torch.softmax(self.model.global_attn(h), dim=0), h

    def embed(self, slide: SlideInput) -> Tensor:
        a, h = self.attention(slide.features)
        return a @ h


def _spec(name: str, repo_tag: str, encoder: tuple[str, ...], dim: int, mpp_tile: tuple[float, int],
          params: int) -> SlideEncoderSpec:
    return SlideEncoderSpec(
        name=name,
        family="feather",
        description=f"FEATHER-24K gated ABMIL (PC-108 supervised) on {encoder[0]} features",
        embed_dim=512,
        requirement=InputRequirement(encoder, dim, mpp_tile[0], mpp_tile[1]),
        expected_params=params,
        published_params=900_000,
        published_source="MIL-Lab README ('0.9M')",
        builder=lambda **cfg: FeatherABMIL(**{"in_dim": dim, **cfg}),
        hf_repo=f"MahmoodLab/abmil.base.{repo_tag}.pc108-24k",
        weight_files=("model.safetensors",),
        key_map=KeyMap(drop=(r"^model\.classifier\.",)),
        license="CC-BY-NC-ND-4.0",
        gated=True,
        config_file="config.json",
        config_keys=("in_dim", "embed_dim", "attn_dim", "num_fc_layers"),
        notes="Embedding = attention-weighted mean of the embedded (512-d) tile features.",
    )


SPECS = (
    _spec("feather", "conch_v15", ("conch-v1.5", "conch_v15", "conchv1_5"), 768, (0.5, 512), 788_097),
    _spec("feather-uni2", "uni_v2", ("uni2-h", "uni_v2"), 1536, (0.5, 256), 1_181_313),
    _spec("feather-uni", "uni", ("uni", "uni_v1"), 1024, (0.5, 256), 919_169),
)
