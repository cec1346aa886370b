"""Model output → one vector per tile, by the spec's ``pooling`` name.

The modules are built with the reference constructor arguments, so their outputs differ in form:
timm ViTs with ``global_pool="token"`` already return the class token (B, D); Virchow's
``global_pool=""`` and the Hugging Face layouts return every token (B, N, D); CNNs, CONCH and the
hand-crafted baseline return a pooled vector. This is the one place that turns any of those into
the embedding the spec promises.
"""

from __future__ import annotations

import torch

from slidestream.encoders.spec import EncoderSpec


def pool(output: torch.Tensor, spec: EncoderSpec) -> torch.Tensor:
    """Apply ``spec.pooling`` to a model output and return (B, D)."""
    if spec.pooling == "cls":
        return output if output.ndim == 2 else output[:, 0]
    if spec.pooling == "cls+mean":
        if output.ndim != 3:
            raise ValueError(f"{spec.name}: 'cls+mean' needs tokens (B, N, D), got {output.shape}")
        # Prefix tokens (CLS and registers) are excluded from the patch mean.
        patches = output[:, spec.num_prefix_tokens :]
        return torch.cat((output[:, 0], patches.mean(dim=1)), dim=-1)
    if output.ndim != 2:
        raise ValueError(f"{spec.name}: {spec.pooling!r} expects (B, D), got {output.shape}")
    return output
