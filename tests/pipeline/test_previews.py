"""The tile stage's pictures, written in background threads: on disk before the stage returns, a
failure in a thread is the stage's failure, and the slide is opened once per stage run."""

from __future__ import annotations

import errno
import threading
import time

import numpy as np
import pytest

from slidestream.pipeline import stages
from slidestream.pipeline.batch import Skip
from slidestream.pipeline.previews import Previews
from slidestream.pipeline.stages import SlideSource, run_tiles
from slidestream.tiling.params import TilingParams
from tests.conftest import CMU

TILING = TilingParams(mpp=2.0, tile_size=112)


def test_the_stage_returns_only_after_its_pictures_are_on_disk(tmp_path, monkeypatch):
    real_save = stages.save_png
    writers: list[str] = []

    def slow_save(image, path):
        writers.append(threading.current_thread().name)
        time.sleep(0.3)   # a slow disk: the stage must still wait for the picture
        return real_save(image, path)

    monkeypatch.setattr(stages, "save_png", slow_save)
    summary = run_tiles(SlideSource(CMU), tmp_path, TILING)
    assert summary["tiles"] > 0
    sid = SlideSource(CMU).slide_id
    assert (tmp_path / f"{sid}.tissue.png").stat().st_size > 0
    assert (tmp_path / f"{sid}.tiles.png").stat().st_size > 0
    assert len(writers) == 2 and all(name.startswith("slidestream-preview") for name in writers)
    assert not list(tmp_path.glob(f".{sid}*"))   # no temporary picture left behind


def test_a_tissue_picture_failing_in_its_thread_fails_the_stage(tmp_path, monkeypatch):
    real_save = stages.save_png

    def full_disk(image, path):
        if str(path).endswith(".tissue.png"):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_save(image, path)

    monkeypatch.setattr(stages, "save_png", full_disk)
    with pytest.raises(OSError, match="No space left"):
        run_tiles(SlideSource(CMU), tmp_path, TILING)
    assert not (tmp_path / f"{SlideSource(CMU).slide_id}.tissue.png").exists()


def test_the_slide_is_opened_once_per_stage_run(tmp_path, monkeypatch):
    opened = []
    real_open = SlideSource.open

    def counting_open(self):
        opened.append(self.path)
        return real_open(self)

    monkeypatch.setattr(SlideSource, "open", counting_open)
    run_tiles(SlideSource(CMU), tmp_path, TILING, write_images=False)
    assert len(opened) == 1


def test_a_picture_failure_replaces_a_skip_but_not_a_real_error():
    def fail() -> None:
        raise OSError("picture failed")

    with pytest.raises(OSError, match="picture failed"), Previews() as previews:
        previews.submit(fail)
        raise Skip("nothing to do")
    with pytest.raises(ValueError, match="the stage's own error"), Previews() as previews:
        previews.submit(fail)
        raise ValueError("the stage's own error")
    done = []
    with Previews() as previews:
        previews.submit(lambda: (time.sleep(0.2), done.append(1)))
    assert done == [1]   # waited for on exit


def test_the_pictures_show_the_tissue_outline_and_the_tile_grid_at_preview_size(tmp_path):
    """What a reviewer opens: both PNGs decode at the detection image's size (at most 1024 px),
    the tissue picture has the amber outline on the tissue's boundary, and the tiles picture has
    each tile's corner blended towards the tile blue over the thumbnail."""
    from PIL import Image

    from slidestream.io import open_slide
    from slidestream.pipeline.previews import thumbnail
    from slidestream.store import SlideStore
    from slidestream.tissue import detect_tissue
    from slidestream.viz.overlay import TILE_COLOUR, TISSUE_COLOUR

    run_tiles(SlideSource(CMU), tmp_path, TILING)
    sid = SlideSource(CMU).slide_id
    with open_slide(CMU) as slide:
        base = thumbnail(detect_tissue(slide).image, stages.PREVIEW_MAX_SIDE).get()  # deterministic
        level0 = slide.dimensions
    tissue = np.asarray(Image.open(tmp_path / f"{sid}.tissue.png"))
    tiles_png = np.asarray(Image.open(tmp_path / f"{sid}.tiles.png"))
    assert tissue.shape == tiles_png.shape == base.shape and max(base.shape[:2]) <= stages.PREVIEW_MAX_SIDE
    sx, sy = base.shape[1] / level0[0], base.shape[0] / level0[1]

    store = SlideStore.open(tmp_path / f"{sid}.zarr")
    shells = [p.exterior for p in store.read_tissue_pieces()[0]]
    boundary = np.concatenate([np.rint(np.asarray(ring.coords) * (sx, sy)).astype(int) for ring in shells])
    boundary = boundary[(boundary[:, 0] < base.shape[1]) & (boundary[:, 1] < base.shape[0])]
    amber = (tissue[boundary[:, 1], boundary[:, 0]] == TISSUE_COLOUR).all(axis=1)
    assert len(boundary) > 20 and amber.mean() > 0.9   # vertices shared with a hole are drawn dark

    corners = np.rint(store.read_tiles().coords * (sx, sy)).astype(int)
    outline = (tissue != base).any(axis=2)   # where the tissue picture drew (drawn over the tiles too)
    corners = corners[~outline[corners[:, 1], corners[:, 0]]]
    alpha = 120 / 255
    expected = np.rint(base[corners[:, 1], corners[:, 0]].astype(np.float32) * (1 - alpha)
                       + np.asarray(TILE_COLOUR, np.float32) * alpha)
    assert len(corners) > 10
    assert np.array_equal(tiles_png[corners[:, 1], corners[:, 0]], expected.astype(np.uint8))


@pytest.mark.parametrize("channels", [None, 3, 4])
def test_a_png_decodes_to_the_pixels_it_was_given(tmp_path, channels):
    """Previews and maps (grey, RGB, RGBA) are written by OpenCV's encoder: lossless, same channels."""
    from PIL import Image

    from slidestream.viz.overlay import save_png

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (37, 53) if channels is None else (37, 53, channels), dtype=np.uint8)
    save_png(pixels, tmp_path / "a.png")
    save_png(Image.fromarray(pixels), tmp_path / "b.png")
    for name in ("a.png", "b.png"):
        assert np.array_equal(np.asarray(Image.open(tmp_path / name)), pixels)
