"""A run killed with SIGKILL while writing features, then run again: nothing reads as complete
unless it is, and the final stores equal those of an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from slidestream.errors import StoreError
from slidestream.store import SlideStore, load_features
from slidestream.store.lock import LOCK_DIR
from tests.conftest import CMU, PEN, REPO
from tests.faults.conftest import (
    ENCODER,
    PEN_MPP,
    assert_nothing_half_claimed,
    copy,
    features_of,
    slide_list,
    subprocess_env,
)

# denser tiles and smaller batches than the other fault tests, so a slide has several chunks of 8 rows
ARGS = ["--encoder", ENCODER, "--mpp", "1.0", "--tile-size", "112", "--workers", "2", "--batch-size", "4"]


def killable(mode: str, marker: Path, *args: object) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "tests.faults._killable", mode, str(marker), "--", *[str(a) for a in args]]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                            env=subprocess_env())


def run_to_end(mode: str, marker: Path, *args: object) -> subprocess.CompletedProcess:
    proc = killable(mode, marker, *args)
    stdout, stderr = proc.communicate(timeout=300)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def kill_when_paused(proc: subprocess.Popen, marker: Path, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not marker.exists():
        if proc.poll() is not None:
            raise AssertionError(f"finished before the kill point (exit {proc.returncode}):\n{proc.stderr.read()[-3000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("never reached the kill point")
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stdout.close()
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL


@pytest.fixture(scope="module")
def slides(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("kill-in")
    return slide_list(folder, [(copy(CMU, folder / "cmu.svs"), None), (copy(PEN, folder / "pen.tif"), PEN_MPP)])


@pytest.fixture(scope="module")
def uninterrupted(slides, tmp_path_factory) -> dict[str, np.ndarray]:
    out = tmp_path_factory.mktemp("kill-reference")
    done = run_to_end("none", out / "marker", slides, "--out", out, *ARGS)
    assert done.returncode == 0, done.stderr[-3000:]
    return {sid: features_of(out, sid) for sid in ("cmu", "pen")}


@pytest.mark.parametrize("mode", ["chunk", "commit"])
@pytest.mark.slow
def test_killed_run_claims_nothing_and_a_rerun_equals_an_uninterrupted_one(mode, slides, uninterrupted, tmp_path):
    out = tmp_path / "out"
    marker = tmp_path / "marker"
    proc = killable(mode, marker, slides, "--out", out, *ARGS)
    kill_when_paused(proc, marker)

    # the slide being written when the process died does not read as complete
    killed = Path(marker.read_text())
    store = SlideStore.open(killed)
    assert store.has("tiles")                                  # finished before the kill
    assert not store.has(f"features/{ENCODER}")
    assert ENCODER not in store.list_nodes("features")
    with pytest.raises(StoreError, match="no complete features"):
        load_features(store.path, ENCODER)
    assert (out / LOCK_DIR / f"{store.slide_id}.lock").exists()  # the dead owner's lock is left behind
    # slides finished before it are complete and right; none after it was started
    order = ["cmu", "pen"]
    for sid in order[: order.index(store.slide_id)]:
        np.testing.assert_array_equal(features_of(out, sid), uninterrupted[sid])
    for sid in order[order.index(store.slide_id) + 1:]:
        assert not (out / f"{sid}.zarr").exists()
    assert_nothing_half_claimed(out)

    # run again (same chunking, so a partial array can be resumed): the dead lock is broken
    again = run_to_end("none", tmp_path / "unused", slides, "--out", out, *ARGS)
    assert again.returncode == 0, again.stderr[-3000:]
    for sid, ref in uninterrupted.items():
        np.testing.assert_array_equal(features_of(out, sid), ref)
        assert SlideStore.open(out / f"{sid}.zarr").node_attrs(f"features/{ENCODER}")["complete"] is True
    assert not list(out.rglob("_partial-*")), "leftover partial nodes after a complete rerun"
    assert not list((out / LOCK_DIR).glob("*.lock"))
    assert_nothing_half_claimed(out)
