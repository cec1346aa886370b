"""The built-in encoder goes through a batch in groups of tiles to bound its memory (issue 15 §6);
the groups must not change a single bit of the features."""

from __future__ import annotations

import torch

import slidestream.encoders.handcrafted as handcrafted


def test_features_do_not_depend_on_the_group_size(monkeypatch):
    x = torch.rand(37, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    model = handcrafted.HandcraftedFeatures()
    results = []
    for chunk in (1, 5, 16, 1000):
        monkeypatch.setattr(handcrafted, "CHUNK", chunk)
        results.append(model(x))
    assert results[0].shape == (37, len(handcrafted.FEATURE_NAMES))
    for other in results[1:]:
        assert torch.equal(results[0], other)
