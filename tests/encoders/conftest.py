"""Fixtures for the encoder tests: a clean weights environment and one CPU thread."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_thread() -> None:
    """The machine is shared; one intra-op thread keeps the suite polite and its timing stable."""
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def clean_weights_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No test may see a real hub cache or weights folder: point everything at an empty dir."""
    cache = tmp_path / "hf-hub-cache"
    cache.mkdir()
    for var in ("SLIDESTREAM_WEIGHTS", "HF_HOME", "HUGGINGFACE_HUB_CACHE", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return cache
