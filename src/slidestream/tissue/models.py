"""The deep tissue and artifact segmenters: exact architectures, release file layouts, decisions.

Three released models (facts in ``../shared/ZOO.md`` §1c and §5):

- ``hest``: HEST's tissue segmenter, torchvision ``deeplabv3_resnet50`` with ``classifier[4]`` a
  2-class 1x1 conv and no aux head; 512 px tiles at 1 um/px; class 1 is tissue. The release
  (``deeplabv3_seg_v4.ckpt``) is a Lightning checkpoint: ``state_dict`` with a ``model.`` prefix
  and aux-head keys, which the official loaders drop.
- ``grandqc``: GrandQC's tissue detector, smp ``UnetPlusPlus('timm-efficientnet-b0', classes=2)``;
  512 px tiles at 10 um/px after a JPEG q80 round trip; class **0** is tissue. A plain state dict
  (``Tissue_Detection_MPP10.pth``).
- ``grandqc_artifact``: GrandQC's artifact segmenter, smp ``Unet('timm-efficientnet-b0',
  classes=8)``; 512 px tiles at 1 um/px (the MPP1 release); classes below. TRIDENT's state-dict
  conversion ``GrandQC_MPP1_state_dict.pth``; the Zenodo files are pickled modules and are refused
  (reading them runs pickled code), with a message saying how to convert them.

All three use ImageNet mean/std on RGB scaled to [0, 1]. torch, torchvision and smp are imported
inside the functions: ``slidestream.tissue`` stays importable (and fast) without them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HF_REPO = "MahmoodLab/hest-tissue-seg"

# GrandQC artifact classes (GrandQC README, TRIDENT's mapping), keyed by their class index.
ARTIFACT_CLASSES: dict[int, tuple[str, str]] = {
    2: ("fold", "Fold"),
    3: ("darkspot", "Dark spot & foreign object"),
    4: ("pen", "Pen marking"),
    5: ("edge", "Edge & air bubble"),
    6: ("oof", "Out of focus"),
}
ARTIFACT_NAMES = tuple(short for short, _ in ARTIFACT_CLASSES.values())
ARTIFACT_BACKGROUND = 7  # GrandQC's background class (0 unannotated and 1 normal tissue are kept)


@dataclass(frozen=True)
class SegModelSpec:
    """How to build, load and run one released segmenter."""

    name: str
    weight_file: str                 # the release's file name (HF repo MahmoodLab/hest-tissue-seg)
    source: str                      # where a user gets the file, for the "no weights" message
    mpp: float                       # official input resolution, um/px
    n_classes: int
    build: Callable[[], Any]
    jpeg_quality: int | None = None  # JPEG round trip before normalisation (GrandQC tissue)
    output_key: str | None = None    # torchvision segmentation models return a dict
    cuda_dtype: str = "float16"      # TRIDENT's precision on GPU (CPU always runs float32)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_model_keys(self, state_dict: dict[str, Any]) -> dict[str, Any]:
        """Release layout -> module keys, the way the official loaders do it."""
        if self.name == "hest":  # Lightning: model.* keys, aux head dropped (TRIDENT, HEST, lazyslide)
            return {k.replace("model.", ""): v for k, v in state_dict.items() if "aux" not in k}
        return dict(state_dict)

    def to_release_keys(self, state_dict: dict[str, Any]) -> dict[str, Any]:
        """Module keys -> the release's file layout (for tests and benchmarks with random weights)."""
        if self.name == "hest":  # the release also carries the training-time aux head, dropped on load
            import torch

            aux = {"model.aux_classifier.4.weight": torch.zeros(2, 256, 1, 1), "model.aux_classifier.4.bias": torch.zeros(2)}
            return {"state_dict": {**{f"model.{k}": v for k, v in state_dict.items()}, **aux}, "epoch": 0,
                    "pytorch-lightning_version": "1.9.0"}
        return dict(state_dict)


def _deeplabv3() -> Any:
    from torch import nn
    from torchvision.models.segmentation import deeplabv3_resnet50

    model = deeplabv3_resnet50(weights=None, weights_backbone=None, aux_loss=False)
    model.classifier[4] = nn.Conv2d(256, 2, kernel_size=1, stride=1)
    return model


def _smp(arch: str, classes: int) -> Callable[[], Any]:
    def build() -> Any:
        try:
            import segmentation_models_pytorch as smp
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("the GrandQC models need segmentation-models-pytorch: pip install 'slidestream[seg]'") from exc
        import warnings

        with warnings.catch_warnings():  # smp deprecates 'timm-' names; the releases' keys need this one
            warnings.simplefilter("ignore", DeprecationWarning)
            return getattr(smp, arch)(encoder_name="timm-efficientnet-b0", encoder_weights=None, classes=classes,
                                      activation=None)
    return build


SPECS: dict[str, SegModelSpec] = {
    "hest": SegModelSpec(
        name="hest", weight_file="deeplabv3_seg_v4.ckpt", mpp=1.0, n_classes=2, build=_deeplabv3,
        source=f"https://huggingface.co/{HF_REPO} (deeplabv3_seg_v4.ckpt)", output_key="out"),
    "grandqc": SegModelSpec(
        name="grandqc", weight_file="Tissue_Detection_MPP10.pth", mpp=10.0, n_classes=2,
        build=_smp("UnetPlusPlus", 2), jpeg_quality=80,
        source=f"https://zenodo.org/records/14507273 or https://huggingface.co/{HF_REPO} (Tissue_Detection_MPP10.pth)"),
    "grandqc_artifact": SegModelSpec(
        name="grandqc_artifact", weight_file="GrandQC_MPP1_state_dict.pth", mpp=1.0, n_classes=8,
        build=_smp("Unet", 8), cuda_dtype="float32",
        source=f"https://huggingface.co/{HF_REPO} (GrandQC_MPP1_state_dict.pth; the Zenodo 14041538 "
               "GrandQC_MPP*.pth files are pickled modules: convert them to a state dict first)"),
}


def preprocess(tiles: np.ndarray, spec: SegModelSpec) -> np.ndarray:
    """uint8 RGB tiles (N, H, W, 3) -> float32 (N, 3, H, W), the official way.

    GrandQC's tissue detector "was trained on jpeg compressed images": each tile goes through an
    OpenCV JPEG encode/decode at quality 80 first. OpenCV takes the RGB array as BGR in both
    directions, so the channel order survives while the chroma subsampling acts on swapped
    channels; reproduced as is (TRIDENT's ``JpegCompressionTransform``, GrandQC's script).
    """
    x = np.asarray(tiles, dtype=np.uint8)
    if spec.jpeg_quality is not None:
        import cv2

        params = [int(cv2.IMWRITE_JPEG_QUALITY), spec.jpeg_quality]
        x = np.stack([cv2.imdecode(cv2.imencode(".jpg", np.ascontiguousarray(t), params)[1], cv2.IMREAD_COLOR)
                      for t in x])
    mean = np.asarray(IMAGENET_MEAN, np.float32)
    std = np.asarray(IMAGENET_STD, np.float32)
    out = (x.astype(np.float32) * np.float32(1 / 255) - mean) / std
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2))


def logits(model: Any, batch: Any, spec: SegModelSpec) -> Any:
    """Class logits (N, C, H, W) of a normalised batch."""
    out = model(batch)
    return out[spec.output_key] if spec.output_key else out


def decide_tissue(logit: Any, spec: SegModelSpec, threshold: float) -> Any:
    """Boolean tissue map (N, H, W) by the release's rule, as TRIDENT applies it.

    HEST: softmax channel 1 > threshold (HEST's own argmax at 0.5). GrandQC: class 0 is tissue,
    kept when its probability is also >= threshold (TRIDENT: ``(max_prob >= t) * (1 - argmax)``).
    """
    import torch

    probs = torch.softmax(logit.float(), dim=1)
    if spec.name == "hest":
        return probs[:, 1] > threshold
    top, cls = probs.max(dim=1)
    return (cls == 0) & (top >= threshold)


def decide_artifacts(logit: Any) -> Any:
    """GrandQC artifact classes (N, H, W) uint8: the argmax of the 8 classes (GrandQC, TRIDENT)."""
    import torch

    return logit.argmax(dim=1).to(dtype=torch.uint8)
