"""Tile QC: the share of white, black and grey pixels of every tile, measured cheaply.

What users of hs2p and LazySlide filter tiles on: a tile that is mostly glass (white), slide
edge or marker (black), or achromatic (grey: glass, dust, shadows; histolab's ``filter_grays``)
carries little tissue signal even when the tissue polygon covers it. The fractions are measured
on one low-resolution image of the whole slide (``qc_mpp``, 4 um/px by default: 1/64 of the
pixels of a 0.5 um/px read), with summed-area tables, so QC costs one thumbnail read and a few
array operations whatever the number of tiles, never a level-0 read.

Pixel rules (uint8 RGB): white when every channel is >= 220 (hs2p's and CLAM's white cut),
black when every channel is <= 25, grey when the channels differ by at most 15 (histolab's grey
tolerance; white and black pixels are grey too).
"""

from __future__ import annotations

import numpy as np

from slidestream.io import Slide

WHITE_MIN = 220
BLACK_MAX = 25
GREY_TOLERANCE = 15
QC_COLUMNS = ("white", "black", "grey")
MAX_QC_PIXELS = 64_000_000  # a coarser QC image beyond this (a 100k x 100k px slide at 4 um/px is 39 M)


def pixel_classes(rgb: np.ndarray) -> np.ndarray:
    """bool (H, W, 3): white, black, grey per pixel of a uint8 RGB image."""
    lo, hi = rgb.min(axis=2), rgb.max(axis=2)
    return np.stack([lo >= WHITE_MIN, hi <= BLACK_MAX, (hi.astype(np.int16) - lo) <= GREY_TOLERANCE], axis=2)


def _box_sums(table: np.ndarray, x0: np.ndarray, y0: np.ndarray, x1: np.ndarray, y1: np.ndarray) -> np.ndarray:
    return table[y1, x1].astype(np.int64) - table[y0, x1] - table[y1, x0] + table[y0, x0]


def qc_fractions(image: np.ndarray, image_mpp: tuple[float, float], slide_mpp: tuple[float, float],
                 coords: np.ndarray, extent0: tuple[int, int]) -> np.ndarray:
    """float32 (N, 3) white/black/grey shares of each tile (level-0 top-left ``coords``, level-0
    ``extent0``) on ``image`` (the whole slide at ``image_mpp``). Parts of a tile past the slide's
    edge count as white, as the reader pads them."""
    h, w = image.shape[:2]
    n = len(coords)
    out = np.zeros((n, 3), np.float32)
    if n == 0:
        return out
    classes = pixel_classes(image)
    sx, sy = slide_mpp[0] / image_mpp[0], slide_mpp[1] / image_mpp[1]  # image px per level-0 px
    c = np.asarray(coords, dtype=np.float64)
    x0 = np.clip(np.rint(c[:, 0] * sx), 0, w).astype(np.int64)
    y0 = np.clip(np.rint(c[:, 1] * sy), 0, h).astype(np.int64)
    x1 = np.clip(np.rint((c[:, 0] + extent0[0]) * sx), 0, w).astype(np.int64)
    y1 = np.clip(np.rint((c[:, 1] + extent0[1]) * sy), 0, h).astype(np.int64)
    full = np.maximum(np.rint(extent0[0] * sx) * np.rint(extent0[1] * sy), 1.0)
    inside = (x1 - x0) * (y1 - y0)
    for k in range(3):
        table = np.zeros((h + 1, w + 1), np.int32)  # at most MAX_QC_PIXELS: int32 holds any count
        np.cumsum(np.cumsum(classes[..., k], axis=0, dtype=np.int32), axis=1, out=table[1:, 1:])
        counts = _box_sums(table, x0, y0, x1, y1).astype(np.float64)
        if k != 1:  # outside the slide is white (and so grey)
            counts += np.maximum(full - inside, 0)
        out[:, k] = np.clip(counts / np.maximum(full, inside), 0, 1)
    return out


def qc_image(slide: Slide, mpp: float) -> tuple[np.ndarray, tuple[float, float]]:
    """The whole slide at ``mpp`` (coarser when it would exceed ``MAX_QC_PIXELS``), and its true mpp."""
    mx, my = slide.mpp
    pixels = slide.width * mx / mpp * slide.height * my / mpp
    if pixels > MAX_QC_PIXELS:
        mpp *= float(np.sqrt(pixels / MAX_QC_PIXELS))
    return slide.read_whole(mpp)


def keep_by_qc(fractions: np.ndarray, max_white: float | None, max_black: float | None,
               max_grey: float | None) -> np.ndarray:
    """Tiles whose white/black/grey shares are all within the given maxima (None: no limit)."""
    keep = np.ones(len(fractions), bool)
    for k, limit in enumerate((max_white, max_black, max_grey)):
        if limit is not None:
            keep &= fractions[:, k] <= limit
    return keep
