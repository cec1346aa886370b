"""The fast JPEG path's decoder and batch assembly on real slides: the pixels it always gave, each
JPEG tile decoded once, and a damaged tile named rather than read as data."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from slidestream.errors import SlideReadError
from slidestream.extraction import open_tile_reader
from slidestream.io import open_slide, resize_rgb
from slidestream.io.jpeg_batch import read_windows, split_positions, tiles_for_windows
from slidestream.io.jpeg_tiles import JpegPyramid, _decode_jpeg
from tests.conftest import CMU, PEN, SLIDES_DIR

OME = SLIDES_DIR.parent / "formats" / "tcga-cr-7395.ome.tif"
DICOM = SLIDES_DIR.parent / "formats" / "tcga-cr-7395-dicom"


def _pyramid(path):
    with open_slide(path) as slide:
        return JpegPyramid.open(path, list(slide.level_dimensions))


def _pillow(data: bytes, scale: int, tile_w: int, tile_h: int) -> np.ndarray:
    """The reference the fast path used before OpenCV: Pillow, with ``draft`` for DCT scaling."""
    image = Image.open(io.BytesIO(data))
    if scale > 1:
        image.draft("RGB", (-(-tile_w // scale), -(-tile_h // scale)))
    return np.asarray(image.convert("RGB") if image.mode != "RGB" else image)


@pytest.mark.parametrize("path", [CMU, PEN, OME, DICOM], ids=lambda p: p.name)
def test_decoder_gives_pillows_pixels_at_every_dct_scale(path):
    """Stored features name the reader (``jpeg``, ``jpeg-dct-1/2``, ...), and a re-read must give
    the pixels the encoder saw: the decoder may change, the pixels may not, at any scale. Covers
    JPEGTables spliced in (CMU), Aperio's RGB-coded tiles, YCbCr TIFF, OME SubIFDs, DICOM frames."""
    pyramid = _pyramid(path)
    try:
        for level in pyramid.levels:
            indices = np.flatnonzero(level.counts > 0)
            for index in indices[:: max(1, len(indices) // 6)]:
                data = pyramid._jpeg_bytes(level, int(index))
                for scale in (1, 2, 4, 8):
                    ours = _decode_jpeg(data, scale, level.tile_w, level.tile_h)
                    np.testing.assert_array_equal(ours, _pillow(data, scale, level.tile_w, level.tile_h))
    finally:
        pyramid.close()


def _reference(pyramid, level, fx, fy, read_w, read_h, scale, size):
    """Window by window: the pyramid's own region read, sub-pixel shift, then resize."""
    return np.stack([resize_rgb(pyramid.read_at(level, x, y, read_w, read_h, scale), (size, size))
                     for x, y in zip(fx.tolist(), fy.tolist(), strict=True)])   # Python floats, as the reader had


@pytest.mark.parametrize(("level", "read", "scale", "size"), [
    (0, 256, 2, 128),    # DCT 1/2, no resize
    (2, 96, 1, 96),      # fractional downsample 4.0015: sub-pixel blends
    (1, 200, 1, 128),    # a resize after assembly
    (0, 512, 4, 100),    # DCT 1/4 and a resize
])
def test_batch_assembly_equals_window_by_window_reads(level, read, scale, size):
    """Scattering each decoded JPEG tile into the batch gives exactly the per-window reads,
    including windows across the slide's edges (white outside) and sub-pixel positions."""
    rng = np.random.default_rng(level + read)
    with open_slide(PEN) as slide:
        down = slide.level_downsamples[level]
        width, height = slide.dimensions
    x0 = np.concatenate([rng.uniform(-600, width, 40), [0, width - 10]])
    y0 = np.concatenate([rng.uniform(-600, height, 40), [height - 10, 0]])
    fx, fy = np.floor(x0) / down, np.floor(y0) / down
    pyramid = _pyramid(PEN)
    try:
        expected = _reference(pyramid, level, fx, fy, read, read, scale, size)
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(2) as pool:
            for run, parts in ((map, 1), (pool.map, 8)):
                pyramid.cache = type(pyramid.cache)()
                got = read_windows(pyramid, level, fx, fy, read, read, scale, size, run=run, parts=parts)
                np.testing.assert_array_equal(got, expected)
                # and each JPEG tile the windows touch was decoded exactly once
                assert pyramid.cache.misses == len(tiles_for_windows(pyramid, level, fx, fy, read, read, scale))
    finally:
        pyramid.close()


def test_split_positions_snaps_like_the_scalar_rule():
    from slidestream.io._base import split_position

    f = np.array([0.0, 1.0 - 1e-4, 2.5, 3.0 + 1e-4, -0.25, 7.999, 1024 / 4.0015])
    i, frac = split_positions(f)
    assert [(int(a), float(b)) for a, b in zip(i, frac, strict=True)] == [split_position(v) for v in f]


def test_reader_decodes_each_jpeg_tile_once_and_re_reads_identically():
    """A row-major tile table at DCT 1/2 (CMU at 1.0 um/px): the sized cache means no JPEG tile
    is decoded twice across batches, and reading the same tiles again, with 1 or 2 threads and in
    other batches, gives the same pixels."""
    with open_slide(CMU) as slide:
        plan = slide.plan(1.0, 112)
        attrs = {"read_level": plan.level, "read_size": list(plan.read_size), "tile_size_px": 112, "target_mpp": 1.0}
        w, h = slide.dimensions
        step = plan.read_size[0]
        coords = np.array([[x, y] for y in range(0, h - step, step) for x in range(0, w - step, step)])
        first = open_tile_reader(slide.spec, attrs, fast=True, workers=2)
        second = open_tile_reader(slide.spec, attrs, fast=True, workers=1)
        try:
            assert first.name == "jpeg-dct-1/2"
            a = np.concatenate([first.read_batch(coords[i:i + 16]) for i in range(0, len(coords), 16)])
            minimum = tiles_for_windows(first.pyramid, plan.level, coords[:, 0] / 1.0, coords[:, 1] / 1.0,
                                        first.read_w, first.read_h, first.scale)
            assert first.pyramid.cache.misses == len(minimum)
            b = second.read_batch(coords[::-1])[::-1]
        finally:
            first.close()
            second.close()
    np.testing.assert_array_equal(a, b)


def test_a_truncated_jpeg_tile_is_an_error_naming_the_file_not_grey_pixels():
    pyramid = _pyramid(PEN)
    try:
        level = pyramid.levels[0]
        index = int(np.flatnonzero(level.counts > 1000)[0])
        level.counts[index] //= 2           # the tile's bytes cut short, as a partial copy leaves them
        tx, ty = index % level.tiles_across, index // level.tiles_across
        with pytest.raises(SlideReadError, match="does not decode") as info:
            pyramid.decode_tile(0, tx, ty, 1)
        assert info.value.path == PEN
    finally:
        pyramid.close()
