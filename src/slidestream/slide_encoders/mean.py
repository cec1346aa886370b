"""Mean pooling: the baseline every slide encoder has to beat.

Averaging tile features is surprisingly strong with modern patch encoders and costs nothing, so
it is the reference point of every linear-probe table. ``mode="meanmax"`` appends the per-feature
maximum, which keeps a trace of rare but decisive tiles that the mean dilutes.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

__all__ = ["mean_embedding"]


def mean_embedding(features: np.ndarray, mode: Literal["mean", "meanmax"] = "mean") -> np.ndarray:
    """``features (N, D)`` → ``(D,)`` (``mean``) or ``(2D,)`` (``meanmax``: mean then max), float32.

    Accumulates in float64: a float32 running sum over 100k tiles loses about three digits.
    """
    x = np.asarray(features)
    if x.ndim != 2:
        raise ValueError(f"features must be (N, D), got shape {x.shape}")
    if len(x) == 0:
        raise ValueError("cannot pool an empty slide (0 tiles)")
    mean = x.mean(axis=0, dtype=np.float64)
    if mode == "mean":
        return mean.astype(np.float32)
    if mode == "meanmax":
        return np.concatenate([mean, x.max(axis=0)]).astype(np.float32)
    raise ValueError(f"unknown mode {mode!r}: use 'mean' or 'meanmax'")
