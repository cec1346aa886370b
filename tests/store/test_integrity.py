"""Checksums and the written-chunk record at the store level (no slide needed): multi-chunk arrays,
all-zero chunks, quick versus deep checks, and resumes that never mix in unchecked chunks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import zarr

from slidestream.errors import StoreError
from slidestream.store import SlideStore, load_features


@pytest.fixture
def store(tmp_path) -> SlideStore:
    s = SlideStore.create(tmp_path, "slide", {"path": "/x/slide.svs", "width": 100, "height": 80})
    s.write_tiles(np.arange(20).reshape(10, 2), np.full(10, 0.5), {"target_mpp": 0.5, "tile_size_px": 224}, {"mpp": 0.5})
    data = np.random.default_rng(0).normal(size=(10, 3)).astype(np.float32)
    data[4:8] = 0.0  # chunk c/1/0 equals the fill value: it must still be written
    w = s.feature_writer("enc", 10, 3, {"encoder": "enc"}, chunk_rows=4)
    w.write(0, data)
    w.commit()
    return s


def _node(store: SlideStore, rel: str):
    return store.path / rel


def test_every_chunk_is_on_disk_with_a_checksum_and_recorded(store):
    node = _node(store, "features/enc")
    assert sorted(p.relative_to(node).as_posix() for p in (node / "c").rglob("*") if p.is_file()) == \
        ["c/0/0", "c/1/0", "c/2/0"]
    doc = json.loads((node / "zarr.json").read_text())
    assert [c["name"] for c in doc["codecs"]] == ["bytes", "zstd", "crc32c"]
    assert doc["attributes"]["integrity"]["chunks"] == 3 and doc["attributes"]["integrity"]["checksum"] == "crc32c"
    np.testing.assert_array_equal(load_features(store, "enc")[0][4:8], 0.0)
    assert zarr.open_array(node, mode="r")[...].shape == (10, 3)  # any zarr v3 reader still reads it


def test_a_missing_all_zero_chunk_is_named_not_read_as_zeros(store):
    (_node(store, "features/enc") / "c/1/0").unlink()
    with pytest.raises(StoreError, match=r"features/enc: chunk c/1/0 is missing \(of 3 written\)"):
        load_features(store, "enc")
    assert store.node_problem("features/enc") is not None  # presence is the cheap check


def test_a_flipped_chunk_is_named_and_only_the_deep_check_sees_it(store):
    chunk = _node(store, "features/enc") / "c/2/0"
    data = bytearray(chunk.read_bytes())
    data[-6] ^= 1
    chunk.write_bytes(bytes(data))
    with pytest.raises(StoreError, match="features/enc: chunk c/2/0 fails its crc32c checksum"):
        store.read_features("enc")
    assert store.node_problem("features/enc") is None
    assert "c/2/0" in store.node_problem("features/enc", deep=True)


def test_a_partial_without_checksums_is_restarted_not_resumed(store):
    partial = store.path / "features" / "_partial-old"
    identity = {"n_rows": 8, "dim": 3, "dtype": "float32", "chunk_rows": 4, "provenance": {"encoder": "old"}}
    arr = zarr.create_array(partial, shape=(8, 3), dtype="float32", chunks=(4, 3), zarr_format=3)
    arr[:4] = 1.0
    arr.attrs.update({"identity": identity, "rows_done": 4, "complete": False})
    w = store.feature_writer("old", 8, 3, {"encoder": "old"}, chunk_rows=4)
    assert w.rows_done == 0  # its chunks carry no checksum: start over rather than mix them in
