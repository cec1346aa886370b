"""Disk full while writing: a clear error naming the cause, no store that lies, and a rerun with
space again gives the features of a clean run.

Two ways to fill the disk: a writer that raises ``OSError(ENOSPC)`` at a chosen point (always
runs), and a real, tiny tmpfs (runs when this process may mount one, e.g. as root in CI).
"""

from __future__ import annotations

import errno
import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import zarr

import slidestream.extraction
from slidestream.cli import main
from slidestream.extraction import ExtractOptions
from slidestream.pipeline.manifest import MANIFEST_NAME, read_manifest
from slidestream.store import SlideStore
from tests.conftest import CMU, PEN
from tests.faults.conftest import (
    ENCODER,
    EXTRACT_ARGS,
    PEN_MPP,
    assert_nothing_half_claimed,
    cli,
    copy,
    features_of,
    run_cli_process,
    slide_list,
)

NO_SPACE = "No space left on device"


@pytest.fixture
def slides(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    return slide_list(folder, [(copy(CMU, folder / "cmu.svs"), None), (copy(PEN, folder / "pen.tif"), PEN_MPP)])


@pytest.mark.parametrize("node", ["tiles", "features"])
def test_enospc_while_writing_a_node_is_a_clear_per_slide_error(node, slides, tmp_path, monkeypatch, reference):
    real_setitem = zarr.Array.__setitem__
    writes: dict[str, int] = {}
    target = "/_partial-tiles-" if node == "tiles" else "/features/_partial-"

    def full_disk(self, key, value):
        path = str(self.store_path)
        if target in path:
            writes[path] = writes.get(path, 0) + 1
            if writes[path] >= 2 or node == "tiles":   # features: after one chunk went through
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
        return real_setitem(self, key, value)

    real_write_bytes = Path.write_bytes

    def full_disk_file(self, data):   # the tiles node's files, encoded in memory, are written as files
        if target in str(self):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
        return real_write_bytes(self, data)

    # batches of 4 and chunks of 8 rows, so a slide's features take several writes
    monkeypatch.setattr(slidestream.extraction, "ExtractOptions", functools.partial(ExtractOptions, chunk_rows=8))
    monkeypatch.setattr(zarr.Array, "__setitem__", full_disk)
    monkeypatch.setattr(Path, "write_bytes", full_disk_file)
    out = tmp_path / "out"
    result = cli("extract", slides, "--out", out, *EXTRACT_ARGS, "--batch-size", "4")
    assert result.exit_code == 1
    manifest = read_manifest(out).set_index("slide_id")
    for sid in ("cmu", "pen"):
        row = manifest.loc[sid]
        assert row["status"] == "failed"
        assert NO_SPACE in row["reason"] and "Errno 28" in row["reason"], row["reason"]
        store = SlideStore.open(out / f"{sid}.zarr")
        assert store.has("tissue")
        assert store.has("tiles") == (node == "features")
        assert not store.has(f"features/{ENCODER}")
    assert f"{NO_SPACE}" in result.stderr
    assert_nothing_half_claimed(out)
    if node == "tiles":   # the failed node's temporary folder is removed, its space given back
        assert not list(out.glob("*.zarr/_partial-tiles-*"))

    monkeypatch.undo()
    again = cli("extract", slides, "--out", out, *EXTRACT_ARGS)
    assert again.exit_code == 0, again.output
    for sid, name in (("cmu", "cmu.svs"), ("pen", "pen.tif")):
        np.testing.assert_array_equal(features_of(out, sid), reference[name])
    assert_nothing_half_claimed(out)


def test_enospc_on_the_run_manifest_is_a_message_not_a_traceback(slides, tmp_path, monkeypatch, capsys, reference):
    """The slides are done but the manifest cannot be written: exit 1 with a one-line error."""
    real_to_csv = pd.DataFrame.to_csv
    out = tmp_path / "out"

    def full_disk(self, path, *args, **kwargs):
        if Path(path).name.startswith((MANIFEST_NAME, ".manifest")):   # the file or its atomic temporary
            Path(path).write_text("slide_id,sli")          # what a full disk leaves: a cut file
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real_to_csv(self, path, *args, **kwargs)

    monkeypatch.setattr(pd.DataFrame, "to_csv", full_disk)
    monkeypatch.setattr(sys, "argv", ["slidestream", "extract", str(slides), "--out", str(out), *EXTRACT_ARGS])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert f"cannot write the run manifest ({NO_SPACE})" in " ".join(err.split()), err[-2000:]
    assert "Traceback" not in err
    assert not list(out.glob(".manifest*"))                   # no half-written temporary left
    assert not (out / MANIFEST_NAME).exists()
    for sid, name in (("cmu", "cmu.svs"), ("pen", "pen.tif")):  # the slides themselves are fine
        np.testing.assert_array_equal(features_of(out, sid), reference[name])


# ---------------------------------------------------------------------------------- real tmpfs
@pytest.fixture
def tiny_disk(tmp_path: Path):
    """An 8 MiB tmpfs; skipped where mounting is not allowed."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if not shutil.which("mount") or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def fill(disk: Path, leave_bytes: int) -> Path:
    """Leave about ``leave_bytes`` free on ``disk``."""
    stat = os.statvfs(disk)
    free = stat.f_bavail * stat.f_frsize
    filler = disk / "filler"
    with open(filler, "wb") as fh:
        fh.write(b"\0" * max(0, free - leave_bytes))
    return filler


@pytest.mark.slow
@pytest.mark.parametrize("free_kib", [256, 1536])  # full at the first slide; after it
def test_a_real_full_disk_fails_clearly_and_recovers(free_kib, slides, tiny_disk, reference):
    out = tiny_disk / "out"
    # a clean run needs about 4 MB (stores, overlays, GeoJSON): the disk fills early or late
    filler = fill(tiny_disk, free_kib * 1024)
    first = run_cli_process("extract", slides, "--out", out, *EXTRACT_ARGS)
    assert first.returncode != 0
    assert "Traceback" not in first.stderr, first.stderr[-3000:]   # an error message, not a crash
    assert NO_SPACE in first.stderr, first.stderr[-3000:]
    assert not list(out.glob(f".{MANIFEST_NAME}.*"))
    if out.exists():
        assert_nothing_half_claimed(out)

    filler.unlink()
    again = run_cli_process("extract", slides, "--out", out, *EXTRACT_ARGS)
    assert again.returncode == 0, again.stderr[-3000:]
    for sid, name in (("cmu", "cmu.svs"), ("pen", "pen.tif")):
        np.testing.assert_array_equal(features_of(out, sid), reference[name])
    assert_nothing_half_claimed(out)
    manifest = read_manifest(out)
    assert set(manifest["status"]) == {"ok"}
