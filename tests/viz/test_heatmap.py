"""Heatmaps, prototype maps and QuPath GeoJSON from stored tile scores (synthetic stores)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from slidestream.cli import heatmap as heatmap_cli  # noqa: F401  (registers the command)
from slidestream.cli._app import app
from slidestream.io import open_slide
from slidestream.store import SlideStore
from slidestream.viz.heatmap import (
    normalize_scores,
    rasterize_tiles,
    slide_thumbnail,
    store_heatmap,
    tile_layer,
    tiles_geojson,
    write_score_maps,
)
from slidestream.viz.prototype_map import palette, store_prototype_map
from tests.conftest import CMU
from tests.viz.synthetic_store import TILE, make_store


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture
def scored(tmp_path):
    """A 6x5-tile store with a left-to-right attention ramp and 3 'prototypes' by row."""
    store = make_store(tmp_path / "OUT", "s1")
    n = len(store.read_tiles())
    coords = store.read_tiles().coords
    store.write_tile_scores("attention", coords[:, 0].astype(np.float32), {"encoder": "uni"})
    store.write_tile_scores(
        "proto",
        (np.arange(n) // 10).astype(np.int64),
        {"encoder": "uni", "kind": "categorical", "k": 3},
    )
    return store


def test_rasterize_averages_overlaps_and_keeps_tiny_tiles():
    coords = np.array([[0, 0], [50, 0], [900, 900]])
    grid, covered = rasterize_tiles(
        coords, (100, 100), np.array([1.0, 3.0, 7.0]), (100, 100), (1000, 1000)
    )
    assert grid[0, 5] == 2.0 and grid[0, 0] == 1.0 and grid[0, 14] == 3.0  # 50..100 overlap: mean
    assert covered.sum() == 10 * 15 + 10 * 10
    _, covered = rasterize_tiles(
        np.array([[500, 500]]), (2, 2), np.array([1.0]), (10, 10), (1000, 1000)
    )
    assert covered.sum() == 1  # smaller than a pixel, still drawn
    grid, _ = rasterize_tiles(
        coords[:2], (100, 100), np.array([1.0, 3.0]), (100, 100), (1000, 1000), reduce="last"
    )
    assert grid[0, 5] == 3.0


def test_normalisations():
    v = np.array([0.1, 0.001, 0.5, np.nan])
    pct, ends = normalize_scores(v, "percentile")
    np.testing.assert_allclose(pct[:3], [0.5, 0.0, 1.0])
    assert ends == ("0th pct", "100th pct")
    mm, ends = normalize_scores(v, "minmax")
    assert mm[1] == 0.0 and mm[2] == 1.0 and ends == ("0.001", "0.5")
    assert normalize_scores(np.array([2.0, -1.0]), "none")[0].tolist() == [1.0, 0.0]
    with pytest.raises(ValueError, match="percentile"):
        normalize_scores(v, "zscore")  # type: ignore[arg-type]


def test_geojson_tiles_are_qupath_detections():
    fc = tiles_geojson(
        np.array([[10, 20], [30, 40]]), (5, 6), {"attention": np.array([0.25, np.nan])}
    )
    assert fc["type"] == "FeatureCollection" and len(fc["features"]) == 2
    first = fc["features"][0]
    assert first["geometry"]["coordinates"][0] == [[10, 20], [15, 20], [15, 26], [10, 26], [10, 20]]
    assert first["properties"]["objectType"] == "detection"
    assert first["properties"]["measurements"] == {"attention": 0.25}
    assert fc["features"][1]["properties"]["measurements"] == {}  # NaN is left out, not written
    json.dumps(fc, allow_nan=False)
    with pytest.raises(ValueError, match="2 tiles"):
        tiles_geojson(np.zeros((2, 2)), (1, 1), {"x": np.zeros(3)})


def test_heatmap_without_the_slide_file_uses_a_blank_canvas(scored):
    hm = store_heatmap(scored, "attention", max_size=256)
    assert hm.background == "blank"
    layer = tile_layer(scored, "attention")
    thumb_w = round(layer.level0_size[0] * min(1.0, 256 / max(layer.level0_size)))
    assert hm.image.width > thumb_w  # the colour bar panel
    pixels = np.asarray(hm.image)[: hm.covered.shape[0], :thumb_w]
    # the ramp runs blue (low x) to red (high x) along the tile rows
    row = hm.covered.shape[0] // 2
    xs = np.nonzero(hm.covered[row])[0]
    left, right = pixels[row, xs[2]].astype(int), pixels[row, xs[-3]].astype(int)
    assert left[2] > left[0] and right[0] > right[2]
    assert not hm.covered[:, : int(TILE * hm.scale[0]) - 1].any()  # nothing painted off the tiles


def test_prototype_map_and_categorical_geojson(scored, tmp_path):
    pm = store_prototype_map(scored, "proto", max_size=256)
    colours = palette(3)
    pixels = np.asarray(pm.image)[: pm.covered.shape[0], : pm.covered.shape[1]]
    ys, xs = np.nonzero(pm.covered)
    top = pixels[ys.min() + 2, xs.min() + 2].astype(int)
    # blended 60 % towards prototype 0's colour over the blank canvas
    expected = 0.4 * np.array([235, 235, 235]) + 0.6 * colours[0]
    assert np.abs(top - expected).max() <= 2
    details = write_score_maps(scored, "proto", tmp_path / "maps")
    fc = json.loads((tmp_path / "maps" / details["geojson"]).read_text())
    names = {f["properties"]["classification"]["name"] for f in fc["features"]}
    assert names == {"prototype 0", "prototype 1", "prototype 2"}
    assert fc["features"][0]["properties"]["measurements"] == {"prototype": 0.0}


def test_thumbnail_comes_from_the_slide_when_it_is_there(tmp_path):
    with open_slide(CMU) as slide:
        info = slide.info()
    store = SlideStore.create(tmp_path, "cmu", info)
    image, source = slide_thumbnail(store, 200)
    assert source == "thumbnail" and max(image.shape[:2]) == 200 and image.std() > 5
    moved = SlideStore.create(
        tmp_path, "moved", {**info, "path": str(tmp_path / "gone" / CMU.name)}
    )
    assert slide_thumbnail(moved, 200)[1] == "blank"
    assert slide_thumbnail(moved, 200, slides_dir=CMU.parent)[1] == "thumbnail"


def test_heatmap_command(scored, tmp_path):
    out = tmp_path / "maps"
    result = run(
        "heatmap", scored.path.parent, "--out", out, "--scores", "attention", "--max-size", 200
    )
    assert result.exit_code == 0, result.output
    png = Image.open(out / "s1.attention.png")
    assert png.mode == "RGB" and png.width > 200 and png.height >= 150  # thumbnail + colour bar
    assert len(json.loads((out / "s1.attention.geojson").read_text())["features"]) == 30
    missing = run("heatmap", scored.path, "--out", out, "--scores", "nope")
    assert missing.exit_code == 1 and "no tile_scores/nope" in missing.output
    assert "available: attention, proto" in missing.output
    assert run("heatmap", scored.path, "--out", out, "--cmap", "nope").exit_code == 2
    assert run("heatmap", scored.path, "--out", out, "--normalize", "z").exit_code == 2
    assert run("heatmap", tmp_path / "empty", "--out", out).exit_code == 2
