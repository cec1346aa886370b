"""Turning bags into tensors: seeded tile subsampling and padded batches with masks.

Subsampling caps the memory and time of one training step on huge slides and acts as data
augmentation (a different subset every epoch). It is applied in training only; evaluation and
prediction always see the full bag, so out-of-fold scores are reproducible by ``predict``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from slidestream.mil.bags import Bag


def subsample(bag: Bag, max_tiles: int | None, rng: np.random.Generator) -> Bag:
    """At most ``max_tiles`` tiles drawn without replacement, in their original order."""
    features, coords = bag
    if max_tiles is None or len(features) <= max_tiles:
        return bag
    keep = np.sort(rng.choice(len(features), size=max_tiles, replace=False))
    return features[keep], coords[keep]


def collate(bags: Sequence[Bag]) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Stack bags into ``x (B, N_max, D)``, ``mask (B, N_max)`` and ``coords (B, N_max, 2)``.

    A single bag (or equal-sized bags) needs no mask, and ``None`` lets models take their
    unmasked fast path.
    """
    sizes = [len(f) for f, _ in bags]
    n_max, dim = max(sizes), bags[0][0].shape[1]
    x = torch.zeros(len(bags), n_max, dim, dtype=torch.float32)
    coords = torch.zeros(len(bags), n_max, 2, dtype=torch.int64)
    mask = torch.zeros(len(bags), n_max, dtype=torch.bool)
    for i, (f, c) in enumerate(bags):
        x[i, : len(f)] = torch.from_numpy(np.ascontiguousarray(f))
        coords[i, : len(c)] = torch.from_numpy(np.ascontiguousarray(c))
        mask[i, : len(f)] = True
    return x, (None if len(set(sizes)) == 1 else mask), coords
