"""Shared fixtures: single-threaded torch (shared 2-core machine) and synthetic cohorts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

torch.set_num_threads(1)


def _gaussian_mixture(n: int, means: np.ndarray, weights: np.ndarray, sds: np.ndarray, seed: int):
    """``n`` rows from a diagonal Gaussian mixture; returns ``(x, labels)``."""
    rng = np.random.default_rng(seed)
    labels = rng.choice(len(weights), size=n, p=weights)
    x = means[labels] + rng.normal(size=(n, means.shape[1])) * sds[labels]
    return x.astype(np.float32), labels


@pytest.fixture
def gaussian_mixture():
    """The sampler itself, so tests never import from ``conftest`` (module-name clashes)."""
    return _gaussian_mixture


@pytest.fixture
def mixture():
    """A 4-component, 8-dimensional mixture with unequal weights and spreads."""
    rng = np.random.default_rng(7)
    means = rng.normal(0.0, 3.0, size=(4, 8))
    weights = np.array([0.1, 0.2, 0.3, 0.4])
    sds = rng.uniform(0.4, 1.0, size=(4, 8))
    return means, weights, sds
