"""Out-of-focus tiles: a sharpness score per tile, judged against the slide's own tissue.

Blur cannot be seen at the 8-16 um/px of tissue detection, so the score is measured on each kept
tile at ``focus_mpp`` (2 um/px by default: 1/16 of the pixels of a 0.5 um/px read). The score is
the variance of the Laplacian of the grey image, the usual focus measure. Absolute values depend
on stain, tissue and scanner, so a tile is called out of focus relative to its slide: below
``min_focus_ratio`` times the score of the slide's sharp tiles (the 90th percentile, not the
median: a slide that is mostly out of focus must not make blur the norm).
"""

from __future__ import annotations

import cv2
import numpy as np

from slidestream.io import Slide


def focus_scores(slide: Slide, coords: np.ndarray, extent0: tuple[int, int], mpp: float) -> np.ndarray:
    """Variance of the Laplacian of every tile (level-0 top-left ``coords``, level-0 ``extent0``)
    read at ``mpp`` (or at the slide's own resolution when that is coarser). float32 (N,)."""
    mpp = max(mpp, float(np.mean(slide.mpp)))
    side = max(8, round(extent0[0] * slide.mpp[0] / mpp))
    scores = np.empty(len(coords), np.float32)
    for i, (x, y) in enumerate(np.asarray(coords, dtype=np.int64).tolist()):
        grey = cv2.cvtColor(slide.read_at_mpp(x, y, mpp, side, allow_upsample=True), cv2.COLOR_RGB2GRAY)
        scores[i] = cv2.Laplacian(grey, cv2.CV_32F, ksize=3).var()
    return scores


REFERENCE_PERCENTILE = 90


def focus_reference(scores: np.ndarray) -> float:
    """Sharpness of the slide's in-focus tissue: the 90th percentile of its tiles' scores."""
    return float(np.percentile(scores, REFERENCE_PERCENTILE)) if len(scores) else 0.0


def in_focus(scores: np.ndarray, min_ratio: float) -> np.ndarray:
    """Tiles at least ``min_ratio`` times as sharp as the slide's sharp tiles."""
    return scores >= min_ratio * focus_reference(scores)
