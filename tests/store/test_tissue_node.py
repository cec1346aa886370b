"""The tissue node's binary geometry: exact round trips, refusal of damage, older stores still read."""

from __future__ import annotations

import json

import numpy as np
import pytest
import shapely
import zarr
from shapely.geometry import Polygon

from slidestream.errors import StoreError
from slidestream.io import open_slide
from slidestream.store import SlideStore
from slidestream.store.verify import verify_store
from slidestream.tissue import TISSUE_CLASS, detect_tissue, to_feature_collection
from tests.conftest import CMU

INFO = {"path": "/slides/s.svs", "width": 2220, "height": 2967, "mpp_x": 0.499, "mpp_y": 0.499}


@pytest.fixture(scope="module")
def detected():
    with open_slide(CMU) as slide:
        return detect_tissue(slide)


def _write(tmp_path, detected) -> SlideStore:
    store = SlideStore.create(tmp_path, "s", INFO)
    store.write_tissue(detected.gdf.geometry.to_numpy(), detected.summary(), {"method": "classical"},
                       areas_um2=detected.gdf["area_um2"].to_numpy(), classification=TISSUE_CLASS,
                       mask=detected.mask)
    return store


def test_geometry_round_trips_exactly(tmp_path, detected):
    store = _write(tmp_path, detected)
    pieces, areas = store.read_tissue_pieces()
    assert len(pieces) == len(detected.gdf) >= 1 and len(detected.gdf.geometry[0].interiors) >= 1  # holes too
    assert (shapely.to_wkb(pieces) == shapely.to_wkb(detected.gdf.geometry.to_numpy())).all()
    np.testing.assert_array_equal(areas, detected.gdf["area_um2"].to_numpy())
    np.testing.assert_array_equal(store.read_tissue_mask(), detected.mask)
    assert shapely.equals(store.read_tissue_geometry(), detected.geometry)
    # the QuPath GeoJSON rebuilt from the store is the one written next to it
    assert store.read_tissue_geojson() == json.loads(json.dumps(to_feature_collection(detected.gdf)))
    assert "geojson" not in store.node_attrs("tissue")  # no multi-MB JSON attribute any more
    assert verify_store(store.path, deep=True).issues == []


def test_no_tissue_round_trips_as_none(tmp_path):
    store = SlideStore.create(tmp_path, "s", INFO)
    store.write_tissue([], {"tissue_pieces": 0}, {}, mask=np.zeros((5, 4), bool))
    assert store.read_tissue_geometry() is None
    assert store.read_tissue_geojson() == {"type": "FeatureCollection", "features": []}
    assert not store.read_tissue_mask().any()


def test_inconsistent_offsets_are_refused_in_one_line(tmp_path, detected):
    store = _write(tmp_path, detected)
    node = store.path / "tissue" / "wkb_offsets"
    offsets = zarr.open_array(node, mode="r+", zarr_format=3)
    bad = offsets[:]
    bad[1] = bad[-1] + 7  # a consistent chunk (valid checksum) that says nonsense
    offsets[:] = bad
    with pytest.raises(StoreError) as err:
        store.read_tissue_pieces()
    message = str(err.value)
    assert "s.zarr" in message and "tissue" in message and "\n" not in message


def test_stores_written_with_geojson_attrs_still_read(tmp_path, detected):
    """A store from before the binary node (GeoJSON in the attributes, no mask) reads as before."""
    store = SlideStore.create(tmp_path, "s", INFO)
    collection = json.loads(json.dumps(to_feature_collection(detected.gdf)))
    store.write_node("tissue", lambda parent, tmp: parent.create_group(tmp),
                     {"geojson": collection, "summary": {}, "params": {}, "coordinate_space": "level-0 pixels"})
    assert store.read_tissue_geojson() == collection
    assert store.read_tissue_mask() is None
    assert shapely.equals(store.read_tissue_geometry(), detected.geometry)
    assert len(store.read_tissue_pieces()[0]) == len(detected.gdf)


def test_geojson_callers_still_write(tmp_path):
    """``write_tissue`` given a FeatureCollection (older callers) stores the same pieces."""
    square = Polygon([(0, 0), (10, 0), (10, 10), (0, 10)], [[(2, 2), (2, 4), (4, 4), (4, 2)]])
    collection = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"measurements": {"area_um2": 24.0}}, "geometry": square.__geo_interface__}]}
    store = SlideStore.create(tmp_path, "s", INFO)
    store.write_tissue(collection, {}, {})
    pieces, areas = store.read_tissue_pieces()
    assert shapely.equals(pieces[0], square) and areas.tolist() == [24.0]
