"""Fixtures for the MIL tests: one thread (shared CI cores) and session-wide synthetic bags."""

from __future__ import annotations

import pytest
import torch

from tests.mil.mil_synthetic import Synthetic, make_bags, make_survival

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def binary_bags() -> Synthetic:
    return make_bags(120, n_classes=2, seed=1)


@pytest.fixture(scope="session")
def multiclass_bags() -> Synthetic:
    return make_bags(150, n_classes=3, seed=2)


@pytest.fixture(scope="session")
def survival_bags() -> Synthetic:
    return make_survival(150, seed=3)
