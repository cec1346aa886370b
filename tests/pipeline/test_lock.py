"""The per-slide lock (``store/lock.py``): exclusive across processes, stale locks are broken safely."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from slidestream.pipeline.batch import Busy
from slidestream.pipeline.stages import slide_lock
from slidestream.store.lock import (
    LockHeldError,
    LockOwner,
    SlideLock,
    lock_path,
    read_owner,
    stale_reason,
)


def _fake_lock(folder: Path, name: str, *, host: str, pid: int, age_s: float = 0.0) -> Path:
    path = lock_path(folder, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    me = LockOwner.current()
    pidns = me.pidns if host == me.host else "pid:[1]"
    path.write_text(json.dumps({"pid": pid, "host": host, "pidns": pidns, "created": time.time() - age_s, "token": "x"}))
    if age_s:
        old = time.time() - age_s
        os.utime(path, (old, old))
    return path


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_held_lock_refuses_a_second_owner_and_names_the_first(tmp_path):
    with SlideLock(tmp_path, "slide-a") as lock:
        owner = read_owner(lock.path)
        assert owner is not None and owner.pid == os.getpid()
        with pytest.raises(LockHeldError, match=rf"locked by pid {os.getpid()} on "):
            SlideLock(tmp_path, "slide-a").acquire()
        SlideLock(tmp_path, "slide-b").acquire().release()   # other slides are independent
    assert not lock.path.exists()
    SlideLock(tmp_path, "slide-a").acquire().release()       # free again


def test_waiting_gets_the_lock_once_it_is_released(tmp_path):
    first = SlideLock(tmp_path, "s").acquire()
    threading.Timer(0.3, first.release).start()
    start = time.monotonic()
    with SlideLock(tmp_path, "s", wait_s=10, poll_s=0.05):
        assert 0.2 < time.monotonic() - start < 5


def test_stale_locks_are_broken_live_ones_are_not(tmp_path):
    me = LockOwner.current()
    dead = _fake_lock(tmp_path, "dead", host=me.host, pid=_dead_pid())
    assert "is gone" in stale_reason(dead, 600)
    lock = SlideLock(tmp_path, "dead").acquire()
    assert lock.broken and "is gone" in lock.broken[0]
    lock.release()

    zombie = subprocess.Popen([sys.executable, "-c", "pass"])   # exited, not reaped yet
    deadline = time.monotonic() + 30
    while " Z " not in Path(f"/proc/{zombie.pid}/stat").read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    _fake_lock(tmp_path, "zombie", host=me.host, pid=zombie.pid)
    try:
        assert "is gone" in stale_reason(lock_path(tmp_path, "zombie"), 600)
    finally:
        zombie.wait()

    _fake_lock(tmp_path, "away-old", host="elsewhere", pid=os.getpid(), age_s=120)
    lock = SlideLock(tmp_path, "away-old", stale_after_s=60).acquire()
    assert "no heartbeat for" in lock.broken[0]
    lock.release()

    fresh = _fake_lock(tmp_path, "away-fresh", host="elsewhere", pid=1)
    with pytest.raises(LockHeldError, match="pid 1 on elsewhere"):   # another host, recently refreshed
        SlideLock(tmp_path, "away-fresh", stale_after_s=60).acquire()
    assert fresh.exists()


def test_the_heartbeat_keeps_a_long_hold_fresh_and_release_spares_a_new_owner(tmp_path):
    lock = SlideLock(tmp_path, "s", stale_after_s=0.6, heartbeat_s=0.1).acquire()
    time.sleep(1.0)
    assert stale_reason(lock.path, 0.6) is None            # older than stale_after_s, still fresh
    with pytest.raises(LockHeldError):
        SlideLock(tmp_path, "s", stale_after_s=0.6).acquire()
    # A breaker took over meanwhile (the old owner hung): the old owner's release must not free it.
    lock._stop.set()
    lock._beat.join()
    time.sleep(0.8)
    new = SlideLock(tmp_path, "s", stale_after_s=0.6).acquire()
    assert new.broken
    lock.release()
    assert read_owner(new.path).token == new.owner.token
    new.release()


def test_slide_lock_turns_a_busy_slide_into_busy_never_a_skip(tmp_path):
    with SlideLock(tmp_path, "slide"), pytest.raises(Busy, match="in progress elsewhere") as busy, \
            slide_lock(tmp_path, "slide"):
        pass
    assert "locked_by" in busy.value.details


WORKER = """
import os, sys, time
from slidestream.store.lock import SlideLock
folder, log, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
for _ in range(rounds):
    with SlideLock(folder, "shared", wait_s=60, poll_s=0.005):
        with open(log, "a") as fh:
            fh.write(f"enter {os.getpid()}\\n")
        time.sleep(0.01)
        with open(log, "a") as fh:
            fh.write(f"exit {os.getpid()}\\n")
"""


def test_processes_racing_for_one_lock_never_overlap(tmp_path):
    log = tmp_path / "log.txt"
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(tmp_path), str(log), "15"]) for _ in range(3)]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    lines = log.read_text().split()
    events = list(zip(lines[0::2], lines[1::2], strict=True))
    assert len(events) == 2 * 3 * 15
    for (kind_a, pid_a), (kind_b, pid_b) in zip(events[0::2], events[1::2], strict=True):
        assert (kind_a, kind_b) == ("enter", "exit") and pid_a == pid_b   # each hold is exclusive
    assert len({pid for _, pid in events}) == 3
    assert not lock_path(tmp_path, "shared").exists()
