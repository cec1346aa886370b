"""The SpatialData export reopens with spatialdata (and wsidata, where installed) with its content.

spatialdata/anndata pin pandas<3, so they are not in the test environment (optional extra
``spatialdata``); these tests run where they are installed and skip elsewhere.
"""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from slidestream.store import SlideStore, load_features
from slidestream.tissue import to_feature_collection
from tests.store.conftest import FOOTPRINT

spatialdata = pytest.importorskip("spatialdata")


@pytest.fixture
def stores_with_tissue(stores):
    import geopandas as gpd
    from shapely.geometry import box

    for name in ("slide-a", "slide-b"):
        store = SlideStore.open(stores / f"{name}.zarr")
        pieces = gpd.GeoDataFrame({"area_um2": [1.0, 2.0]},
                                  geometry=[box(0, 0, 7000, 4000), box(0, 4000, 7000, 9000)])
        tiles = store.read_tiles()
        features, _ = load_features(store.path, "handcrafted")
        store.write_tissue(to_feature_collection(pieces), {"tissue_pieces": 2}, {})
        store.write_tiles(tiles.coords, tiles.tissue_fraction, tiles.attrs, tiles.attrs.get("params", {}))
        writer = store.feature_writer("handcrafted", len(features), features.shape[1],
                                      {"encoder": "handcrafted", "selection": None})
        writer.write(0, features)
        writer.commit()
    return stores


def test_export_reopens_in_spatialdata_with_tissues_tiles_and_features(stores_with_tissue, tmp_path):
    from slidestream.cli import app

    result = CliRunner().invoke(app, ["export", "spatialdata", str(stores_with_tissue), "--dest", str(tmp_path / "sd")])
    assert result.exit_code == 0, result.output
    assert "2 ok, 1 skipped, 0 failed" in result.stderr  # the blank slide has nothing to export
    sdata = spatialdata.read_zarr(tmp_path / "sd" / "slide-a.zarr")
    features, coords = load_features(stores_with_tissue / "slide-a.zarr", "handcrafted")
    tiles = sdata.shapes["tiles"]
    assert len(sdata.shapes["tissues"]) == 2 and len(tiles) == 20
    np.testing.assert_array_equal(tiles[["x", "y"]].to_numpy(), coords)
    assert tiles.geometry.iloc[0].bounds == (coords[0, 0], coords[0, 1], coords[0, 0] + FOOTPRINT, coords[0, 1] + FOOTPRINT)
    table = sdata.tables["handcrafted_tiles"]
    np.testing.assert_allclose(np.asarray(table.X), features)
    np.testing.assert_array_equal(table.obs["tile_id"].to_numpy(), np.arange(20))
    assert table.uns["spatialdata_attrs"]["region"] == "tiles"
    assert sdata.attrs["tile_spec"]["tiles"]["base_downsample"] == pytest.approx(FOOTPRINT / 224)


def test_wsidata_opens_the_export_with_the_slide(stores_with_tissue, tmp_path):
    wsidata = pytest.importorskip("wsidata")
    from slidestream.store.spatialdata_export import export_spatialdata
    from tests.conftest import CMU

    path = export_spatialdata(SlideStore.open(stores_with_tissue / "slide-a.zarr"), tmp_path / "sd")
    wsi = wsidata.open_wsi(CMU, store=str(path))
    assert set(wsi.shapes) >= {"tissues", "tiles"} and "handcrafted_tiles" in wsi.tables
    assert wsi.tile_spec("tiles").base_width == int(224 * FOOTPRINT / 224)
