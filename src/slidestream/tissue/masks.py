"""Pixel-level tissue classification on a low-resolution RGB image.

Saturation separates stained tissue from glass regardless of stain (H&E, IHC): glass is grey,
stain is coloured. Otsu picks the cut per slide (as CLAM and TRIDENT do), clamped between a floor
(blank slides must yield nothing) and a cap (a pale IHC fragment must survive a saturated
neighbour). Ink is recognised by hue: no histological stain is green, and pen blue is far more
saturated than haematoxylin.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from slidestream.tissue.params import TissueParams


@dataclass
class MaskResult:
    tissue: np.ndarray          # bool (H, W): final tissue mask
    pen: np.ndarray             # bool (H, W): pixels rejected as ink
    threshold: float            # saturation threshold used
    mpp: float                  # um per pixel of the masks
    small_pieces_dropped: int = 0  # stained pieces under min_object_um2 (why a slide may get no tissue)


def _odd(n: float) -> int:
    k = max(1, round(n))
    return k if k % 2 else k + 1


def hsv_u8(rgb: np.ndarray) -> np.ndarray:
    """HSV as uint8 (H, W, 3): hue 0-255 for 0-360 degrees, saturation and value 0-255.

    OpenCV's 8-bit converter: a third of the float one's time and a quarter of its memory. Its
    saturation is within 1/255 of the rounded exact one, its hue within one step (1.4 degrees):
    the masks keep an IoU of 0.999 or more with the float path's (benchmarks/bench_tiling_ab.py).
    Kept interleaved: ``cv2.inRange`` tests all three channels in one pass.
    """
    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2HSV_FULL)


def in_range(hsv: np.ndarray, low: tuple[int, int, int], high: tuple[int, int, int]) -> np.ndarray:
    """Where low <= (h, s, v) <= high, channel by channel (inclusive), as a bool mask."""
    if any(lo > hi for lo, hi in zip(low, high, strict=True)):
        return np.zeros(hsv.shape[:2], bool)
    return cv2.inRange(hsv, low, high) > 0


def _above(x: float) -> int:
    """Smallest 8-bit level whose value / 255 exceeds ``x``: ``u8 > x * 255`` as ``u8 >= _above(x)``."""
    return int(np.floor(x * 255.0)) + 1


def _ceil(x: float) -> int:
    """Smallest 8-bit level whose value / 255 reaches ``x``: ``u8 < x * 255`` as ``u8 < _ceil(x)``."""
    return int(np.ceil(x * 255.0))


def _hue(degrees: float) -> int:
    """A hue in degrees as an 8-bit OpenCV "full range" hue level."""
    return round(degrees * 256.0 / 360.0)


def pen_mask(hsv: np.ndarray, params: TissueParams, mpp: float) -> np.ndarray:
    """Blue, green and black ink (on :func:`hsv_u8`'s image), grown by ``pen_dilate_um`` to
    cover anti-aliased edges."""
    green = in_range(hsv, (_hue(70), _above(0.25), 0), (_hue(190) - 1, 255, _ceil(0.95) - 1))
    blue = in_range(hsv, (_hue(190), _above(0.42), 0), (_hue(255) - 1, 255, 255))
    pen = green | blue | black_mask(hsv, params)
    # Pen strokes are long and wide; isolated coloured or dark specks are dye, dust or nuclei
    # clusters inside tissue, and dilating them would punch holes in real tissue.
    min_px = round(params.min_pen_um2 / (mpp * mpp))
    if min_px > 1 and pen.any():
        pen = drop_small_pieces(pen, min_px)[0]
    radius = round(params.pen_dilate_um / mpp / 2)
    if radius >= 1 and pen.any():
        pen = dilate(pen, radius)
    return pen


def black_mask(hsv: np.ndarray, params: TissueParams) -> np.ndarray:
    """Darker than ``black_value``: ink, slide edge or debris, never tissue."""
    return in_range(hsv, (0, 0, 0), (255, 255, _ceil(params.black_value) - 1))


def _disk(radius: float) -> np.ndarray:
    """Euclidean disk (distance <= radius) as an OpenCV structuring element."""
    r = int(np.floor(radius))
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    return (xx * xx + yy * yy <= radius * radius).astype(np.uint8)


def dilate(mask: np.ndarray, radius: float) -> np.ndarray:
    """Dilation by a Euclidean disk."""
    if not mask.any() or radius < 1:
        return mask.copy()
    return cv2.dilate(mask.view(np.uint8), _disk(radius)).view(bool)


def erode(mask: np.ndarray, radius: float) -> np.ndarray:
    """Erosion by a Euclidean disk; the image border does not erode (tissue may touch it)."""
    if radius < 1:
        return mask.copy()
    eroded = cv2.erode(mask.view(np.uint8), _disk(radius), borderType=cv2.BORDER_REPLICATE)
    return eroded.view(bool)


def textured(grey_u8: np.ndarray, size: int, min_std: float) -> np.ndarray:
    """Where the grey level's standard deviation over a ``size`` square window is at least
    ``min_std`` (0-1 units): variance from two box filters, compared without a square root."""
    grey = grey_u8.astype(np.float32)
    mean = cv2.blur(grey, (size, size), borderType=cv2.BORDER_REFLECT)
    mean_sq = cv2.sqrBoxFilter(grey, -1, (size, size), borderType=cv2.BORDER_REFLECT)
    np.multiply(mean, mean, out=mean)  # in place: every fresh megapixel array costs page faults
    np.subtract(mean_sq, mean, out=mean_sq)
    return mean_sq >= np.float32((min_std * 255.0) ** 2)


def median_above(channel_u8: np.ndarray, radius: int, level: int) -> np.ndarray:
    """Where the median over a (2 radius + 1) square window (replicated border, as
    ``cv2.medianBlur``) exceeds ``level``: exactly where more than half the window does.

    A box count of a binary image: ~1 ms on a megapixel, where the median itself takes ~40 ms
    for 7x7 and 9x9 windows (OpenCV's vectorised sorting network covers only 3x3 and 5x5).
    """
    k = 2 * radius + 1
    over = (channel_u8 > level).view(np.uint8)
    count = cv2.boxFilter(over, cv2.CV_8U if k * k < 256 else cv2.CV_16U, (k, k), normalize=False,
                          borderType=cv2.BORDER_REPLICATE)
    return count > (k * k) // 2


def saturation_threshold(sat_u8: np.ndarray, radius: int, where: np.ndarray) -> float | None:
    """Otsu's threshold (0-1) of the median-blurred saturation where ``where`` holds.

    Windows up to 5x5 are blurred exactly (fast in OpenCV). Larger ones take the histogram from
    the saturation at half resolution (area average) blurred by a window of half the radius: the
    same distribution for Otsu at a twentieth of the cost; on the shared slides and benchmark
    mosaics its threshold lands on the same 1/255 level as the full-resolution blur's.
    """
    if radius <= 2:
        return otsu_u8(cv2.medianBlur(sat_u8, 2 * radius + 1) if radius >= 1 else sat_u8, where)
    h, w = sat_u8.shape
    small = cv2.resize(sat_u8, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    blurred = cv2.medianBlur(small, 2 * max(1, radius // 2) + 1)
    return otsu_u8(blurred, where[:2 * (h // 2):2, :2 * (w // 2):2])


def tissue_mask(rgb: np.ndarray, mpp: float, params: TissueParams | None = None) -> MaskResult:
    """Classify each pixel of ``rgb`` (uint8 (H, W, 3) at ``mpp`` um/px) as tissue or not."""
    params = params or TissueParams()
    rgb = np.ascontiguousarray(rgb)
    hsv = hsv_u8(rgb)
    sat = cv2.extractChannel(hsv, 1)
    radius = round(params.median_um / mpp / 2)

    pen = pen_mask(hsv, params, mpp) if params.remove_pen else np.zeros(sat.shape, bool)
    candidates = ~(pen | black_mask(hsv, params))
    threshold = saturation_threshold(sat, radius, candidates)
    if threshold is None:
        threshold = params.min_saturation
    threshold = float(np.clip(threshold, params.min_saturation, params.max_saturation_threshold))
    level = int(np.floor(np.float32(threshold) * np.float32(255.0)))  # blurred > threshold * 255

    tissue = median_above(sat, radius, level) if radius >= 1 else sat > level
    tissue &= candidates
    # bright and unsaturated: glass (value above white_value, saturation under the threshold)
    sat_below = int(np.ceil(np.float32(threshold) * np.float32(255.0))) - 1
    tissue &= ~in_range(hsv, (0, 0, _above(params.white_value)), (255, sat_below, 255))
    if params.min_texture > 0:
        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        tissue &= textured(grey, _odd(100.0 / mpp) if mpp < 50 else 3, params.min_texture)

    closing = params.closing_um / mpp / 2
    if closing >= 1:
        tissue = erode(dilate(tissue, closing), closing) | tissue
        tissue &= ~pen  # closing must not bridge back over ink
    tissue, dropped = clean_mask(tissue, mpp, params)
    return MaskResult(tissue=tissue, pen=pen & (sat >= _above(0.1)), threshold=threshold, mpp=mpp,
                      small_pieces_dropped=dropped)


def otsu_u8(values_u8: np.ndarray, where: np.ndarray) -> float | None:
    """Otsu's threshold (0-1) of the uint8 ``values_u8`` (saturation in 1/255 steps) where
    ``where`` holds; None when they are all equal.

    Same threshold as skimage's ``threshold_otsu`` on the float values (256 bins over their
    range), but the histogram comes from one count of at most 256 distinct levels, each
    weighted by its count, instead of binning a million floats. The count is OpenCV's masked
    ``calcHist`` (one pass, no gathered copy: ~10x ``bincount(values[where])``) while its float32
    bins stay exact (under 2**24 pixels).
    """
    if values_u8.size < 1 << 24:
        counts = cv2.calcHist([np.ascontiguousarray(values_u8)], [0],
                              np.ascontiguousarray(where, dtype=bool).view(np.uint8), [256], [0, 256])
        counts = counts.ravel().astype(np.int64)
    else:
        counts = np.bincount(values_u8[where], minlength=256)
    levels = np.flatnonzero(counts)
    if len(levels) < 2:
        return None
    values = levels.astype(np.float32) / np.float32(255.0)
    hist, edges = np.histogram(values, bins=256, range=(float(values[0]), float(values[-1])), weights=counts[levels])
    return float(otsu_from_histogram(hist, (edges[:-1] + edges[1:]) / 2))


def otsu_from_histogram(counts: np.ndarray, centers: np.ndarray) -> float:
    """The bin centre maximising the between-class variance: ``skimage.filters.threshold_otsu(
    hist=(counts, centers))`` step for step (float32 counts, the same cumulative sums in the same
    order, so the same bits; ``tests/tissue/test_otsu.py`` compares them). Written out because
    importing ``skimage.filters`` pulls scipy.ndimage (~0.4 s) into every job for ten lines of
    numpy."""
    nonzero = np.flatnonzero(counts)
    counts = counts[nonzero[0]:nonzero[-1] + 1].astype(np.float32, copy=False)
    centers = centers[nonzero[0]:nonzero[-1] + 1]
    weight1 = np.cumsum(counts)
    weight2 = np.cumsum(counts[::-1])[::-1]
    mean1 = np.cumsum(counts * centers) / weight1
    mean2 = (np.cumsum((counts * centers)[::-1]) / weight2[::-1])[::-1]
    variance12 = weight1[:-1] * weight2[1:] * (mean1[:-1] - mean2[1:]) ** 2
    return float(centers[np.argmax(variance12)])


def clean_mask(tissue: np.ndarray, mpp: float, params: TissueParams) -> tuple[np.ndarray, int]:
    """Drop pieces under ``min_object_um2`` and fill holes under ``min_hole_um2`` (any method's
    mask: debris and pinholes are not tissue structure). Returns the mask and the pieces dropped."""
    px_area = mpp * mpp
    min_obj = round(params.min_object_um2 / px_area)
    min_hole = round(params.min_hole_um2 / px_area)
    dropped = 0
    if min_obj > 0:
        tissue, dropped = drop_small_pieces(tissue, min_obj)
    if min_hole > 0:
        # holes: 4-connected pieces of background, those touching the border included (as
        # skimage's remove_small_holes, which this replaces)
        tissue = ~drop_small_pieces(~tissue, min_hole)[0]
    return tissue, dropped


def drop_small_pieces(mask: np.ndarray, max_size: int) -> tuple[np.ndarray, int]:
    """Remove 4-connected pieces of at most ``max_size`` px (skimage's ``remove_small_objects``)
    and say how many went: the report tells a user why a tiny biopsy found no tissue. OpenCV's
    labelling (without its per-piece statistics, which cost more than the labelling) plus one
    ``bincount`` and one table lookup: ~1.5x scipy's label on a 1600 px mask."""
    image = np.ascontiguousarray(mask, dtype=bool).view(np.uint8)
    n, labels = cv2.connectedComponents(image, connectivity=4, ltype=cv2.CV_32S)
    if n <= 1:
        return mask.copy(), 0
    small = np.bincount(labels.ravel(), minlength=n) <= max_size
    small[0] = True  # label 0 is the background
    if not small[1:].any():
        return mask.copy(), 0
    return np.take((~small).view(np.uint8), labels).view(bool), int(small[1:].sum())
