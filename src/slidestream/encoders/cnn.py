"""Convolutional encoders: KimiaNet (DenseNet-121) and CLAM's truncated ResNet-50.

KimiaNet (KimiaLabMayo/KimiaNet, read at commit 8a2f120): the PyTorch sample wraps torchvision's
``densenet121().features`` as ``nn.Sequential(features, AdaptiveAvgPool2d(1))`` inside a module
with a 30-class ``fc_4`` head and then ``nn.DataParallel``, and loads the weights strictly into
that. The published file therefore has keys ``module.model.0.<densenet features keys>`` and
``module.fc_4.*``. ``KimiaNet`` below keeps the same ``model.0`` path, so after ``module.`` is
stripped the backbone keys match one to one; ``fc_4`` is dropped by name (it is the training
classifier, not part of the embedding). These names are **inferred** from the wrapper code (the
``.pth`` is not in the repository snapshot). The legacy torchvision spelling ``norm.1`` /
``conv.2`` is renamed to ``norm1`` / ``conv2`` in case the file predates that change.
The embedding is the global average of ``features``: torchvision's ``DenseNet.forward`` would apply
a ReLU after ``norm5``, the sample's ``Sequential`` does not, and neither does this module (the
Keras sample, ``GlobalAveragePooling2D(dnx.layers[-3].output)``, agrees).

CLAM ResNet-50-trunc: timm ``resnet50(features_only=True, out_indices=(3,))`` keeps ``conv1`` …
``layer3`` (1024 channels, stride 16); the embedding is its adaptive average pool. The standard
timm / torchvision ResNet-50 files carry ``layer4.*`` and ``fc.*`` as well; those are dropped by
name. torchvision is imported only for the DenseNet definition; it is installed with timm.
"""

from __future__ import annotations

import timm
import torch
from torch import nn
from torchvision.models import densenet121

from slidestream.encoders.spec import IMAGENET_MEAN, IMAGENET_STD, EncoderSpec, KeyMap, ResizeRecipe


class KimiaNet(nn.Module):
    """DenseNet-121 features → global average pool (no final ReLU), 1024-d."""

    def __init__(self) -> None:
        super().__init__()
        self.model = nn.Sequential(densenet121(weights=None).features, nn.AdaptiveAvgPool2d(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.model(x), 1)


class ResNet50Trunc(nn.Module):
    """ResNet-50 up to ``layer3`` → adaptive average pool, 1024-d (CLAM ``resnet50_trunc``)."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk = timm.create_model(
            "resnet50", pretrained=False, features_only=True, out_indices=(3,), num_classes=0
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(x)[-1].mean(dim=(2, 3))


SPECS: tuple[EncoderSpec, ...] = (
    EncoderSpec(
        name="kimianet",
        family="cnn",
        description="KimiaNet (KimiaLab), DenseNet-121 features + GAP, no final ReLU",
        embed_dim=1024,
        input_size=1000,
        tile_size=1000,
        native_mpp=0.5,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        resize=ResizeRecipe(
            1000,
            None,
            "bilinear",
            mode="square",
            source="no resize at 1000 px (PyTorch sample); Keras sample resizes other sizes",
        ),
        pooling="gap",
        expected_params=6_953_856,
        published_params=7_000_000,
        published_source="≈7.0M DenseNet-121 features (ENCODERS.md summary table)",
        builder=KimiaNet,
        weight_files=("KimiaNetPyTorchWeights.pth",),
        gated=False,
        license="KimiaLab end-user agreement (agreement.pdf), research use",
        default_precision="fp32",
        key_map=KeyMap(
            strip_prefixes=("module.",),
            drop=(r"^fc_4\.",),
            rename=((r"(denselayer\d+\.(?:norm|relu|conv))\.([12])\.", r"\1\2."),),
        ),
        extra={"weights_url": "https://github.com/KimiaLabMayo/KimiaNet (KimiaNet_Weights/)"},
        notes="Key names inferred from the published wrapper code.",
    ),
    EncoderSpec(
        name="resnet50-trunc",
        family="cnn",
        description="CLAM ResNet-50 (ImageNet) truncated after layer3 + average pool",
        embed_dim=1024,
        input_size=224,
        tile_size=256,
        native_mpp=0.5,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        resize=ResizeRecipe(
            224, None, "bilinear", source="Resize(224), bilinear (CLAM transform_utils.py)"
        ),
        pooling="gap",
        expected_params=8_543_296,
        published_params=None,
        published_source="no published figure for the truncated trunk (8.54M is computed)",
        builder=ResNet50Trunc,
        hf_repo="timm/resnet50.tv_in1k",
        weight_files=(
            "model.safetensors",
            "pytorch_model.bin",
            "resnet50-0676ba61.pth",
            "resnet50-19c8e357.pth",
        ),
        gated=False,
        license="BSD-3-Clause (torchvision weights)",
        default_precision="fp32",
        key_map=KeyMap(
            strip_prefixes=("module.",),
            drop=(r"^layer4\.", r"^fc\."),
            rename=((r"^(?!trunk\.)", "trunk."),),  # files saved from this module pass as-is
        ),
    ),
)
