"""The tile grid: lattice geometry, exact tissue fractions, resolution rules."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shapely.geometry import MultiPolygon, Polygon, box

from slidestream.errors import ConfigError, ResolutionError
from slidestream.io import open_slide
from slidestream.tiling import lattice, tile_slide, tissue_fractions
from slidestream.tissue import detect_tissue
from tests.conftest import CMU, TCGA_JP2K


def exact_fractions(geometry, coords, extent0):
    boxes = shapely.box(coords[:, 0], coords[:, 1], coords[:, 0] + extent0[0], coords[:, 1] + extent0[1])
    return shapely.area(shapely.intersection(boxes, geometry)) / (extent0[0] * extent0[1])


@st.composite
def blobs(draw):
    """A few random polygons (some with holes) inside a 3000 x 2000 slide."""
    polys = []
    for _ in range(draw(st.integers(1, 4))):
        cx, cy = draw(st.floats(200, 2800)), draw(st.floats(200, 1800))
        r = draw(st.floats(60, 600))
        n = draw(st.integers(5, 12))
        angles = np.sort(np.array([draw(st.floats(0, 2 * np.pi)) for _ in range(n)]))
        radii = np.array([r * draw(st.floats(0.5, 1.0)) for _ in range(n)])
        shell = np.column_stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)])
        poly = Polygon(shell).buffer(0)
        if draw(st.booleans()) and r > 200:
            poly = poly.difference(Polygon([(cx - r / 4, cy - r / 4), (cx + r / 4, cy - r / 4), (cx, cy + r / 4)]))
        polys.append(poly)
    geom = shapely.union_all(polys)
    return geom if isinstance(geom, MultiPolygon) else MultiPolygon([g for g in getattr(geom, "geoms", [geom]) if isinstance(g, Polygon)])


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(geometry=blobs(), stride=st.integers(40, 300), extent_extra=st.integers(0, 100),
       min_tissue=st.floats(0.05, 0.95))
def test_fractions_match_exact_polygon_areas(geometry, stride, extent_extra, min_tissue):
    size = (3000, 2000)
    coords = lattice(size, float(stride))
    extent = (stride + extent_extra, stride + extent_extra)
    fast = tissue_fractions(geometry, size, coords, extent)
    exact = exact_fractions(geometry.intersection(box(0, 0, *size)), coords, extent)  # no tissue off the slide
    # polygons rasterised at 16 px per tile side (pixel centres), box sums interpolated: the error
    # is at most ~half a mask pixel along the boundary inside a tile; only slivers reach a few %
    error = np.abs(fast - exact)
    assert error.mean() < 0.01 and error.max() < 0.08
    kept = fast >= min_tissue
    assert (exact[kept] >= min_tissue - 0.08).all()       # every kept tile meets min_tissue
    assert (exact[~kept] < min_tissue + 0.08).all()       # no dropped tile does


@settings(max_examples=40, deadline=None, derandomize=True)
@given(stride=st.floats(17.0, 400.0), factor=st.integers(2, 4), w=st.integers(1, 6000), h=st.integers(1, 6000))
def test_coarser_grids_are_sub_grids_of_finer_ones(stride, factor, w, h):
    """Tiling at 2x (3x, 4x) the mpp with the same tile size puts every tile on a corner of the
    finer grid: grids at different resolutions line up, so their tiles can be matched by coords."""
    fine = {tuple(c) for c in lattice((w, h), stride).tolist()}
    coarse = lattice((w, h), stride * factor).tolist()
    assert coarse and all(tuple(c) in fine for c in coarse)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(tile=st.integers(16, 512), overlap_share=st.floats(0.0, 0.9), scale=st.floats(0.5, 8.0))
def test_overlap_only_changes_the_stride(tile, overlap_share, scale):
    """Whatever the overlap, tiles keep their size and the grid its anchor; neighbours are
    (tile - overlap) target px apart, i.e. they share exactly ``overlap`` px."""
    overlap = min(tile - 1, round(tile * overlap_share))
    stride0 = (tile - overlap) * scale
    coords = lattice((4000, 3000), stride0)
    assert tuple(coords[0]) == (0, 0)
    xs = np.unique(coords[:, 0])
    steps = np.diff(xs) / scale        # in target px
    assert np.all(np.abs(steps - (tile - overlap)) <= 1.0 / scale + 1e-9)   # rounding to level-0 px only


@settings(max_examples=25, deadline=None)
@given(stride=st.floats(17.0, 700.0), w=st.integers(1, 5000), h=st.integers(1, 5000))
def test_lattice_is_anchored_inside_and_regular(stride, w, h):
    coords = lattice((w, h), stride)
    assert (coords >= 0).all() and (coords[:, 0] < w).all() and (coords[:, 1] < h).all()
    xs = np.unique(coords[:, 0])
    assert xs[0] == 0
    np.testing.assert_array_equal(xs, np.rint(np.arange(len(xs)) * stride).astype(np.int64))
    assert len(np.unique(coords, axis=0)) == len(coords)


@pytest.fixture(scope="module")
def cmu_tissue():
    with open_slide(CMU) as slide:
        return detect_tissue(slide).geometry


def test_kept_tiles_meet_min_tissue_on_a_real_slide(cmu_tissue):
    with open_slide(CMU) as slide:
        grid = tile_slide(slide, cmu_tissue, mpp=0.5, tile_size=224, min_tissue=0.5)
        assert len(grid) > 10
        assert (grid.tissue_fraction >= 0.5).all()
        exact = exact_fractions(cmu_tissue, grid.coords, grid.level0_size)
        assert np.abs(exact - grid.tissue_fraction).max() < 0.03
        assert (grid.coords[:, 0] < slide.width).all() and (grid.coords[:, 1] < slide.height).all()


def test_overlap_shrinks_the_stride_and_keeps_the_anchor(cmu_tissue):
    with open_slide(CMU) as slide:
        plain = tile_slide(slide, cmu_tissue, tile_size=224, overlap=0)
        over = tile_slide(slide, cmu_tissue, tile_size=224, overlap=112)
    assert plain.stride0 == 224 and over.stride0 == 112
    assert len(over) > 3 * len(plain)
    # every non-overlapping tile position is also a position of the overlapping grid
    plain_set = {tuple(c) for c in plain.coords}
    over_set = {tuple(c) for c in over.coords}
    assert plain_set <= over_set


def test_read_geometry_is_recorded_for_exact_rereads(cmu_tissue):
    with open_slide(TCGA_JP2K, default_mpp=0.25) as slide:
        tissue = detect_tissue(slide).geometry
        grid = tile_slide(slide, tissue, mpp=0.5, tile_size=224)
        assert grid.read_level == 1 and grid.read_size == (224, 224) and grid.level0_size == (448, 448)
        attrs = grid.attrs()
        assert attrs["read_level"] == 1 and attrs["level0_size"] == [448, 448]
        x, y = grid.coords[len(grid) // 2]
        direct = slide.read_region((int(x), int(y)), 1, (224, 224))
        np.testing.assert_array_equal(slide.read_at_mpp(int(x), int(y), 0.5, 224), direct)


def test_magnification_tiling_goes_through_objective_power(cmu_tissue):
    with open_slide(CMU) as slide:
        grid = tile_slide(slide, cmu_tissue, magnification=10, tile_size=112)
    assert grid.target_mpp == pytest.approx(0.998)
    assert grid.read_size == (224, 224) and grid.plan.needs_resize


def test_finer_target_than_the_slide_is_refused_unless_allowed(cmu_tissue):
    with open_slide(CMU) as slide:
        with pytest.raises(ResolutionError, match=r"CMU-1-Small-Region\.svs.*upsample"):
            tile_slide(slide, cmu_tissue, mpp=0.25)
        grid = tile_slide(slide, cmu_tissue, mpp=0.25, allow_upsample=True)
        assert grid.read_size == (112, 112)


def test_bad_parameters_are_config_errors(cmu_tissue):
    with open_slide(CMU) as slide:
        with pytest.raises(ConfigError, match="overlap"):
            tile_slide(slide, cmu_tissue, tile_size=224, overlap=224)
        with pytest.raises(ConfigError, match="min_tissue"):
            tile_slide(slide, cmu_tissue, min_tissue=1.5)


def test_no_tissue_means_no_tiles():
    with open_slide(CMU) as slide:
        assert len(tile_slide(slide, MultiPolygon())) == 0
        assert len(tile_slide(slide, box(0, 0, 10, 10))) == 0


@settings(max_examples=20, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(geometry=blobs(), stride=st.integers(40, 300), band_pixels=st.integers(500, 20_000))
def test_banded_rasterisation_equals_one_mask(geometry, stride, band_pixels):
    """The coverage mask is built band by band to bound RAM; the fractions must not notice."""
    import slidestream.tiling.coverage as coverage

    size = (3000, 2000)
    coords = lattice(size, float(stride))
    extent = (stride, stride)
    whole = tissue_fractions(geometry, size, coords, extent)
    saved = coverage.BAND_PIXELS
    coverage.BAND_PIXELS = band_pixels
    try:
        banded = tissue_fractions(geometry, size, coords, extent)
    finally:
        coverage.BAND_PIXELS = saved
    np.testing.assert_allclose(banded, whole, rtol=0, atol=1e-5)


@pytest.fixture(scope="module")
def cmu_result():
    with open_slide(CMU) as slide:
        return detect_tissue(slide)


def test_mask_coverage_matches_polygon_coverage_on_a_real_slide(cmu_result):
    """The fast path (coverage from the detector's mask) and the polygon path agree tile by tile:
    the polygons are the mask's outline, simplified by under a working pixel."""
    from slidestream.tiling.coverage import mask_fractions

    with open_slide(CMU) as slide:
        plan = slide.plan(0.5, 224)
        coords = lattice(slide.dimensions, 112.0)
        from_mask = mask_fractions(cmu_result.mask, slide.dimensions, coords, plan.level0_size)
        from_polygons = tissue_fractions(cmu_result.geometry, slide.dimensions, coords, plan.level0_size)
        exact = exact_fractions(cmu_result.geometry, coords, plan.level0_size)
        fast = tile_slide(slide, cmu_result, mpp=0.5, tile_size=224)
        slow = tile_slide(slide, cmu_result.geometry, mpp=0.5, tile_size=224)
    assert from_mask.max() > 0.99 and (from_mask == 0).any()
    assert np.abs(from_mask - from_polygons).max() < 0.03
    assert np.abs(from_mask - exact).max() < 0.03
    a, b = {tuple(c) for c in fast.coords}, {tuple(c) for c in slow.coords}
    assert len(a & b) / len(a | b) > 0.9
    # any tile only one path keeps sits at min_tissue, within the outline's simplification
    disputed = np.array([c in a ^ b for c in map(tuple, coords)])
    assert (np.abs(from_mask[disputed] - 0.25) < 0.03).all()


def test_mask_coverage_counts_area_off_the_slide_as_glass():
    from slidestream.tiling.coverage import mask_fractions

    mask = np.ones((10, 20), bool)  # all tissue; slide 200 x 100 level-0 px
    coords = np.array([[0, 0], [190, 90], [100, 50]])
    fractions = mask_fractions(mask, (200, 100), coords, (20, 20))
    np.testing.assert_allclose(fractions, [1.0, 0.25, 1.0])
    half = mask.copy()
    half[:, 10:] = False  # tissue on the left half only; a tile straddling x = 100 by 5 px
    np.testing.assert_allclose(mask_fractions(half, (200, 100), np.array([[95, 0]]), (20, 20)), [0.25])
