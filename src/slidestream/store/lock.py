"""One writer per slide: a lock file per slide id, safe across processes and hosts.

Why a lock on top of atomic node renames: a single writer survives any crash thanks to the renames,
but two writers of the same slide still race. Both would resume the one partial feature array
(``features/_partial-<encoder>``) row by row, both rewrite the root's stage records, and one's
rename can land on the other's fresh node. The lock makes each slide's work happen in exactly one
process at a time, whoever started it (two ``slidestream run``, ``--shard`` nodes with overlapping
lists, Snakemake jobs, dask workers).

How: ``OUT/.locks/<name>.lock`` is created with ``O_CREAT | O_EXCL`` (atomic on local file systems
and on NFSv3+) and holds the owner's pid, host, pid namespace, start time and a random token. A
heartbeat thread touches it while it is held, so a lock is *stale*, and may be broken, when

* its owner ran on this host (same pid namespace) and that pid is gone, or
* nobody touched it for ``stale_after_s`` seconds (owner on another host, hung or killed).

Breaking goes through a short-lived ``.break`` lock so that two processes never both break (and
one then delete the other's fresh lock). A lock is only ever removed by its owner (matching
token) or by a breaker that re-checked it under the break lock.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from slidestream.errors import StoreError

LOCK_DIR = ".locks"
LOCK_SUFFIX = ".lock"
DEFAULT_STALE_AFTER_S = 600.0
BREAK_LOCK_MAX_AGE_S = 30.0   # a breaker holds ``.break`` for milliseconds; older means it died


def _pid_namespace() -> str:
    """Containers on one host can share a host name but not pids: liveness needs the same namespace."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


@dataclass(frozen=True)
class LockOwner:
    """Who holds a lock (as written in the lock file)."""

    pid: int
    host: str
    pidns: str
    created: float
    token: str

    @classmethod
    def current(cls) -> LockOwner:
        return cls(os.getpid(), socket.gethostname(), _pid_namespace(), time.time(), uuid.uuid4().hex)

    def describe(self) -> str:
        since = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(self.created))
        return f"pid {self.pid} on {self.host} since {since}"

    def same_machine(self) -> bool:
        return self.host == socket.gethostname() and self.pidns == _pid_namespace()


class LockHeldError(StoreError):
    """The lock is held by a live owner (and ``wait_s`` ran out)."""

    def __init__(self, path: Path, owner: LockOwner | None) -> None:
        self.owner = owner
        self.owner_text = owner.describe() if owner else "an owner still writing the lock file"
        super().__init__(path, f"locked by {self.owner_text}")


def lock_path(folder: str | Path, name: str) -> Path:
    return Path(folder) / LOCK_DIR / f"{name}{LOCK_SUFFIX}"


def read_owner(path: Path) -> LockOwner | None:
    """The owner recorded in ``path``; None while the file is empty (its creator is still writing)."""
    try:
        data = json.loads(path.read_text())
        return LockOwner(**{k: data[k] for k in ("pid", "host", "pidns", "created", "token")})
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # exists, owned by someone else
        pass
    try:   # a killed child nobody has reaped yet still answers kill(0): a zombie holds nothing
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (OSError, IndexError):
        return True


def stale_reason(path: Path, stale_after_s: float, now: float | None = None) -> str | None:
    """Why the lock at ``path`` may be broken, or None while its owner is (presumed) alive."""
    try:
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        return "gone"
    owner = read_owner(path)
    if owner is not None and owner.same_machine() and not _pid_alive(owner.pid):
        return f"owner pid {owner.pid} on {owner.host} is gone"
    age = (time.time() if now is None else now) - mtime
    if age > stale_after_s:
        return f"no heartbeat for {age:.0f} s (limit {stale_after_s:.0f} s)"
    return None


class SlideLock:
    """An exclusive, heartbeat-refreshed lock on ``folder/.locks/<name>.lock``.

    ``with SlideLock(out, slide_id):`` blocks for at most ``wait_s`` (0: fail at once with
    :class:`LockHeldError`) and releases on exit, whatever happens inside.
    """

    def __init__(self, folder: str | Path, name: str, *, stale_after_s: float = DEFAULT_STALE_AFTER_S,
                 wait_s: float = 0.0, poll_s: float = 0.1, heartbeat_s: float | None = None) -> None:
        if stale_after_s <= 0:
            raise ValueError(f"stale_after_s must be positive, got {stale_after_s}")
        self.path = lock_path(folder, name)
        self.stale_after_s = float(stale_after_s)
        self.wait_s = float(wait_s)
        self.poll_s = float(poll_s)
        self.heartbeat_s = float(heartbeat_s if heartbeat_s is not None else max(0.05, stale_after_s / 4))
        self.owner: LockOwner | None = None
        self.broken: list[str] = []   # reasons of stale locks this object broke (for the record)
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    @property
    def held(self) -> bool:
        return self.owner is not None

    # ------------------------------------------------------------------ acquire / release
    def acquire(self) -> SlideLock:
        if self.held:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.wait_s
        while True:
            owner = LockOwner.current()
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if self._break_if_stale():
                    continue
                if time.monotonic() >= deadline:
                    raise LockHeldError(self.path, read_owner(self.path)) from None
                time.sleep(self.poll_s)
                continue
            with os.fdopen(fd, "w") as fh:
                json.dump(asdict(owner), fh)
                fh.flush()
                os.fsync(fh.fileno())
            self.owner = owner
            self._start_heartbeat()
            return self

    def release(self) -> None:
        """Remove the lock if it is still ours (a breaker may have judged us stale meanwhile)."""
        if not self.held:
            return
        self._stop.set()
        if self._beat is not None:
            self._beat.join(timeout=5)
        current = read_owner(self.path)
        if current is not None and self.owner is not None and current.token == self.owner.token:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
        self.owner = None

    def __enter__(self) -> SlideLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    # ------------------------------------------------------------------ internals
    def _start_heartbeat(self) -> None:
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._heartbeat, name=f"lock-heartbeat-{self.path.stem}", daemon=True)
        self._beat.start()

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            with contextlib.suppress(OSError):
                os.utime(self.path)

    def _break_if_stale(self) -> bool:
        """Delete a stale lock under the break lock; True when the caller should retry at once."""
        if stale_reason(self.path, self.stale_after_s) is None:
            return False
        breaker = self.path.with_name(self.path.name + ".break")
        try:
            fd = os.open(breaker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            with contextlib.suppress(OSError):
                if time.time() - breaker.stat().st_mtime > BREAK_LOCK_MAX_AGE_S:
                    os.unlink(breaker)
            return False
        try:
            os.close(fd)
            reason = stale_reason(self.path, self.stale_after_s)   # re-check: it may have moved on
            if reason is None:
                return False
            if reason != "gone":
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path)
                self.broken.append(reason)
            return True
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(breaker)


@contextlib.contextmanager
def hold(folder: str | Path, name: str, **kwargs: float) -> Iterator[SlideLock]:
    """``with hold(out, "manifest", wait_s=60):`` a short critical section under a named lock."""
    lock = SlideLock(folder, name, **kwargs)
    with lock:
        yield lock
