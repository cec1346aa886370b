"""uint8 tiles → normalised model input, in torch, on the encoder's device.

The reference pipelines do this with torchvision/PIL on the CPU, one image at a time. Doing it in
torch on the whole batch lets it run on the GPU next to the model, which matters when the model
is fast and the tiles are large (GigaPath reads 256 px, KimiaNet 1000 px).

Semantics follow torchvision: ``Resize(int)`` scales the shorter side (``int(size * long /
short)`` for the other side), ``Resize((s, s))`` scales both, ``CenterCrop`` rounds the offsets
the same way, and a tile already at the target size is not resampled. Interpolation uses
``antialias=True`` as torchvision does for tensors and as PIL always does. After bicubic
resampling values are clamped to [0, 1], which is what the PIL pipelines get for free from their
uint8 output; without it the overshoot at sharp edges would leak past the normalisation.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from slidestream.encoders.spec import EncoderSpec, ResizeRecipe


def as_uint8_batch(tiles: Any) -> torch.Tensor:
    """Accept (B, H, W, 3) or (H, W, 3) uint8 as numpy or torch; return a (B, H, W, 3) tensor."""
    batch = (
        torch.from_numpy(np.ascontiguousarray(tiles)) if isinstance(tiles, np.ndarray) else tiles
    )
    if not isinstance(batch, torch.Tensor):
        raise TypeError(f"tiles must be a numpy array or torch tensor, got {type(tiles).__name__}")
    if batch.dtype != torch.uint8:
        raise ValueError(f"tiles must be uint8 RGB, got dtype {batch.dtype}")
    if batch.ndim == 3:
        batch = batch.unsqueeze(0)
    if batch.ndim != 4 or batch.shape[-1] != 3:
        raise ValueError(f"tiles must have shape (B, H, W, 3), got {tuple(batch.shape)}")
    return batch


def resized_size(height: int, width: int, recipe: ResizeRecipe) -> tuple[int, int]:
    """Output (H, W) of the resize step, as torchvision computes it."""
    size = recipe.resize_to
    if recipe.mode == "square":
        return size, size
    short, long = (height, width) if height <= width else (width, height)
    new_long = int(size * long / short)
    return (size, new_long) if height <= width else (new_long, size)


def resize_and_crop(x: torch.Tensor, recipe: ResizeRecipe) -> torch.Tensor:
    """(B, 3, H, W) float in [0, 1] → resized and centre-cropped, still in [0, 1]."""
    h, w = x.shape[-2:]
    out_h, out_w = resized_size(h, w, recipe)
    if (out_h, out_w) != (h, w):
        x = F.interpolate(
            x,
            size=(out_h, out_w),
            mode=recipe.interpolation,
            align_corners=False,
            antialias=recipe.antialias,
        )
        if recipe.interpolation == "bicubic":
            x = x.clamp_(0.0, 1.0)
    if recipe.crop is not None:
        crop = recipe.crop
        h, w = x.shape[-2:]
        if crop > h or crop > w:
            raise ValueError(f"centre crop {crop} does not fit a {h}x{w} resized tile")
        top = round((h - crop) / 2.0)
        left = round((w - crop) / 2.0)
        x = x[..., top : top + crop, left : left + crop]
    return x


def preprocess(
    tiles: Any,
    spec: EncoderSpec,
    device: torch.device | str = "cpu",
    *,
    channels_last: bool = False,
) -> torch.Tensor:
    """uint8 tiles → (B, 3, input_size, input_size) float32, normalised with the spec's stats."""
    batch = as_uint8_batch(tiles).to(device, non_blocking=True)
    x = batch.permute(0, 3, 1, 2).float().div_(255.0)
    x = resize_and_crop(x, spec.resize)
    if x.shape[-2:] != (spec.input_size, spec.input_size):
        raise ValueError(
            f"{spec.name}: preprocessing gave {tuple(x.shape[-2:])}, expected "
            f"{spec.input_size}x{spec.input_size}; tiles are {tuple(batch.shape[1:3])}"
        )
    # Laid out as the model wants, then normalised in place: the out-of-place form held up to
    # four float copies of the batch at once (the float batch, x - mean, the quotient, the
    # contiguous copy); the values are the same, operation for operation.
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = x.contiguous(memory_format=fmt)
    mean = torch.tensor(spec.mean, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(spec.std, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return x.sub_(mean).div_(std)
