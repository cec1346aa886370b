"""The slide store never reads as complete unless it is, and resumes what was interrupted."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from slidestream.errors import StoreError
from slidestream.store import SlideStore, load_features


@pytest.fixture
def store(tmp_path) -> SlideStore:
    s = SlideStore.create(tmp_path, "slide", {"path": "/x/slide.svs", "width": 100, "height": 80})
    s.write_tiles(np.arange(20).reshape(10, 2), np.full(10, 0.5), {"target_mpp": 0.5, "tile_size_px": 224}, {"mpp": 0.5})
    return s


def test_layout_and_attrs(store):
    root = zarr.open_group(store.path, mode="r")
    assert root.attrs["slidestream"]["format_version"] == "1.0"
    assert root.attrs["slide"]["path"] == "/x/slide.svs"
    assert "tiles" in root.attrs["stages"]
    assert root["tiles/coords"].dtype == np.int64 and root["tiles/coords"].shape == (10, 2)
    assert root["tiles/tissue_fraction"].dtype == np.float32
    assert root["tiles"].attrs["complete"] is True


def test_a_failed_write_leaves_no_node_and_keeps_the_old_one(store):
    old = store.read_tiles().coords.copy()

    def explode(parent, tmp):
        parent.create_group(tmp).create_array("coords", shape=(5, 2), dtype="int64")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        store.write_node("tiles", explode, {})
    np.testing.assert_array_equal(store.read_tiles().coords, old)
    assert store.has("tiles")
    with pytest.raises(OSError):
        store.write_node("selections_new", explode, {})
    assert not store.has("selections_new")
    assert store.clean_partials() >= 1
    assert not any(p.name.startswith("_partial") for p in store.path.rglob("*"))


def test_feature_writer_resumes_from_the_last_chunk_and_commits_atomically(store):
    data = np.random.default_rng(0).normal(size=(10, 3)).astype(np.float32)
    w = store.feature_writer("enc", 10, 3, {"encoder": "enc", "weights_sha256": "abc"}, chunk_rows=4)
    w.write(0, data[:4])
    assert not store.has("features/enc")          # not visible before commit
    with pytest.raises(StoreError):
        load_features(store.path, "enc")
    resumed = store.feature_writer("enc", 10, 3, {"encoder": "enc", "weights_sha256": "abc"}, chunk_rows=4)
    assert resumed.rows_done == 4
    with pytest.raises(StoreError, match="in order"):
        resumed.write(8, data[8:])
    resumed.write(4, data[4:])
    resumed.commit()
    features, coords = load_features(store.path, "enc")
    np.testing.assert_array_equal(features, data)
    np.testing.assert_array_equal(coords, store.read_tiles().coords)
    assert store.node_attrs("features/enc")["weights_sha256"] == "abc"


def test_feature_writer_restarts_when_provenance_changes(store):
    w = store.feature_writer("enc", 10, 3, {"weights_sha256": "old"}, chunk_rows=4)
    w.write(0, np.zeros((4, 3)))
    fresh = store.feature_writer("enc", 10, 3, {"weights_sha256": "new"}, chunk_rows=4)
    assert fresh.rows_done == 0


def test_commit_refuses_incomplete_features(store):
    w = store.feature_writer("enc", 10, 3, {}, chunk_rows=4)
    w.write(0, np.zeros((4, 3)))
    with pytest.raises(StoreError, match="4/10"):
        w.commit()


def test_selection_bounds_and_lookup(store):
    store.write_selection("mosaic", [1, 2, 9], {"method": "mosaic"})
    np.testing.assert_array_equal(store.read_selection("mosaic"), [1, 2, 9])
    with pytest.raises(StoreError, match="outside"):
        store.write_selection("bad", [10], {})
    with pytest.raises(StoreError, match="available: mosaic"):
        store.read_selection("fps")


def test_new_tiles_invalidate_features(store):
    w = store.feature_writer("enc", 10, 2, {}, chunk_rows=10)
    w.write(0, np.zeros((10, 2)))
    w.commit()
    assert store.list_nodes("features") == ["enc"]
    assert store.invalidate_dependents("tiles") == ["features"]
    assert store.list_nodes("features") == []
    assert "features/enc" not in store.attrs["stages"]


def _features(store, name, selection=None):
    if selection:
        store.write_selection(selection, [0, 1, 2, 3, 4], {"method": "test"})
    rows = 5 if selection else 10
    w = store.feature_writer(name, rows, 2, {"selection": selection} if selection else {}, chunk_rows=10)
    w.write(0, np.zeros((rows, 2)))
    w.commit()


def test_replacing_one_encoder_keeps_another_encoders_results(store):
    # a damaged or replaced features/a must not take b's slide embedding and attention with it
    _features(store, "a")
    _features(store, "b")
    store.write_slide_embedding("mean", np.zeros(2), {"encoder": "a"})
    store.write_slide_embedding("mean_b", np.zeros(2), {"encoder": "b"})
    store.write_slide_embedding("concat", np.zeros(4), {"encoder": "a,b"})
    store.write_tile_scores("attn_a", np.zeros(10), {"encoder": "a"})
    store.write_tile_scores("attn_b", np.zeros(10), {"encoder": "b"})
    store.write_tile_scores("qc", np.zeros(10), {})
    removed = store.invalidate_dependents("features/a")
    assert sorted(removed) == ["slide_embeddings/concat", "slide_embeddings/mean", "tile_scores/attn_a"]
    assert store.list_nodes("slide_embeddings") == ["mean_b"]
    assert store.list_nodes("tile_scores") == ["attn_b", "qc"]


def test_a_replaced_selection_drops_only_its_encoders_results(store):
    _features(store, "a", selection="mosaic")
    _features(store, "b")
    store.write_slide_embedding("mean_a", np.zeros(2), {"encoder": "a"})
    store.write_slide_embedding("mean_b", np.zeros(2), {"encoder": "b"})
    store.write_selection("mosaic", [5, 6, 7], {"method": "test"})
    assert store.list_nodes("features") == ["b"]
    assert store.list_nodes("slide_embeddings") == ["mean_b"]


def test_open_refuses_what_is_not_a_store(tmp_path):
    with pytest.raises(StoreError, match="not a slide store"):
        SlideStore.open(tmp_path)
    zarr.open_group(tmp_path / "plain.zarr", mode="w")
    with pytest.raises(StoreError, match="not a slidestream store"):
        SlideStore.open(tmp_path / "plain.zarr")


def test_create_twice_opens_the_same_store(tmp_path):
    a = SlideStore.create(tmp_path, "s", {"path": "a"})
    b = SlideStore.create(tmp_path, "s", {"path": "b"})
    assert a.path == b.path and b.slide_info["path"] == "a"


def test_tile_scores_align_with_their_rows(store):
    store.write_tile_scores("qc", np.arange(10, dtype=np.float32), {"method": "test"})
    values, attrs = store.read_tile_scores("qc")
    assert values.tolist() == list(range(10)) and attrs["rows"] == "tiles"
    with pytest.raises(StoreError, match="has 3 rows but tiles has 10"):
        store.write_tile_scores("bad", np.zeros(3), {})
