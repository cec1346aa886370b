"""Out-of-focus tiles: a slide with one sharp and one defocused half keeps only the sharp tiles."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import tifffile

from slidestream.io import open_slide
from slidestream.tiling import tile_slide
from slidestream.tissue import detect_tissue
from tests.conftest import CMU


@pytest.fixture(scope="module")
def half_blurred(tmp_path_factory):
    """CMU at its own 0.499 um/px, the bottom half blurred (sigma 6 um) as a scanner out of focus."""
    with open_slide(CMU) as slide:
        rgb = slide.read_region((0, 0), 0, slide.dimensions)
    split = rgb.shape[0] // 2
    rgb[split:] = cv2.GaussianBlur(rgb[split:], (0, 0), sigmaX=6 / 0.499)
    path = tmp_path_factory.mktemp("focus") / "half-blurred.tif"
    tifffile.imwrite(path, rgb, tile=(256, 256), photometric="rgb", compression="jpeg",
                     resolution=(1e4 / 0.499, 1e4 / 0.499), resolutionunit="CENTIMETER")
    return path, split


def test_defocused_tiles_are_dropped_and_sharp_ones_kept(half_blurred):
    path, split = half_blurred
    with open_slide(path) as slide:
        tissue = detect_tissue(slide).geometry
        everything = tile_slide(slide, tissue)
        sharp = tile_slide(slide, tissue, min_focus_ratio=0.1)
    extent = everything.level0_size[1]
    top = everything.coords[:, 1] + extent <= split       # wholly in the sharp half
    bottom = everything.coords[:, 1] >= split              # wholly in the blurred half
    kept = {tuple(c) for c in sharp.coords.tolist()}
    kept_top = np.mean([tuple(c) in kept for c in everything.coords[top].tolist()])
    kept_bottom = np.mean([tuple(c) in kept for c in everything.coords[bottom].tolist()])
    assert top.sum() > 10 and bottom.sum() > 10
    assert kept_top >= 0.9, kept_top
    assert kept_bottom <= 0.1, kept_bottom
    assert sharp.extra["out_of_focus_dropped"] == len(everything) - len(sharp)
    assert sharp.focus is not None and len(sharp.focus) == len(sharp)


def test_focus_is_off_by_default(half_blurred):
    path, _ = half_blurred
    with open_slide(path) as slide:
        grid = tile_slide(slide, detect_tissue(slide).geometry)
    assert grid.focus is None and "out_of_focus_dropped" not in grid.extra
