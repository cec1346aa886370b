"""The tile stage's pictures, written in background threads: on disk before the stage returns, a
failure in a thread is the stage's failure, and the slide is opened once per stage run."""

from __future__ import annotations

import errno
import threading
import time

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
