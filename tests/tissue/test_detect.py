"""Tissue detection on the real slides: found where the tissue is, not on glass or ink."""

from __future__ import annotations

import warnings

import geopandas as gpd
import numpy as np
import pytest
import tifffile
from shapely.geometry import Polygon

from slidestream.errors import NoTissueWarning
from slidestream.io import open_slide
from slidestream.tissue import (
    TissueParams,
    detect_tissue,
    mask_to_polygons,
    rasterize,
    read_geojson,
    to_feature_collection,
    write_geojson,
)
from slidestream.tissue.polygons import dissolve
from tests.conftest import CMU, KIDNEY, PEN, TCGA_JP2K

# Tissue share of the working image, checked by eye on the overlay PNGs (tissue outlined, pen
# strokes and glass outside): (slide, mpp to assume when the file has none, low, high).
EXPECTED_FRACTION = [
    (CMU, None, 0.24, 0.36),
    (TCGA_JP2K, 0.5, 0.56, 0.70),
    (PEN, 2.0, 0.35, 0.48),
    (KIDNEY, 2.0, 0.0015, 0.006),
]


@pytest.fixture(scope="module")
def results():
    out = {}
    for path, mpp, _, _ in EXPECTED_FRACTION:
        with open_slide(path, default_mpp=mpp) as slide:
            out[path] = (detect_tissue(slide), slide.dimensions)
    return out


@pytest.mark.parametrize(("path", "mpp", "low", "high"), EXPECTED_FRACTION, ids=[e[0].name for e in EXPECTED_FRACTION])
def test_tissue_fraction_matches_what_the_overlay_shows(results, path, mpp, low, high):
    result, _ = results[path]
    assert low <= result.mask.mean() <= high
    assert not result.is_empty


def test_working_image_is_low_resolution(results):
    for result, _ in results.values():
        assert max(result.mask.shape) <= 2100
        assert np.mean(result.image_mpp) >= 1.99


def test_pen_marks_are_not_tissue(results):
    result, _ = results[PEN]
    rgb = result.image.astype(int)
    # independent ink rule: strongly green-cyan or strongly blue pixels
    green_ink = (rgb[..., 1] > rgb[..., 0] + 50) & (rgb[..., 2] > rgb[..., 0] + 30)
    blue_ink = (rgb[..., 2] > rgb[..., 0] + 60) & (rgb[..., 2] > rgb[..., 1] + 60)
    ink = green_ink | blue_ink
    assert ink.sum() > 10_000  # the slide really has ink
    assert (ink & result.mask).sum() / ink.sum() < 0.02


def test_pen_marks_would_count_without_rejection():
    with open_slide(PEN, default_mpp=2.0) as slide:
        kept = detect_tissue(slide, TissueParams(remove_pen=False))
        removed = detect_tissue(slide, TissueParams())
    assert kept.mask.mean() > removed.mask.mean() + 0.03


def test_background_corners_are_not_tissue(results):
    for result, _ in results.values():
        h, w = result.mask.shape
        corner = result.mask[: h // 20, -w // 20 :]
        assert corner.mean() < 0.05


def test_polygons_are_level0_and_inside_the_slide(results):
    for result, (w, h) in results.values():
        minx, miny, maxx, maxy = result.geometry.bounds
        assert minx >= -1 and miny >= -1 and maxx <= w + 1 and maxy <= h + 1
        assert result.geometry.is_valid
        # polygon area agrees with the raster mask it came from
        mask_area0 = result.mask.sum() * result.scale[0] * result.scale[1]
        assert result.geometry.area == pytest.approx(mask_area0, rel=0.05)


def test_holes_are_kept(results):
    result, _ = results[TCGA_JP2K]
    assert sum(len(p.interiors) for p in result.geometry.geoms) >= 1


def test_geojson_round_trips_and_is_qupath_shaped(results, tmp_path):
    result, _ = results[PEN]
    path = write_geojson(result.gdf, tmp_path / "pen.geojson")
    fc = to_feature_collection(result.gdf)
    assert fc["type"] == "FeatureCollection" and len(fc["features"]) == len(result.gdf)
    for feature in fc["features"]:
        assert feature["properties"]["classification"]["name"] == "Tissue"
        assert feature["properties"]["objectType"] == "annotation"
        assert feature["geometry"]["type"] in ("Polygon", "MultiPolygon")
    back = gpd.read_file(path).set_crs(None, allow_override=True)
    assert len(back) == len(result.gdf)
    assert back.geometry.area.sum() == pytest.approx(result.gdf.geometry.area.sum(), rel=1e-6)
    assert read_geojson(path).geometry.area.sum() == pytest.approx(result.geometry.area, rel=1e-6)


def test_blank_slide_gives_empty_result_and_a_warning(tmp_path):
    rng = np.random.default_rng(1)
    blank = np.clip(rng.normal(242, 3, (1200, 1600, 3)), 0, 255).astype(np.uint8)
    path = tmp_path / "blank.tif"
    tifffile.imwrite(path, blank, tile=(256, 256), photometric="rgb", resolution=(1e4 / 2.0, 1e4 / 2.0),
                     resolutionunit="CENTIMETER")
    with open_slide(path) as slide:
        assert slide.mpp == pytest.approx((2.0, 2.0))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = detect_tissue(slide)
    assert result.is_empty and len(result.gdf) == 0
    assert any(issubclass(w.category, NoTissueWarning) and "blank.tif" in str(w.message) for w in caught)


def test_mask_polygon_round_trip_keeps_holes_and_islands():
    mask = np.zeros((200, 200), bool)
    mask[20:180, 20:180] = True       # tissue
    mask[60:140, 60:140] = False      # hole
    mask[90:110, 90:110] = True       # island inside the hole
    polygons = mask_to_polygons(mask, (4.0, 4.0), simplify_px=0)
    assert len(polygons) == 2
    assert sorted(len(p.interiors) for p in polygons) == [0, 1]
    back = rasterize(Polygon().union(polygons[0]).union(polygons[1]), mask.shape, (4.0, 4.0))
    iou = (back & mask).sum() / (back | mask).sum()
    assert iou > 0.98


@pytest.mark.parametrize("seed", range(4))
def test_unsimplified_outlines_follow_pixel_edges(seed):
    """Thin lines, holes and islands in holes survive exactly; pieces are 4-connected, so where
    two pixels touch only at a corner the upper one loses that corner's half (a cut through its
    centre) rather than making an invalid self-touching ring; nothing else changes."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    mask = ndimage.binary_opening(rng.random((120, 150)) > 0.45) | (rng.random((120, 150)) > 0.97)
    mask[5, 5:40] = True                                   # one-pixel line
    mask[10, 10] = mask[11, 11] = True                     # corner contact only
    mask[10, 11] = mask[11, 10] = False
    a, b, c, d = mask[:-1, :-1], mask[:-1, 1:], mask[1:, :-1], mask[1:, 1:]
    cut_left, cut_right = a & d & ~b & ~c, b & c & ~a & ~d
    cut = np.zeros_like(mask)
    cut[:-1, :-1] |= cut_left
    cut[:-1, 1:] |= cut_right
    polygons = mask_to_polygons(mask, (3.0, 2.0), simplify_px=0)
    assert all(p.is_valid for p in polygons)
    union = dissolve(polygons)
    back = rasterize(union, mask.shape, (3.0, 2.0))
    assert np.array_equal(back & ~cut, mask & ~cut)        # exact away from corner contacts
    assert not (back & ~mask).any()
    expected_px = mask.sum() - 0.5 * (cut_left.sum() + cut_right.sum())
    assert union.area == pytest.approx(expected_px * 6.0)


def test_ink_coloured_specks_do_not_punch_holes_in_tissue():
    """CMU has no pen marks, only specks of marking dye: pen rejection must leave its tissue whole."""
    with open_slide(CMU) as slide:
        with_rejection = detect_tissue(slide)
        without = detect_tissue(slide, TissueParams(remove_pen=False))
    assert with_rejection.pen.mean() < 0.005
    assert with_rejection.geometry.area >= 0.95 * without.geometry.area


def test_a_fragment_below_the_minimum_area_is_counted_and_explained(tmp_path):
    """Kidney's fragment at a (wrong) 0.5 um/px is ~1000 um^2, under min_object_um2: no tissue,
    but the summary and the report say that a stained piece was dropped for its size."""
    from typer.testing import CliRunner

    from slidestream.cli import app

    with open_slide(KIDNEY, default_mpp=0.5) as slide, warnings.catch_warnings():
        warnings.simplefilter("ignore", NoTissueWarning)
        result = detect_tissue(slide)
    assert result.is_empty and result.summary()["small_pieces_dropped"] >= 1
    run = CliRunner().invoke(app, ["tissue", str(KIDNEY), "--out", str(tmp_path), "--default-mpp", "0.5"])
    assert run.exit_code == 0, run.output
    page = (tmp_path / "report" / "index.html").read_text()
    assert "smaller than the 10,000 µm² minimum" in page


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fast_mask_cleaning_equals_skimage(seed):
    """OpenCV labelling and the bincount Otsu replace skimage/scipy without changing a pixel."""
    from skimage.filters import threshold_otsu
    from skimage.morphology import remove_small_holes, remove_small_objects

    from slidestream.tissue.masks import clean_mask, drop_small_pieces, otsu_u8

    rng = np.random.default_rng(seed)
    mask = rng.random((150, 170)) > 0.55
    kept, dropped = drop_small_pieces(mask, 6)
    np.testing.assert_array_equal(kept, remove_small_objects(mask, max_size=6))
    assert dropped > 0
    params = TissueParams(min_object_um2=5 * 4.0, min_hole_um2=7 * 4.0)
    cleaned, _ = clean_mask(mask, 2.0, params)
    expected = remove_small_holes(remove_small_objects(mask, max_size=5), max_size=7)
    np.testing.assert_array_equal(cleaned, expected)
    values = rng.integers(10, 90, (60, 80)).astype(np.uint8)
    where = rng.random(values.shape) > 0.2
    assert otsu_u8(values, where) == pytest.approx(threshold_otsu(values[where].astype(np.float32) / np.float32(255)))
    assert otsu_u8(np.full((4, 4), 7, np.uint8), np.ones((4, 4), bool)) is None


def test_snap_to_level_segments_a_stored_level_as_is():
    """With ``snap_to_level``, detection reads a pyramid level up to that factor coarser, unresampled."""
    with open_slide(PEN, default_mpp=2.0) as slide, warnings.catch_warnings():
        warnings.simplefilter("ignore", NoTissueWarning)
        default = detect_tissue(slide)
        snapped = detect_tissue(slide, TissueParams(snap_to_level=1.6))  # 6.3 um/px wanted, 8 stored
        level = slide.read_region((0, 0), 2, slide.level_dimensions[2])
    assert snapped.mask.shape == (slide.level_dimensions[2][1], slide.level_dimensions[2][0])
    np.testing.assert_array_equal(snapped.image, level)
    assert snapped.image_mpp == pytest.approx((8.0, 8.0), rel=1e-3)
    assert default.mask.shape != snapped.mask.shape
    union = default.geometry.union(snapped.geometry).area
    assert default.geometry.intersection(snapped.geometry).area / union > 0.95
