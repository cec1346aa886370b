"""Patch selection: valid, deterministic, representative and cheap."""

from __future__ import annotations

import numpy as np
import pytest

from slidestream.selection import METHODS, select_tiles
from slidestream.tiling import lattice


@pytest.fixture
def two_colour_slide():
    """A 4000 x 4000 slide: left half pink tissue, right half purple tissue (as a thumbnail)."""
    image = np.zeros((400, 400, 3), np.uint8)
    image[:, :200] = (230, 150, 190)
    image[:, 200:] = (120, 60, 160)
    coords = lattice((4000, 4000), 100.0)
    return image, coords


@pytest.mark.parametrize("method", METHODS)
def test_indices_are_valid_sorted_unique_and_deterministic(method, two_colour_slide):
    image, coords = two_colour_slide
    fractions = np.linspace(0.3, 1.0, len(coords)).astype(np.float32)
    kwargs = dict(extent0=(100, 100), tissue_fraction=fractions, image=image, level0_size=(4000, 4000), fraction=0.05)
    a = select_tiles(method, coords, seed=3, **kwargs)
    b = select_tiles(method, coords, seed=3, **kwargs)
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.int64
    assert len(a) == len(np.unique(a)) and (np.diff(a) > 0).all()
    assert a.min() >= 0 and a.max() < len(coords)
    assert len(a) == int(np.ceil(0.05 * len(coords)))


def test_mosaic_represents_every_colour_and_spreads_out(two_colour_slide):
    image, coords = two_colour_slide
    picks = select_tiles("mosaic", coords, extent0=(100, 100), image=image, level0_size=(4000, 4000), count=20)
    xs = coords[picks, 0]
    assert (xs < 2000).sum() >= 8 and (xs >= 2000).sum() >= 8   # both colours, in proportion
    ys = coords[picks, 1]
    assert ys.max() - ys.min() > 2500                          # spread over the slide, not bunched


def test_fps_keeps_distance_and_prefers_dense_tissue():
    coords = lattice((6000, 6000), 100.0)
    fractions = np.where(coords[:, 0] < 3000, 0.95, 0.3).astype(np.float32)
    picks = select_tiles("fps", coords, extent0=(100, 100), tissue_fraction=fractions, count=30, fraction=None)
    assert len(picks) == 30
    assert (fractions[picks] >= 0.7).all()
    xy = coords[picks].astype(float)
    d = np.sqrt(((xy[:, None] - xy[None]) ** 2).sum(-1)) + np.eye(len(xy)) * 1e9
    assert d.min() >= 200 - 1e-6


def test_count_larger_than_tiles_returns_all(two_colour_slide):
    image, coords = two_colour_slide
    few = coords[:7]
    for method in METHODS:
        picks = select_tiles(method, few, extent0=(100, 100), tissue_fraction=np.ones(7), image=image,
                             level0_size=(4000, 4000), count=50, fraction=None)
        assert len(picks) == 7


def test_empty_grid_gives_empty_selection(two_colour_slide):
    image, _ = two_colour_slide
    empty = np.zeros((0, 2), np.int64)
    for method in METHODS:
        picks = select_tiles(method, empty, extent0=(100, 100), tissue_fraction=np.zeros(0), image=image,
                             level0_size=(4000, 4000))
        assert len(picks) == 0


def test_unknown_method_is_refused(two_colour_slide):
    _, coords = two_colour_slide
    with pytest.raises(ValueError, match="mosaic, fps, random, grid"):
        select_tiles("kmeans++", coords, extent0=(100, 100))  # type: ignore[arg-type]
