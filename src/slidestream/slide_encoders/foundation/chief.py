"""CHIEF (Wang et al., Nature 2024): gated ABMIL pre-trained with an organ-text branch.

Only the attention branch makes the slide embedding: ``WSI_feature`` = softmax-attention-weighted
mean of the *input* CTransPath features (768-d); the organ prompt changes only the anatomical
feature and the logits, so it is not needed (TRIDENT passes organ 0). The module still holds every
tensor of ``CHIEF_pretraining.pth`` (classifiers, instance classifiers, ``att_head``,
``text_to_vision``, the ``organ_embedding`` buffer) so the file loads strictly, with the official
key names (``attention_net.0``, ``attention_net.3.attention_a.0``, ...). The official constructor
also reads ``Text_emdding.pth`` from the working directory; that buffer is in the checkpoint, so
it is not needed here.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from slidestream.slide_encoders.cobra import GatedAttention
from slidestream.slide_encoders.foundation.spec import (
    InputRequirement,
    SlideEncoderSpec,
    SlideInput,
)

__all__ = ["SPECS", "Chief"]


class _AttHead(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, 1)


class Chief(nn.Module):
    """``CHIEF(size_arg='small', dropout=True, n_classes=2)`` of hms-dbmi/CHIEF."""

    def __init__(self, in_dim: int = 768, hidden: int = 512, attn_dim: int = 256,
                 n_classes: int = 2, n_organs: int = 19) -> None:
        super().__init__()
        self.attention_net = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(0.25),
            GatedAttention(hidden, attn_dim, dropout=True),
        )
        self.classifiers = nn.Linear(hidden, n_classes)
        self.instance_classifiers = nn.ModuleList(nn.Linear(hidden, 2) for _ in range(n_classes))
        self.att_head = _AttHead(hidden, attn_dim)
        self.text_to_vision = nn.Sequential(nn.Linear(768, hidden), nn.ReLU(), nn.Dropout(0.25))
        self.register_buffer("organ_embedding", torch.zeros(n_organs, 768))

    def attention(self, features: Tensor) -> Tensor:
        """Softmax attention over tiles ``(N,)``."""
        return torch.softmax(self.attention_net(features), dim=0)

    def embed(self, slide: SlideInput) -> Tensor:
        return self.attention(slide.features) @ slide.features


SPECS = (
    SlideEncoderSpec(
        name="chief",
        family="chief",
        description="CHIEF gated ABMIL; embedding = attention-weighted mean of the input features",
        embed_dim=768,
        requirement=InputRequirement(
            ("ctranspath", "chief-ctranspath", "chief_ctranspath"), 768, 1.0, 256,
            note="CHIEF's CTransPath weights (CHIEF_CTransPath.pth), 256-px tiles at 10x",
        ),
        expected_params=1_185_032,
        published_params=1_200_000,
        published_source="lazyslide model card (1.2M)",
        builder=lambda **cfg: Chief(**cfg),
        weight_files=("CHIEF_pretraining.pth", "model_weight/CHIEF_pretraining.pth"),
        license="AGPL-3.0",
        weights_url="https://github.com/hms-dbmi/CHIEF (Google Drive: model_weight/CHIEF_pretraining.pth)",
        notes="Organ prompt not needed for the slide embedding (it only shifts the logits).",
    ),
)
