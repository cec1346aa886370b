"""The numpy Otsu in ``tissue.masks`` returns skimage's ``threshold_otsu`` bit for bit.

It replaced the skimage call so that tissue detection does not import scipy.ndimage; a threshold
that moved by one bin would move every mask edge, so equality is exact, not approximate.
"""

from __future__ import annotations

import numpy as np
import pytest
from skimage.filters import threshold_otsu

from slidestream.io import open_slide
from slidestream.tissue.masks import otsu_from_histogram, otsu_u8
from tests.conftest import ALL_SLIDES


def test_random_histograms_give_skimages_threshold() -> None:
    rng = np.random.default_rng(0)
    for trial in range(300):
        n = int(rng.integers(2, 257))
        counts = rng.integers(0, 10_000, n).astype(np.float64)
        counts[rng.random(n) < 0.3] = 0          # gaps, and zeros at either end (trimmed)
        if np.count_nonzero(counts) < 2:
            continue
        centers = np.sort(rng.random(n)) if trial % 2 else np.linspace(0.1, 0.9, n)
        assert otsu_from_histogram(counts, centers) == threshold_otsu(hist=(counts, centers))


@pytest.mark.parametrize("slide_path", ALL_SLIDES, ids=lambda p: p.name)
def test_slide_saturation_threshold_is_skimages(slide_path) -> None:
    """On each shared slide's thumbnail saturation, as ``tissue_mask`` computes it."""
    import cv2

    with open_slide(slide_path, default_mpp=0.5) as slide:
        image, _ = slide.read_whole(8.0)
    sat = cv2.cvtColor(np.ascontiguousarray(image[..., :3]), cv2.COLOR_RGB2HSV)[..., 1]
    where = np.ones(sat.shape, bool)
    counts = np.bincount(sat[where], minlength=256)
    levels = np.flatnonzero(counts)
    values = levels.astype(np.float32) / np.float32(255.0)
    hist, edges = np.histogram(values, bins=256, range=(float(values[0]), float(values[-1])), weights=counts[levels])
    expected = float(threshold_otsu(hist=(hist, (edges[:-1] + edges[1:]) / 2)))
    assert otsu_u8(sat, where) == expected
