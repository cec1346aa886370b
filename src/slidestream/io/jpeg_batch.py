"""Many windows of one JPEG-tiled level at once, each JPEG tile decoded once and scattered.

Reading output tiles one by one gathers the JPEG tiles under each (a cache lookup, a temporary
region, a copy out) in the calling thread, while the decoding threads wait. Here the work is
turned around: the JPEG tiles a batch touches are the unit of work, and each task decodes its
JPEG tile (or takes it from the cache) and copies every piece of it that a window needs straight
into that window's place in the output batch. Tasks write disjoint parts of the output, so they
run in threads without locks, and the decoder (OpenCV's libjpeg-turbo) and numpy's copies release
the GIL: the calling thread only plans. Windows that need a sub-pixel shift or a resize are
assembled in a scratch buffer first and finished (blend, resize) in the threads as well.

The pixels equal :meth:`JpegPyramid.read_at` followed by :func:`resize_rgb` window by window
(tests compare them), which equal openslide's at DCT scale 1.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import numpy as np

from slidestream.io._base import _SUBPIXEL_EPS, blend_shift
from slidestream.io.slide import resize_rgb

if TYPE_CHECKING:
    from slidestream.io.jpeg_tiles import JpegPyramid

# (destination array, dst y, dst x, src y, src x, height, width): one JPEG tile's share of a window
Piece = tuple[np.ndarray, int, int, int, int, int, int]
Mapper = Callable[[Callable, Iterable], Iterable]


def split_positions(f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised :func:`slidestream.io._base.split_position`: whole pixel and the fraction past
    it, fractions within eps of a pixel snapped to it (the same rule, so the same windows)."""
    i = np.floor(f)
    frac = f - i
    up = frac > 1.0 - _SUBPIXEL_EPS
    snap = (frac < _SUBPIXEL_EPS) | up
    return (i + up).astype(np.int64), np.where(snap, 0.0, frac)


def read_windows(pyramid: JpegPyramid, level_index: int, fx: np.ndarray, fy: np.ndarray, read_w: int, read_h: int,
                 scale: int, size: int, run: Mapper = map, parts: int = 1) -> np.ndarray:
    """``size`` x ``size`` tiles of windows whose top-left lies at fractional level positions
    (``fx``, ``fy``): a ``read_w`` x ``read_h`` level window each (multiples of ``scale``), decoded
    at 1/``scale``, shifted sub-pixel like openslide, resized to ``size`` when it differs.

    ``run(fn, items)`` runs the tasks (``map`` here, ``ThreadPoolExecutor.map`` for threads);
    ``parts`` is how many tasks the JPEG tiles are split into (a few per thread balances them).
    Returns uint8 (N, size, size, 3).
    """
    level = pyramid.levels[level_index]
    s = scale
    n = len(fx)
    out = np.empty((n, size, size, 3), np.uint8)
    if n == 0:
        return out
    ix, ax = split_positions(np.asarray(fx, np.float64) / s)
    iy, ay = split_positions(np.asarray(fy, np.float64) / s)
    base_w, base_h = read_w // s, read_h // s
    stw, sth = level.tile_w // s, level.tile_h // s      # a JPEG tile at 1/s (tile sides are multiples of 16)
    lw, lh = math.ceil(level.width / s), math.ceil(level.height / s)   # the level at 1/s
    pieces: dict[tuple[int, int], list[Piece]] = {}
    staged: list[tuple[int, np.ndarray, float, float]] = []
    for i in range(n):
        x, y, a_x, a_y = int(ix[i]), int(iy[i]), float(ax[i]), float(ay[i])
        w, h = base_w + (a_x > 0), base_h + (a_y > 0)
        if w == size and h == size:
            dest = out[i]
        else:
            dest = np.empty((h, w, 3), np.uint8)
            staged.append((i, dest, a_x, a_y))
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, lw), min(y + h, lh)
        if x0 > x or y0 > y or x1 < x + w or y1 < y + h:
            dest[...] = 255                   # outside the level is white, as everywhere in slidestream
        if x1 <= x0 or y1 <= y0:
            continue
        for ty in range(y0 // sth, (y1 - 1) // sth + 1):
            gy0, gy1 = max(ty * sth, y0), min((ty + 1) * sth, y1)
            for tx in range(x0 // stw, (x1 - 1) // stw + 1):
                gx0, gx1 = max(tx * stw, x0), min((tx + 1) * stw, x1)
                pieces.setdefault((tx, ty), []).append(
                    (dest, gy0 - y, gx0 - x, gy0 - ty * sth, gx0 - tx * stw, gy1 - gy0, gx1 - gx0))

    def scatter(keys: list[tuple[int, int]]) -> None:
        for key in keys:
            tile = pyramid.decode_tile(level_index, key[0], key[1], s)
            for dest, dy, dx, sy, sx, h, w in pieces[key]:
                h, w = min(h, tile.shape[0] - sy), min(w, tile.shape[1] - sx)   # a JPEG smaller than its tile
                dest[dy:dy + h, dx:dx + w] = tile[sy:sy + h, sx:sx + w]

    keys = sorted(pieces, key=lambda t: (t[1], t[0]))   # row-major: neighbours share cache lines and rows
    step = max(1, math.ceil(len(keys) / max(1, parts)))
    for _ in run(scatter, [keys[k:k + step] for k in range(0, len(keys), step)]):
        pass

    def finish(item: tuple[int, np.ndarray, float, float]) -> None:
        i, region, a_x, a_y = item
        if a_x > 0 or a_y > 0:
            region = blend_shift(region, a_x, a_y)
        out[i] = resize_rgb(region, (size, size))

    for _ in run(finish, staged):
        pass
    return out


def tiles_for_windows(pyramid: JpegPyramid, level_index: int, fx: np.ndarray, fy: np.ndarray, read_w: int,
                      read_h: int, scale: int) -> set[tuple[int, int]]:
    """The JPEG tiles (tx, ty) that :func:`read_windows` decodes for these windows: the minimum
    any reader of the same pixels must decode (benchmarks measure the decode limit on it)."""
    level = pyramid.levels[level_index]
    s = scale
    ix, ax = split_positions(np.asarray(fx, np.float64) / s)
    iy, ay = split_positions(np.asarray(fy, np.float64) / s)
    stw, sth = level.tile_w // s, level.tile_h // s
    lw, lh = math.ceil(level.width / s), math.ceil(level.height / s)
    needed: set[tuple[int, int]] = set()
    for x, y, a_x, a_y in zip(ix.tolist(), iy.tolist(), ax.tolist(), ay.tolist(), strict=True):
        w, h = read_w // s + (a_x > 0), read_h // s + (a_y > 0)
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, lw), min(y + h, lh)
        if x1 > x0 and y1 > y0:
            needed.update((tx, ty) for ty in range(y0 // sth, (y1 - 1) // sth + 1)
                          for tx in range(x0 // stw, (x1 - 1) // stw + 1))
    return needed
