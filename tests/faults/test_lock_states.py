"""Lock files in every state a crash, a full disk, pid reuse, a clock or another host can leave:
each is recognised for what it is. A stale lock is broken and the slide is processed (exit 0,
manifest row ok); a live one is waited for and then verified, or reported busy with exit 1 --
never a silent success.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from slidestream.pipeline.manifest import read_manifest
from slidestream.pipeline.stages import SlideSource, run_tiles
from slidestream.store import SlideStore
from slidestream.store.lock import (
    EMPTY_GRACE_S,
    LockHeldError,
    LockOwner,
    LockWriteError,
    SlideLock,
    lock_path,
    process_start,
    read_owner,
    stale_reason,
)
from slidestream.tiling.params import TilingParams
from tests.conftest import CMU
from tests.faults.conftest import cli, copy

TILE_ARGS = ["--mpp", "2.0", "--tile-size", "112"]
DAY = 86400.0


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def plant(folder: Path, name: str, content: bytes | dict, *, mtime_offset: float = 0.0) -> Path:
    """A lock file as something else left it: raw bytes, or an owner record (dict, JSON)."""
    path = lock_path(folder, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content if isinstance(content, bytes) else json.dumps(content).encode())
    when = time.time() + mtime_offset
    os.utime(path, (when, when))
    return path


def record(**changes) -> dict:
    """An owner record of this process, with ``changes`` (pid, host, start, ...)."""
    me = LockOwner.current(heartbeat_s=30.0)
    data = {"pid": me.pid, "host": me.host, "pidns": me.pidns, "created": time.time(), "token": "planted",
            "start": me.start, "boot": me.boot, "heartbeat_s": me.heartbeat_s}
    data.update(changes)
    return data


# Each state: (what is planted, mtime offset, the words the breaker records)
STALE = {
    "empty": (b"", -2 * EMPTY_GRACE_S, "empty lock file"),
    "empty-future": (b"", DAY, "empty lock file"),
    "garbage": (b"\x00\xffnot json{", -2 * EMPTY_GRACE_S, "unparsable lock file"),
    "json-not-a-record": (b'{"pid": "one"}', -2 * EMPTY_GRACE_S, "unparsable lock file"),
    "dead-pid": ("dead", 0.0, "is gone"),
    "reused-pid": ("reused", 0.0, "now belongs to another process"),
    "rebooted": ("rebooted", 0.0, "rebooted"),
    "future-mtime-unverifiable": ("legacy-live", DAY, "in the future"),
    "other-host-future": ("other-host", DAY, "in the future"),
    "other-host-no-heartbeat": ("other-host", -10 * 30.0, "no heartbeat"),
}


def planted_content(kind: bytes | str) -> bytes | dict:
    if isinstance(kind, bytes):
        return kind
    return {
        "dead": lambda: record(pid=_dead_pid(), start=None),
        "reused": lambda: record(start=(process_start(os.getpid()) or 0) + 12345),   # this pid, another process
        "rebooted": lambda: record(boot="an-earlier-boot"),
        "legacy-live": lambda: {k: v for k, v in record().items() if k not in ("start", "boot", "heartbeat_s")},
        "other-host": lambda: record(host="elsewhere.example", pidns="pid:[1]", pid=1),
    }[kind]()


@pytest.mark.parametrize("state", list(STALE))
def test_a_stale_lock_is_recognised_and_broken(tmp_path, state):
    content, offset, words = STALE[state]
    path = plant(tmp_path, "slide", planted_content(content), mtime_offset=offset)
    assert words in (stale_reason(path, 120.0) or ""), stale_reason(path, 120.0)
    with SlideLock(tmp_path, "slide", stale_after_s=120.0) as lock:
        assert lock.broken and words in lock.broken[0]
        owner = read_owner(lock.path)
        assert owner is not None and owner.token == lock.owner.token   # the new lock is complete at once


@pytest.mark.parametrize("state", ["empty-being-written", "live-owner", "live-owner-future-mtime", "other-host-fresh"])
def test_a_live_lock_is_never_broken(tmp_path, state):
    content, offset = {
        "empty-being-written": (b"", 0.0),                # its creator may still be writing (old writers)
        "live-owner": (record(), 0.0),                    # this very process: pid and start time match
        "live-owner-future-mtime": (record(), DAY),       # verified alive: the clock is not evidence
        "other-host-fresh": (planted_content("other-host"), 0.0),   # judged by heartbeat age only
    }[state]
    path = plant(tmp_path, "slide", content, mtime_offset=offset)
    assert stale_reason(path, 120.0) is None
    with pytest.raises(LockHeldError):
        SlideLock(tmp_path, "slide", stale_after_s=120.0).acquire()
    assert path.read_bytes() == (content if isinstance(content, bytes) else json.dumps(content).encode())


def test_the_heartbeat_period_is_recorded_and_missed_beats_make_the_lock_stale(tmp_path):
    path = plant(tmp_path, "s", record(host="elsewhere.example", pidns="pid:[1]", heartbeat_s=0.5), mtime_offset=-1.0)
    assert stale_reason(path, 0.1) is None             # 1 s old, 4 beats of 0.5 s not yet missed
    os.utime(path, (time.time() - 2.5, time.time() - 2.5))
    assert "no heartbeat" in stale_reason(path, 0.1)
    with SlideLock(tmp_path, "t", stale_after_s=0.4) as lock:   # a holder records its period
        assert read_owner(lock.path).heartbeat_s == pytest.approx(0.1)


def test_a_lock_that_cannot_be_written_is_a_clear_error(tmp_path):
    (tmp_path / ".locks").write_text("a file where the lock folder should be")
    with pytest.raises(LockWriteError, match="cannot create the lock folder"):
        SlideLock(tmp_path, "slide").acquire()


# ---------------------------------------------------------------------------------- through the CLI
@pytest.fixture(scope="module")
def clean_tiles(tmp_path_factory) -> np.ndarray:
    folder = tmp_path_factory.mktemp("clean")
    result = cli("tile", copy(CMU, folder / "cmu.svs"), "--out", folder / "out", *TILE_ARGS)
    assert result.exit_code == 0, result.output
    return SlideStore.open(folder / "out" / "cmu.zarr").read_tiles().coords


CLI_STATES = ["empty", "garbage", "dead-pid", "reused-pid", "rebooted", "other-host-future", "other-host-no-heartbeat"]


def test_the_cli_breaks_every_kind_of_stale_lock_and_does_the_slides(tmp_path, clean_tiles):
    """One batch, one slide per lock state (each a link to the same slide, under its own name)."""
    folder = tmp_path / "in"
    folder.mkdir()
    out = tmp_path / "out"
    for state in CLI_STATES:
        (folder / f"{state}.svs").symlink_to(CMU)
        content, offset, _ = STALE[state]
        plant(out, state, planted_content(content), mtime_offset=offset)
    result = cli("tile", folder, "--out", out, *TILE_ARGS, "--wait", "0")
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    assert f"{len(CLI_STATES)} ok, 0 skipped, 0 failed" in " ".join(result.output.split())
    manifest = read_manifest(out).set_index("slide_id")
    for state in CLI_STATES:
        np.testing.assert_array_equal(SlideStore.open(out / f"{state}.zarr").read_tiles().coords, clean_tiles)
        assert manifest.loc[state, "status"] == "ok"
        assert not lock_path(out, state).exists()


def test_a_slide_busy_in_a_live_process_is_busy_with_exit_1_never_success(tmp_path):
    slide = copy(CMU, tmp_path / "cmu.svs")
    out = tmp_path / "out"
    with SlideLock(out, "cmu"):
        start = time.monotonic()
        result = cli("tile", slide, "--out", out, *TILE_ARGS, "--wait", "0.5")
        waited = time.monotonic() - start
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    text = " ".join(result.output.split())
    assert "0 ok, 0 skipped, 0 failed, 1 busy" in text
    assert f"busy {slide}" in text and "in progress elsewhere (pid" in text
    assert waited >= 0.5
    assert "cmu" not in set(read_manifest(out)["slide_id"])     # the owner writes the row, not us


def test_a_busy_slide_is_waited_for_after_the_others_then_verified_done(tmp_path, clean_tiles):
    """Another process finishes the slide while we wait: exit 0, verified from the store."""
    slide = copy(CMU, tmp_path / "cmu.svs")
    out = tmp_path / "out"
    holder = SlideLock(out, "cmu").acquire()
    done = threading.Event()

    def other_process() -> None:   # works on the slide under its lock, then lets go
        time.sleep(0.5)
        run_tiles(SlideSource(slide), out, TilingParams(mpp=2.0, tile_size=112))
        holder.release()
        done.set()

    worker = threading.Thread(target=other_process)
    worker.start()
    result = cli("tile", slide, "--out", out, *TILE_ARGS, "--wait", "60")
    worker.join()
    assert done.is_set()
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "0 ok, 1 skipped, 0 failed" in text
    reason = read_manifest(out).set_index("slide_id").loc["cmu", "reason"]
    assert reason.startswith("tiles already made (after waiting for it: it was in progress elsewhere (pid"), reason
    np.testing.assert_array_equal(SlideStore.open(out / "cmu.zarr").read_tiles().coords, clean_tiles)
