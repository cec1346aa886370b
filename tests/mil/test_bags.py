"""Bag sources, subsampling and padded batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import slidestream.store
from slidestream.errors import StoreError
from slidestream.mil import InMemoryBagSource, StoreBagSource
from slidestream.mil.batching import collate, subsample


def fake_store(folder, slides, encoder="enc", dim=4, seed=0):
    """``<slide>.zarr`` folders holding ``<encoder>.npz``, read by :func:`fake_load_features`."""
    rng = np.random.default_rng(seed)
    for slide, n in slides.items():
        (folder / f"{slide}.zarr").mkdir(parents=True)
        feats = rng.normal(size=(n, dim)).astype(np.float32)
        coords = np.arange(2 * n).reshape(n, 2).astype(np.int32)
        np.savez(folder / f"{slide}.zarr" / f"{encoder}.npz", features=feats, coords=coords)


def fake_load_features(store_path, encoder):
    path = store_path / f"{encoder}.npz"
    if not path.exists():
        raise StoreError(store_path, f"no features for encoder {encoder!r}")
    with np.load(path) as data:
        return data["features"], data["coords"]


@pytest.fixture
def store_api(monkeypatch):
    calls = []

    def load(store_path, encoder):
        calls.append(store_path.stem)
        return fake_load_features(store_path, encoder)

    monkeypatch.setattr(slidestream.store, "load_features", load, raising=False)
    return calls


def test_store_source_reads_lazily_and_caches(tmp_path, store_api):
    fake_store(tmp_path, {"s1": 5, "s2": 3})
    source = StoreBagSource.from_folder(tmp_path, "enc", cache=True)
    assert source.slide_ids == ["s1", "s2"] and store_api == []
    feats, coords = source.load("s2")
    assert feats.dtype == np.float32 and feats.shape == (3, 4)
    assert coords.dtype == np.int64 and coords.shape == (3, 2)
    source.load("s2")
    assert store_api == ["s2"]
    uncached = StoreBagSource(sorted(tmp_path.glob("*.zarr")), "enc")
    uncached.load("s1"), uncached.load("s1")
    assert store_api == ["s2", "s1", "s1"]


def test_store_source_errors(tmp_path, store_api):
    with pytest.raises(StoreError, match=r"no \*\.zarr"):
        StoreBagSource.from_folder(tmp_path, "enc")
    fake_store(tmp_path, {"s1": 5})
    with pytest.raises(StoreError, match="no features for encoder 'other'"):
        StoreBagSource.from_folder(tmp_path, "other").load("s1")
    with pytest.raises(StoreError, match="no store for slide 'zz'"):
        StoreBagSource.from_folder(tmp_path, "enc").load("zz")


def test_store_source_without_store_api(tmp_path, monkeypatch):
    monkeypatch.delattr(slidestream.store, "load_features", raising=False)
    fake_store(tmp_path, {"s1": 5})
    with pytest.raises(StoreError, match="load_features is not available"):
        StoreBagSource.from_folder(tmp_path, "enc").load("s1")


def test_in_memory_source_rejects_bad_bags():
    with pytest.raises(StoreError, match="no tiles"):
        InMemoryBagSource({"a": np.zeros((0, 3))})
    with pytest.raises(StoreError, match="does not match"):
        InMemoryBagSource({"a": (np.zeros((4, 3)), np.zeros((3, 2)))})
    assert InMemoryBagSource({"a": np.ones((4, 3))}).load("a")[1].shape == (4, 2)


def test_subsample_is_seeded_ordered_and_bounded():
    bag = (np.arange(50, dtype=np.float32)[:, None], np.zeros((50, 2), np.int64))
    a = subsample(bag, 10, np.random.default_rng(0))[0][:, 0]
    b = subsample(bag, 10, np.random.default_rng(0))[0][:, 0]
    np.testing.assert_array_equal(a, b)
    assert len(a) == 10 and np.all(np.diff(a) > 0)
    assert subsample(bag, 100, np.random.default_rng(0)) is bag


def test_collate_pads_and_masks():
    bags = [
        (np.ones((3, 2), np.float32), np.ones((3, 2), np.int64)),
        (np.ones((5, 2), np.float32), np.ones((5, 2), np.int64)),
    ]
    x, mask, coords = collate(bags)
    assert x.shape == (2, 5, 2) and coords.shape == (2, 5, 2)
    assert mask.tolist() == [[True] * 3 + [False] * 2, [True] * 5]
    assert torch.all(x[0, 3:] == 0)
    assert collate(bags[:1])[1] is None
