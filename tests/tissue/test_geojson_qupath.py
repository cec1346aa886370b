"""GeoJSON in the shapes QuPath writes and reads: Feature arrays, RFC 7946 winding, ink files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import shapely
from shapely.geometry import MultiPolygon, Polygon, shape

from slidestream.errors import SlideStreamError
from slidestream.tissue import (
    INK_CLASS,
    geometry_to_feature_collection,
    read_geojson,
    to_feature_collection,
    write_feature_collection,
)

SQUARE = [[0, 0], [1000, 0], [1000, 800], [0, 800], [0, 0]]
HOLE = [[200, 200], [200, 400], [400, 400], [400, 200], [200, 200]]


def _qupath_feature(coords, name: str, *, holes=()) -> dict:
    """One annotation as QuPath 0.5's "Export objects as GeoJSON" writes it (id, objectType, classification)."""
    return {"type": "Feature", "id": "6f3e4a4c-2b1d-4f3a-9d6e-0c1b2a3d4e5f",
            "geometry": {"type": "Polygon", "coordinates": [coords, *holes]},
            "properties": {"objectType": "annotation", "classification": {"name": name, "color": [200, 0, 0]},
                           "isLocked": False}}


def _signed_area(ring) -> float:
    xy = np.asarray(ring, float)
    return 0.5 * float(np.sum(xy[:-1, 0] * xy[1:, 1] - xy[1:, 0] * xy[:-1, 1]))


def _assert_rfc7946(collection: dict) -> None:
    for feature in collection["features"]:
        geom = feature["geometry"]
        polygons = [geom["coordinates"]] if geom["type"] == "Polygon" else geom["coordinates"]
        for rings in polygons:
            assert _signed_area(rings[0]) > 0, "exterior ring must be counter-clockwise"
            assert all(_signed_area(h) < 0 for h in rings[1:]), "holes must be clockwise"


def test_a_qupath_feature_array_round_trips(tmp_path):
    """QuPath's default export (a bare JSON array) reads; written back, the same shapes return."""
    qupath = [_qupath_feature(SQUARE, "Tumor", holes=[HOLE]),
              _qupath_feature([[2000, 0], [2500, 0], [2500, 500], [2000, 0]], "Stroma")]
    path = tmp_path / "qupath.geojson"
    path.write_text(json.dumps(qupath))
    gdf = read_geojson(path)
    assert len(gdf) == 2
    assert [c["name"] for c in gdf["classification"]] == ["Tumor", "Stroma"]
    assert gdf.geometry.iloc[0].area == pytest.approx(1000 * 800 - 200 * 200)
    out = write_feature_collection(to_feature_collection(gdf), tmp_path / "back.geojson")
    again = read_geojson(out)
    assert all(a.equals(b) for a, b in zip(again.geometry, gdf.geometry, strict=True))
    _assert_rfc7946(json.loads(out.read_text()))


def test_single_feature_and_feature_collection_read(tmp_path):
    feature = _qupath_feature(SQUARE, "Tumor")
    (tmp_path / "one.geojson").write_text(json.dumps(feature))
    (tmp_path / "fc.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": [feature, feature]}))
    assert len(read_geojson(tmp_path / "one.geojson")) == 1
    assert len(read_geojson(tmp_path / "fc.geojson")) == 2
    (tmp_path / "empty.geojson").write_text("[]")
    assert len(read_geojson(tmp_path / "empty.geojson")) == 0


@pytest.mark.parametrize("text", ['{"type": "Topology"}', "[1, 2]", "not json", '{"type": "FeatureCollection"}'])
def test_bad_geojson_is_one_clear_error_naming_the_file(tmp_path, text):
    path = tmp_path / "bad.geojson"
    path.write_text(text)
    with pytest.raises(SlideStreamError, match=r"bad\.geojson"):
        read_geojson(path)


def test_tissue_and_ink_are_written_counter_clockwise_with_clockwise_holes():
    # built with the opposite winding on purpose: exterior clockwise, hole counter-clockwise
    cw = Polygon(SQUARE[::-1], [HOLE[::-1]])
    assert not cw.exterior.is_ccw
    ink = geometry_to_feature_collection(MultiPolygon([cw, shapely.affinity.translate(cw, 5000)]), INK_CLASS)
    _assert_rfc7946(ink)
    assert ink["features"][0]["properties"]["classification"]["name"] == "Ink"
    import geopandas as gpd

    tissue = to_feature_collection(gpd.GeoDataFrame({"area_um2": [1.0]}, geometry=[cw]))
    _assert_rfc7946(tissue)
    assert shape(tissue["features"][0]["geometry"]).equals(cw)


@pytest.mark.slow
def test_tissue_stage_writes_the_ink_as_its_own_geojson(tmp_path):
    from slidestream.pipeline.stages import SlideSource, run_tissue
    from slidestream.store import SlideStore
    from slidestream.tissue import TissueParams
    from tests.conftest import PEN

    run_tissue(SlideSource(PEN, default_mpp=2.0), tmp_path, TissueParams(), write_images=False)
    ink_path = tmp_path / f"{PEN.stem}.ink.geojson"
    ink = json.loads(ink_path.read_text())
    assert ink["features"], "the pen slide has ink"
    assert {f["properties"]["classification"]["name"] for f in ink["features"]} == {"Ink"}
    _assert_rfc7946(ink)
    _assert_rfc7946(json.loads((tmp_path / f"{PEN.stem}.geojson").read_text()))
    stored = SlideStore.open(tmp_path / f"{PEN.stem}.zarr").read_ink_geojson()
    assert read_geojson(ink_path).geometry.area.sum() == pytest.approx(
        sum(shape(f["geometry"]).area for f in stored["features"]))
