"""Tile QC: white/black/grey shares per tile from one low-resolution read, stored and filterable."""

from __future__ import annotations

import numpy as np
import pytest

from slidestream.io import open_slide
from slidestream.pipeline.stages import SlideSource, _same_tiling, run_tiles
from slidestream.store import SlideStore
from slidestream.tiling import tile_slide
from slidestream.tiling.params import TilingParams
from slidestream.tiling.qc import pixel_classes, qc_fractions
from slidestream.tissue import detect_tissue
from tests.conftest import CMU


def test_fractions_on_a_known_image() -> None:
    """A 100x100 image at 1 um/px of a level-0 0.5 um/px slide: left half black, a grey band, white rest."""
    image = np.full((100, 100, 3), 255, np.uint8)
    image[:, :50] = 0
    image[:50, 50:] = (128, 130, 126)  # achromatic mid-grey
    coords = np.array([[0, 0], [100, 0], [100, 100], [180, 180]])  # level-0, tiles of 100 level-0 px = 50 image px
    qc = qc_fractions(image, (1.0, 1.0), (0.5, 0.5), coords, (100, 100))
    np.testing.assert_allclose(qc[0], [0, 1, 1])          # all black (black is achromatic)
    np.testing.assert_allclose(qc[1], [0, 0, 1])          # all grey
    np.testing.assert_allclose(qc[2], [1, 0, 1])          # all white
    np.testing.assert_allclose(qc[3], [1, 0, 1])          # 10x10 inside + past the edge: white as the reader pads
    assert pixel_classes(np.array([[[200, 120, 160]]], np.uint8)).tolist() == [[[False, False, False]]]  # stain


@pytest.fixture(scope="module")
def cmu_grid():
    with open_slide(CMU) as slide:
        tissue = detect_tissue(slide).geometry
        grid = tile_slide(slide, tissue, mpp=1.0, tile_size=128, min_tissue=0.0, tile_qc=True)
        # an independent measure: each tile read on its own at the QC resolution
        side = round(grid.level0_size[0] * slide.mpp[0] / grid.extra["qc_mpp"])
        direct = np.array([pixel_classes(slide.read_at_mpp(int(x), int(y), grid.extra["qc_mpp"], side)).mean(axis=(0, 1))
                           for x, y in grid.coords])
    return grid, direct


def test_fractions_match_reading_each_tile(cmu_grid) -> None:
    grid, direct = cmu_grid
    assert grid.qc is not None and grid.qc.shape == (len(grid), 3)
    assert grid.qc[:, 0].min() < 0.2 and grid.qc[:, 0].max() > 0.95  # tissue tiles and glass tiles
    assert np.abs(grid.qc - direct).mean() < 0.02
    assert np.abs(grid.qc - direct).max() < 0.2


def test_filters_drop_glass_tiles(cmu_grid) -> None:
    grid, _ = cmu_grid
    with open_slide(CMU) as slide:
        tissue = detect_tissue(slide).geometry
        clean = tile_slide(slide, tissue, mpp=1.0, tile_size=128, min_tissue=0.0, max_white=0.5)
        plain = tile_slide(slide, tissue, mpp=1.0, tile_size=128, min_tissue=0.0)
    assert plain.qc is None and "qc_dropped" not in plain.extra  # off by default
    expected = grid.qc[:, 0] <= 0.5
    assert 0 < expected.sum() < len(grid)
    np.testing.assert_array_equal(clean.coords, grid.coords[expected])
    assert clean.extra["qc_dropped"] == int((~expected).sum())
    assert (clean.qc[:, 0] <= 0.5).all()


def test_qc_is_stored_per_tile_and_old_stores_still_match(tmp_path) -> None:
    source = SlideSource(CMU)
    tiling = TilingParams(mpp=1.0, tile_size=128, max_grey=0.9)
    summary = run_tiles(source, tmp_path, tiling)
    tiles = SlideStore.open(tmp_path / f"{source.slide_id}.zarr").read_tiles()
    assert tiles.qc is not None and tiles.qc.shape == (len(tiles), 3)
    assert (tiles.qc[:, 2] <= 0.9).all() and tiles.attrs["qc_columns"] == ["white", "black", "grey"]
    assert summary.get("qc_dropped", 0) == tiles.attrs["qc_dropped"]
    # a store written before tile QC existed lacks its keys: same parameters, not "other parameters"
    old = {k: v for k, v in TilingParams().model_dump().items() if k not in {"tile_qc", "qc_mpp", "max_white", "max_black", "max_grey"}}
    assert _same_tiling({**old, "slide_mpp": [0.5, 0.5]}, {**TilingParams().model_dump(), "slide_mpp": [0.5, 0.5]})
    assert not _same_tiling({**old, "slide_mpp": [0.5, 0.5]}, {**TilingParams(max_white=0.5).model_dump(), "slide_mpp": [0.5, 0.5]})
