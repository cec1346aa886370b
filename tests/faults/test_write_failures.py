"""Writes that fail at several points (a fault-injecting file layer: ENOSPC / EROFS raised where the
OS would raise them): the lock, the picture after the store, the manifest, the completion marker.
Each is a clear per-slide or run-level error, never a traceback; what was lost comes back on rerun;
and a batch stopped halfway keeps the manifest rows of the slides it finished."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pandas as pd
import pytest
import yaml

import slidestream.pipeline.stage_runner as stage_runner
import slidestream.pipeline.stages as stages
import slidestream.pipeline.stages as stages_module
import slidestream.store.lock as lock_module
from slidestream.pipeline.manifest import MANIFEST_NAME, read_manifest
from tests.conftest import CMU
from tests.faults.conftest import cli, copy

TILE_ARGS = ["--mpp", "2.0", "--tile-size", "112"]
NO_SPACE = os.strerror(errno.ENOSPC)


def one_line(result) -> str:
    return " ".join(result.output.split())


@pytest.fixture
def two_slides(tmp_path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    copy(CMU, folder / "a.svs")
    (folder / "b.svs").symlink_to(folder / "a.svs")
    return folder


def test_a_lock_that_cannot_be_written_fails_each_slide_clearly(two_slides, tmp_path, monkeypatch):
    real_link = os.link

    def full_disk(src, dst, *args, **kwargs):
        if "cohort" not in str(dst):   # slide locks only: the manifest's lock still works
            raise OSError(errno.ENOSPC, NO_SPACE, str(dst))
        return real_link(src, dst, *args, **kwargs)

    monkeypatch.setattr(lock_module.os, "link", full_disk)
    out = tmp_path / "out"
    result = cli("tissue", two_slides, "--out", out)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert "0 ok, 0 skipped, 2 failed" in one_line(result)
    manifest = read_manifest(out).set_index("slide_id")
    for sid in ("a", "b"):
        assert manifest.loc[sid, "status"] == "failed"
        assert f"cannot write the lock file ([Errno 28] {NO_SPACE})" in manifest.loc[sid, "reason"]
        assert manifest.loc[sid, "error_type"] == "LockWriteError"
    assert not list((out / ".locks").glob("*.lock")) and not list((out / ".locks").glob(".*tmp*"))

    monkeypatch.undo()
    again = cli("tissue", two_slides, "--out", out)
    assert again.exit_code == 0, again.output


def test_a_picture_lost_to_a_full_disk_comes_back_on_rerun(two_slides, tmp_path, monkeypatch):
    real_save = stages.save_png

    def full_disk(image, path):
        if str(path).endswith(".tiles.png"):
            raise OSError(errno.ENOSPC, NO_SPACE, str(path))
        return real_save(image, path)

    monkeypatch.setattr(stages, "save_png", full_disk)
    out = tmp_path / "out"
    slide = two_slides / "a.svs"
    result = cli("tile", slide, "--out", out, *TILE_ARGS)
    assert result.exit_code == 1, result.output
    assert NO_SPACE in read_manifest(out).set_index("slide_id").loc["a", "reason"]
    assert not (out / "a.tiles.png").exists() and not list(out.glob(".a.tiles*"))

    monkeypatch.undo()
    (out / "a.tissue.png").unlink()   # lost too (a cleanup, a disk that filled earlier)
    (out / "a.geojson").unlink()
    again = cli("tile", slide, "--out", out, *TILE_ARGS)
    assert again.exit_code == 0, again.output
    assert (out / "a.tiles.png").exists() and (out / "a.tissue.png").exists() and (out / "a.geojson").exists()
    row = read_manifest(out).set_index("slide_id").loc["a"]
    assert row["status"] == "skipped" and row["reason"] == "tiles already made (picture restored)", row["reason"]

    third = cli("tile", slide, "--out", out, *TILE_ARGS)   # nothing lost now: a plain skip
    assert third.exit_code == 0 and "tiles already made" in one_line(third)


def test_a_manifest_write_failing_midway_is_a_run_level_error_and_keeps_earlier_rows(two_slides, tmp_path,
                                                                                    monkeypatch):
    real_to_csv = pd.DataFrame.to_csv
    calls = {"n": 0}

    def full_after_one(self, path, *args, **kwargs):
        if MANIFEST_NAME.split(".")[0] in str(path):
            calls["n"] += 1
            if calls["n"] >= 2:
                raise OSError(errno.ENOSPC, NO_SPACE, str(path))
        return real_to_csv(self, path, *args, **kwargs)

    monkeypatch.setattr(pd.DataFrame, "to_csv", full_after_one)
    out = tmp_path / "out"
    result = cli("tissue", two_slides, "--out", out)
    assert result.exit_code != 0
    assert f"cannot write the run manifest ({NO_SPACE})" in str(result.exception)
    assert sorted(read_manifest(out)["slide_id"]) == ["a"]      # the first slide's row is on disk
    assert not [p for p in out.iterdir() if p.name.startswith(".manifest")]

    monkeypatch.undo()
    again = cli("tissue", two_slides, "--out", out)
    assert again.exit_code == 0, again.output
    assert sorted(read_manifest(out)["slide_id"]) == ["a", "b"]


def test_a_batch_stopped_halfway_keeps_the_rows_of_finished_slides(two_slides, tmp_path, monkeypatch):
    real = stages_module.run_tissue

    def interrupted(source, *args, **kwargs):
        if source.slide_id == "b":
            raise KeyboardInterrupt   # what Ctrl-C (or a batch system's kill) does halfway
        return real(source, *args, **kwargs)

    monkeypatch.setattr(stages_module, "run_tissue", interrupted)  # the CLI imports it when the command runs
    out = tmp_path / "out"
    result = cli("tissue", two_slides, "--out", out)
    assert result.exit_code != 0
    manifest = read_manifest(out)
    assert list(manifest["slide_id"]) == ["a"] and list(manifest["status"]) == ["ok"]


def test_a_completion_marker_on_a_read_only_disk_fails_the_slide_clearly(tmp_path, monkeypatch):
    real = stage_runner.atomic_write_text

    def read_only(path, text):
        if "/.done/" in str(path):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real(path, text)

    monkeypatch.setattr(stage_runner, "atomic_write_text", read_only)  # the markers are written there
    slide = copy(CMU, tmp_path / "cmu.svs")
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"slides": [str(slide)], "out": str(tmp_path / "out"), "features": None}))
    result = cli("run", config, "--no-progress", "--stage", "tissue")
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    row = read_manifest(tmp_path / "out").set_index("slide_id").loc["cmu"]
    assert row["status"] == "failed"
    marker = tmp_path / "out" / ".done" / "cmu" / "tissue.json"
    assert f"cannot write the completion marker {marker} (Read-only file system)" in row["reason"]
