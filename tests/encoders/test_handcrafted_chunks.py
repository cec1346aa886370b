"""The built-in encoder goes through a batch in groups of tiles to bound its memory (issue 15 §6);
the groups must not change the features: bit for bit for groups of 4 tiles or more, and within
float round-off below that (torch splits a reduction over very few rows differently, as it does
for any small batch, such as the last one of a slide)."""

from __future__ import annotations

import torch

import slidestream.encoders.handcrafted as handcrafted


def test_features_do_not_depend_on_the_group_size(monkeypatch):
    x = torch.rand(48, 3, 224, 224, generator=torch.Generator().manual_seed(3))
    model = handcrafted.HandcraftedFeatures()
    monkeypatch.setattr(handcrafted, "CHUNK", 1000)
    whole = model(x)
    assert whole.shape == (48, len(handcrafted.FEATURE_NAMES))
    for chunk in (4, 6, 16):   # groups of 4 or more tiles, last one included, on 1 or 2 threads
        monkeypatch.setattr(handcrafted, "CHUNK", chunk)
        assert torch.equal(model(x), whole), chunk
    monkeypatch.setattr(handcrafted, "CHUNK", 1)
    torch.testing.assert_close(model(x), whole, rtol=0, atol=1e-6)
