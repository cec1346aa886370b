"""xarray opens every group of a slide store by its named dimensions (zarr v3 ``dimension_names``)."""

from __future__ import annotations

import numpy as np
import pytest

from slidestream.store import SlideStore

xr = pytest.importorskip("xarray")


@pytest.fixture
def full_store(tmp_path) -> SlideStore:
    """A store with tiles, a selection, features on all tiles and on the selection, scores, an embedding."""
    rng = np.random.default_rng(0)
    s = SlideStore.create(tmp_path, "slide", {"path": "/x/slide.svs", "width": 1000, "height": 800})
    coords = np.stack(np.meshgrid(np.arange(4) * 224, np.arange(3) * 224), -1).reshape(-1, 2)
    s.write_tiles(coords, np.linspace(0.3, 1, 12), {"target_mpp": 0.5, "tile_size_px": 224}, {"mpp": 0.5},
                  focus=np.arange(12.0))
    s.write_selection("mosaic", np.array([1, 5, 7]), {"method": "mosaic"})
    feats = rng.normal(size=(12, 6)).astype(np.float32)
    w = s.feature_writer("enc", 12, 6, {"encoder": "enc", "selection": None})
    w.write(0, feats)
    w.commit()
    w = s.feature_writer("small", 3, 4, {"encoder": "small", "selection": "mosaic"})
    w.write(0, rng.normal(size=(3, 4)).astype(np.float32))
    w.commit()
    s.write_tile_scores("attention", rng.random(3).astype(np.float32), {"encoder": "small", "kind": "continuous"})
    s.write_tile_scores("qc", rng.random(12).astype(np.float32), {"kind": "continuous"})
    s.write_slide_embedding("mean", feats.mean(0), {"encoder": "enc"})
    return s


def test_open_zarr_opens_tiles_with_named_dimensions(full_store):
    ds = xr.open_zarr(full_store.path / "tiles", consolidated=False)
    assert ds["coords"].dims == ("tile", "xy")
    assert ds["tissue_fraction"].dims == ("tile",) and ds["focus"].dims == ("tile",)
    np.testing.assert_array_equal(ds["coords"].values, full_store.read_tiles().coords)
    assert ds.attrs["tile_size_px"] == 224 and ds.attrs["complete"] is True


def test_features_on_a_selection_share_the_selection_dimension(full_store):
    feats = xr.open_zarr(full_store.path / "features", consolidated=False)
    assert feats["enc"].dims == ("tile", "enc_feature")
    assert feats["small"].dims == ("selected_mosaic", "small_feature")
    sel = xr.open_zarr(full_store.path / "selections", consolidated=False)
    assert sel["mosaic"].dims == ("selected_mosaic",)
    np.testing.assert_array_equal(feats["enc"].values, full_store.read_features("enc")[0])
    # the coordinates of the selected rows, by xarray indexing alone
    tiles = xr.open_zarr(full_store.path / "tiles", consolidated=False)
    picked = tiles["coords"].isel(tile=sel["mosaic"].values)
    np.testing.assert_array_equal(picked.values, full_store.read_features("small")[1])


def test_scores_and_embeddings_open(full_store):
    scores = xr.open_zarr(full_store.path / "tile_scores", consolidated=False)
    assert scores["attention"].dims == ("selected_mosaic",) and scores["qc"].dims == ("tile",)
    emb = xr.open_zarr(full_store.path / "slide_embeddings", consolidated=False)
    assert emb["mean"].dims == ("mean_feature",) and emb["mean"].shape == (6,)


def test_open_datatree_opens_the_whole_store(full_store):
    tree = xr.open_datatree(full_store.path, engine="zarr", consolidated=False)
    assert tree.attrs["slide"]["width"] == 1000
    assert tree["tiles"]["coords"].shape == (12, 2)
    assert tree["features"]["small"].dims == ("selected_mosaic", "small_feature")


def test_stores_written_before_named_dimensions_get_them(full_store):
    """An older store (arrays without dimension_names) becomes xarray-readable in place."""
    import json

    from slidestream.store.dimensions import name_dimensions

    for meta_path in full_store.path.rglob("zarr.json"):
        meta = json.loads(meta_path.read_text())
        if meta.pop("dimension_names", None) is not None:
            meta_path.write_text(json.dumps(meta))
    with pytest.raises(Exception):  # noqa: B017  (xarray's error type varies by version)
        xr.open_zarr(full_store.path / "tiles", consolidated=False)
    changed = name_dimensions(full_store.path)
    assert set(changed) == {"tiles/coords", "tiles/tissue_fraction", "tiles/focus", "selections/mosaic",
                            "features/enc", "features/small", "tile_scores/attention", "tile_scores/qc",
                            "slide_embeddings/mean"}
    feats = xr.open_zarr(full_store.path / "features", consolidated=False)
    assert feats["small"].dims == ("selected_mosaic", "small_feature")
    assert xr.open_zarr(full_store.path / "tile_scores", consolidated=False)["attention"].dims == ("selected_mosaic",)
    np.testing.assert_array_equal(feats["enc"].values, full_store.read_features("enc")[0])
    assert name_dimensions(full_store.path) == []  # idempotent
