"""``slidestream tissue`` / ``tile`` end to end on the real slides: outputs, reruns, failures."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import slidestream.pipeline.stages as stages
from slidestream.cli import app
from slidestream.io import open_slide, resize_rgb
from slidestream.store import SlideStore
from tests.conftest import ALL_SLIDES, CMU, KIDNEY, PEN, TCGA_JP2K
from tests.io.test_bad_input import make_truncated

# The shared slides lack mpp (but CMU); assumed values make each fragment a sensible physical size.
ASSUMED_MPP = {CMU.name: None, TCGA_JP2K.name: 0.5, PEN.name: 0.5, KIDNEY.name: 2.0}
# Coarse tiles (2 um/px) so that every slide, even the sparse kidney one, can be tiled in one run.
TILE_ARGS = ["--mpp", "2.0", "--tile-size", "56", "--select", "mosaic", "--fraction", "0.2"]


def run(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def slide_list(folder: Path, slides=ALL_SLIDES) -> Path:
    rows = ["path,mpp"] + [f"{p},{ASSUMED_MPP[p.name] or ''}" for p in slides]
    path = folder / "slides.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.fixture(scope="module")
def tiled(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiles")
    result = run("tile", slide_list(out), "--out", out, *TILE_ARGS)
    assert result.exit_code == 0, result.output
    return out


def test_every_slide_gets_a_store_geojson_and_pictures(tiled):
    for slide in ALL_SLIDES:
        sid = slide.stem
        assert (tiled / f"{sid}.geojson").exists()
        assert (tiled / f"{sid}.tissue.png").exists() and (tiled / f"{sid}.tiles.png").exists()
        store = SlideStore.open(tiled / f"{sid}.zarr")
        assert store.has("tissue") and store.has("tiles") and store.has("selections/mosaic")
        tiles = store.read_tiles()
        assert len(tiles) > 0, sid
        assert store.slide_info["fingerprint"].startswith("sha256")
        attrs = tiles.attrs
        assert attrs["target_mpp"] == 2.0 and attrs["tile_size_px"] == 56
        assert {"read_level", "read_size", "level0_size", "overlap_px"} <= attrs.keys()
        geojson = json.loads((tiled / f"{sid}.geojson").read_text())
        assert geojson["features"][0]["properties"]["classification"]["name"] == "Tissue"


@pytest.mark.parametrize("slide", ALL_SLIDES, ids=lambda p: p.name)
def test_tiles_lie_inside_the_slide_and_on_tissue(tiled, slide):
    store = SlideStore.open(tiled / f"{slide.stem}.zarr")
    tiles = store.read_tiles()
    with open_slide(slide, default_mpp=ASSUMED_MPP[slide.name]) as s:
        assert (tiles.coords >= 0).all()
        assert (tiles.coords[:, 0] < s.width).all() and (tiles.coords[:, 1] < s.height).all()
        non_white = []
        for i in range(len(tiles)):
            pixels = stages.tile_pixels(store, s, i)
            assert pixels.shape == (56, 56, 3)
            non_white.append((pixels.min(axis=2) < 215).mean())
    non_white = np.array(non_white)
    assert non_white.min() > 0.1, "a kept tile is (almost) all glass"
    assert non_white.mean() > 0.5


@pytest.mark.parametrize("slide", ALL_SLIDES, ids=lambda p: p.name)
def test_a_stored_tile_rereads_to_the_same_pixels(tiled, slide):
    """The stored read level/size reproduce a tile with no knowledge of slidestream's level choice."""
    store = SlideStore.open(tiled / f"{slide.stem}.zarr")
    tiles = store.read_tiles()
    level, (rw, rh), size = tiles.attrs["read_level"], tiles.attrs["read_size"], tiles.attrs["tile_size_px"]
    with open_slide(slide, default_mpp=ASSUMED_MPP[slide.name]) as s:
        for i in (0, len(tiles) // 2, len(tiles) - 1):
            x, y = (int(v) for v in tiles.coords[i])
            direct = resize_rgb(s.read_region((x, y), level, (rw, rh)), (size, size))
            np.testing.assert_array_equal(stages.tile_pixels(store, s, i), direct)


def test_default_resolution_tiles_need_no_resize(tmp_path):
    assert run("tile", CMU, "--out", tmp_path).exit_code == 0
    store = SlideStore.open(tmp_path / "CMU-1-Small-Region.zarr")
    tiles = store.read_tiles()
    assert tiles.attrs["read_size"] == [224, 224] and tiles.attrs["level0_size"] == [224, 224]
    with open_slide(CMU) as s:
        x, y = (int(v) for v in tiles.coords[3])
        np.testing.assert_array_equal(stages.tile_pixels(store, s, 3), s.read_region((x, y), 0, (224, 224)))


def test_rerun_skips_finished_slides(tiled):
    result = run("tile", slide_list(tiled), "--out", tiled, *TILE_ARGS)
    assert result.exit_code == 0
    assert "0 ok, 4 skipped, 0 failed" in result.stderr


def test_other_parameters_need_overwrite(tmp_path):
    out = tmp_path / "o"
    assert run("tile", CMU, "--out", out).exit_code == 0
    changed = run("tile", CMU, "--out", out, "--tile-size", "256")
    assert changed.exit_code == 1 and "other parameters" in changed.stderr
    assert run("tile", CMU, "--out", out, "--tile-size", "256", "--overwrite").exit_code == 0
    assert SlideStore.open(out / "CMU-1-Small-Region.zarr").read_tiles().attrs["tile_size_px"] == 256


def test_a_bad_slide_is_reported_and_the_batch_finishes(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(CMU, folder / CMU.name)
    make_truncated(TCGA_JP2K, folder / "broken.svs")
    (folder / "empty.svs").touch()
    out = tmp_path / "out"
    result = run("tile", folder, "--out", out)
    assert result.exit_code == 1
    assert "1 ok, 0 skipped, 2 failed" in result.stderr
    assert "broken.svs: truncated" in result.stderr
    assert "empty.svs: file is empty" in result.stderr
    assert sorted(p.name for p in out.glob("*.zarr")) == ["CMU-1-Small-Region.zarr"]


def test_missing_mpp_fails_that_slide_with_a_clear_reason(tmp_path):
    result = run("tile", CMU, TCGA_JP2K, "--out", tmp_path)
    assert result.exit_code == 1
    assert "tcga-cr-7395-01a-01-ts1.svs: no microns-per-pixel" in result.stderr
    assert (tmp_path / "CMU-1-Small-Region.zarr").exists()
    assert not (tmp_path / "tcga-cr-7395-01a-01-ts1.zarr").exists()


def test_slide_id_clash_is_an_error_naming_both_files(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    shutil.copy(CMU, tmp_path / "a" / "s.svs")
    shutil.copy(CMU, tmp_path / "b" / "s.svs")
    result = run("tile", tmp_path / "a", tmp_path / "b", "--out", tmp_path / "out")
    assert result.exit_code == 2
    assert "a/s.svs" in result.stderr and "b/s.svs" in result.stderr


def _snapshot(out: Path) -> dict:
    snap = {}
    for path in sorted(out.glob("*.zarr")):
        store = SlideStore.open(path)
        tiles = store.read_tiles()
        snap[path.name] = (tiles.coords.tolist(), tiles.tissue_fraction.tolist(),
                           store.read_selection("mosaic").tolist(), store.read_tissue_geojson())
    return snap


def test_interrupted_batch_resumes_to_the_same_stores(tmp_path, monkeypatch):
    slides = slide_list(tmp_path, [CMU, TCGA_JP2K, PEN])
    clean = tmp_path / "clean"
    assert run("tile", slides, "--out", clean, *TILE_ARGS).exit_code == 0

    interrupted = tmp_path / "interrupted"
    real_select = stages.select_tiles
    calls = {"n": 0}

    def crash_on_second(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("simulated crash between tiles and selection")
        return real_select(*args, **kwargs)

    monkeypatch.setattr(stages, "select_tiles", crash_on_second)
    first = run("tile", slides, "--out", interrupted, *TILE_ARGS)
    assert first.exit_code == 1 and "simulated crash" in first.stderr
    store = SlideStore.open(interrupted / f"{TCGA_JP2K.stem}.zarr")
    assert store.has("tiles") and not store.has("selections/mosaic")   # nothing half-claimed
    monkeypatch.setattr(stages, "select_tiles", real_select)
    second = run("tile", slides, "--out", interrupted, *TILE_ARGS)
    assert second.exit_code == 0
    assert _snapshot(interrupted) == _snapshot(clean)


def test_tissue_command_writes_geojson_only_stage(tmp_path):
    result = run("tissue", CMU, "--out", tmp_path)
    assert result.exit_code == 0, result.output
    store = SlideStore.open(tmp_path / "CMU-1-Small-Region.zarr")
    assert store.has("tissue") and not store.has("tiles")
    assert store.node_attrs("tissue")["summary"]["tissue_pieces"] >= 1


def test_a_replaced_selection_takes_the_features_computed_on_it_along(tmp_path):
    """Features on selection 'random' must not survive a new 'random' selection (they would pair
    old features with the new tiles' coordinates)."""
    select = ["tile", CMU, "--out", tmp_path, "--select", "random", "--count", "5"]
    assert run(*select, "--seed", "0").exit_code == 0
    extract = run("extract", CMU, "--out", tmp_path, "--encoder", "handcrafted", "--selection", "random")
    assert extract.exit_code == 0, extract.output
    store = SlideStore.open(tmp_path / f"{CMU.stem}.zarr")
    assert store.has("features/handcrafted")
    first = store.read_selection("random")

    assert run(*select, "--seed", "1").exit_code == 0
    assert not np.array_equal(store.read_selection("random"), first)
    assert not store.has("features/handcrafted")
    again = run("extract", CMU, "--out", tmp_path, "--encoder", "handcrafted", "--selection", "random")
    assert again.exit_code == 0 and "already extracted" not in again.output
    features, coords, _ = store.read_features("handcrafted")
    assert len(features) == 5
    np.testing.assert_array_equal(coords, store.read_tiles().coords[store.read_selection("random")])


def test_tile_overwrite_keeps_the_tissue_settings_and_refreshes_the_slide_mpp(tmp_path):
    assert run("tissue", PEN, "--out", tmp_path, "--default-mpp", "0.5", "--keep-pen").exit_code == 0
    result = run("tile", PEN, "--out", tmp_path, "--default-mpp", "0.25", "--overwrite", "--mpp", "1.0")
    assert result.exit_code == 0, result.output
    store = SlideStore.open(tmp_path / f"{PEN.stem}.zarr")
    assert store.node_attrs("tissue")["params"]["remove_pen"] is False       # --keep-pen survived
    assert store.slide_info["mpp_x"] == 0.25 == store.read_tiles().attrs["slide_mpp"][0]


def test_the_excluded_ink_is_kept_for_reviewers(tiled):
    """The pen strokes go into the store (QuPath class 'Ink') and onto the report's overview."""
    from slidestream.tissue import geometry_from_feature_collection

    store = SlideStore.open(tiled / f"{PEN.stem}.zarr")
    ink = store.read_ink_geojson()
    assert ink["features"] and ink["features"][0]["properties"]["classification"]["name"] == "Ink"
    ink_area = geometry_from_feature_collection(ink)
    tissue = stages.tissue_geometry(store)
    assert ink_area.intersection(tissue).area < 0.02 * ink_area.area   # ink is not tissue
    assert "pen ink, excluded" in (tiled / "report" / "index.html").read_text()
