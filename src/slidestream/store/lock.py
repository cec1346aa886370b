"""One writer per slide: a lock file per slide id, safe across processes and hosts.

Why a lock on top of atomic node renames: a single writer survives any crash thanks to the renames,
but two writers of the same slide still race. Both would resume the one partial feature array
(``features/_partial-<encoder>``) row by row, both rewrite the root's stage records, and one's
rename can land on the other's fresh node. The lock makes each slide's work happen in exactly one
process at a time, whoever started it (two ``slidestream run``, ``--shard`` nodes with overlapping
lists, Snakemake jobs, dask workers).

How: the owner's record (pid, the process's start time, host, pid namespace, boot id, heartbeat
period, a random token) is written to a temporary file first and then hard-linked to
``OUT/.locks/<name>.lock`` (``link`` fails if the name exists: atomic on local file systems and
NFS), so a lock file is never seen empty or half written. Where hard links are not supported it
falls back to ``O_CREAT | O_EXCL`` and writing. A heartbeat thread touches the file while it is
held. A lock is *stale*, and may be broken, when it is recognised for what it is:

* empty or unparsable (a crash or a full disk between create and write in an older writer) and
  more than ``EMPTY_GRACE_S`` old (or that far in the future);
* its owner ran on this machine (same host, pid namespace and boot) and is gone: the pid does not
  exist, is a zombie, or now belongs to another process (its start time differs: pid reuse), or
  the machine rebooted since;
* its heartbeat stopped: not touched for ``MISSED_BEATS`` heartbeat periods (or ``stale_after_s``,
  whichever is longer), e.g. an owner on another host that was killed or hung; an owner on another
  host is judged by heartbeat age only, never by its pid;
* its mtime lies in the future: more than ``FUTURE_SLACK_S`` for a lock of this machine whose owner
  cannot be verified alive, more than the heartbeat limit for another host (clock skew).

Breaking goes through a short-lived ``.break`` lock so that two processes never both break (and
one then delete the other's fresh lock). A lock is only ever removed by its owner (matching
token) or by a breaker that re-checked it under the break lock. A lock that cannot be written
(read-only or full disk, no permission) is a :class:`LockWriteError` naming the file.
"""

from __future__ import annotations

import contextlib
import errno
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
DEFAULT_STALE_AFTER_S = 120.0
MISSED_BEATS = 4              # a lock not touched for this many heartbeat periods is stale
EMPTY_GRACE_S = 5.0           # an empty/unparsable lock younger than this may still be being written
FUTURE_SLACK_S = 5.0          # a lock of this machine modified further in the future is not a heartbeat
BREAK_LOCK_MAX_AGE_S = 30.0   # a breaker holds ``.break`` for milliseconds; older means it died
_TMP_MARK = ".tmp-"


def _pid_namespace() -> str:
    """Containers on one host can share a host name but not pids: liveness needs the same namespace."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def _boot_id() -> str:
    """Changes at every boot (Linux): a lock from before a reboot belongs to nobody."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def process_start(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot, ``/proc/<pid>/stat`` field 22); None if unknown.

    With the pid it identifies a process: a pid reused by a new process has another start time.
    """
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


@dataclass(frozen=True)
class LockOwner:
    """Who holds a lock (as written in the lock file)."""

    pid: int
    host: str
    pidns: str
    created: float
    token: str
    start: int | None = None          # the owner's process start time (see ``process_start``)
    boot: str = ""
    heartbeat_s: float | None = None  # how often the owner touches the file

    @classmethod
    def current(cls, heartbeat_s: float | None = None) -> LockOwner:
        pid = os.getpid()
        return cls(pid, socket.gethostname(), _pid_namespace(), time.time(), uuid.uuid4().hex,
                   process_start(pid), _boot_id(), heartbeat_s)

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


class LockWriteError(StoreError):
    """The lock file cannot be created or removed (read-only or full disk, no permission)."""


def lock_path(folder: str | Path, name: str) -> Path:
    return Path(folder) / LOCK_DIR / f"{name}{LOCK_SUFFIX}"


def read_owner(path: Path) -> LockOwner | None:
    """The owner recorded in ``path``; None when the file is empty or not a lock record."""
    try:
        data = json.loads(path.read_text())
        owner = LockOwner(**{k: data[k] for k in ("pid", "host", "pidns", "created", "token")},
                          start=data.get("start"), boot=str(data.get("boot") or ""),
                          heartbeat_s=data.get("heartbeat_s"))
        if not isinstance(owner.pid, int) or not isinstance(owner.created, int | float):
            return None
        if owner.heartbeat_s is not None and not (isinstance(owner.heartbeat_s, int | float) and owner.heartbeat_s > 0):
            return None
        return owner
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # exists, owned by someone else
        pass
    except OverflowError:
        return False
    try:   # a killed child nobody has reaped yet still answers kill(0): a zombie holds nothing
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (OSError, IndexError):
        return True


def _owner_state(owner: LockOwner) -> tuple[str, str]:
    """("dead", why), ("alive", "") when pid and start time match, ("unknown", "") otherwise."""
    if owner.boot and _boot_id() and owner.boot != _boot_id():
        return "dead", f"owner pid {owner.pid} on {owner.host} ran before the machine rebooted"
    if not _pid_alive(owner.pid):
        return "dead", f"owner pid {owner.pid} on {owner.host} is gone"
    if owner.start is not None:
        now_start = process_start(owner.pid)
        if now_start is not None and now_start != owner.start:
            return "dead", f"owner pid {owner.pid} on {owner.host} is gone (the pid now belongs to another process)"
        if now_start is not None:
            return "alive", ""
    return "unknown", ""


def _ago(age: float) -> str:
    return f"{age:.0f} s old" if age >= 0 else f"modified {-age:.0f} s in the future"


def stale_reason(path: Path, stale_after_s: float, now: float | None = None) -> str | None:
    """Why the lock at ``path`` may be broken, or None while its owner is (presumed) alive."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return "gone"
    except OSError as exc:   # e.g. a symlink loop planted as a lock: not a lock of ours
        return f"unreadable lock file ({exc.strerror or exc})"
    age = (time.time() if now is None else now) - st.st_mtime
    owner = read_owner(path)
    if owner is None:
        if abs(age) > EMPTY_GRACE_S:
            return f"{'empty' if st.st_size == 0 else 'unparsable'} lock file, {_ago(age)}"
        return None
    limit = max(stale_after_s, MISSED_BEATS * owner.heartbeat_s) if owner.heartbeat_s else stale_after_s
    verified = False
    if owner.same_machine():
        state, why = _owner_state(owner)
        if state == "dead":
            return why
        verified = state == "alive"
    if age > limit:
        return f"no heartbeat for {age:.0f} s (limit {limit:.0f} s)"
    future_limit = limit if not owner.same_machine() else FUTURE_SLACK_S
    if not verified and -age > future_limit:
        return f"lock file modified {-age:.0f} s in the future (limit {future_limit:.0f} s)"
    return None


class SlideLock:
    """An exclusive, heartbeat-refreshed lock on ``folder/.locks/<name>.lock``.

    ``with SlideLock(out, slide_id):`` blocks for at most ``wait_s`` (0: fail at once with
    :class:`LockHeldError`) and releases on exit, whatever happens inside.
    """

    def __init__(self, folder: str | Path, name: str, *, stale_after_s: float = DEFAULT_STALE_AFTER_S,
                 wait_s: float = 0.0, poll_s: float = 0.1, heartbeat_s: float | None = None) -> None:
        if not stale_after_s > 0:
            raise ValueError(f"stale_after_s must be positive, got {stale_after_s}")
        self.path = lock_path(folder, name)
        self.stale_after_s = float(stale_after_s)
        self.wait_s = float(wait_s)
        self.poll_s = float(poll_s)
        self.heartbeat_s = float(heartbeat_s if heartbeat_s is not None else max(0.05, stale_after_s / MISSED_BEATS))
        self.owner: LockOwner | None = None
        self.broken: list[str] = []   # reasons of stale locks this object broke (for the record)
        self.waited_s = 0.0           # how long acquire waited for another owner
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    @property
    def held(self) -> bool:
        return self.owner is not None

    # ------------------------------------------------------------------ acquire / release
    def acquire(self) -> SlideLock:
        if self.held:
            return self
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LockWriteError(self.path, f"cannot create the lock folder ({_why(exc)})") from None
        started = time.monotonic()
        deadline = started + self.wait_s
        while True:
            owner = LockOwner.current(self.heartbeat_s)
            if self._create(owner):
                self.owner = owner
                self.waited_s = time.monotonic() - started
                self._start_heartbeat()
                return self
            if self._break_if_stale():
                continue
            if time.monotonic() >= deadline:
                raise LockHeldError(self.path, read_owner(self.path)) from None
            time.sleep(max(0.001, min(self.poll_s, deadline - time.monotonic())))

    def _create(self, owner: LockOwner) -> bool:
        """Publish ``owner`` as the lock file, complete or not at all; False when it exists."""
        record = json.dumps(asdict(owner)).encode()
        tmp = self.path.with_name(f".{self.path.name}{_TMP_MARK}{owner.token[:12]}")
        try:
            fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            try:
                os.write(fd, record)
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(tmp, self.path)
                return True
            except FileExistsError:
                return False
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.EXDEV):
                    raise
            return self._create_exclusive(record)   # no hard links on this file system
        except OSError as exc:
            raise LockWriteError(self.path, f"cannot write the lock file ({_why(exc)})") from None
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)

    def _create_exclusive(self, record: bytes) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        try:
            os.write(fd, record)
            os.fsync(fd)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(self.path)   # never leave an empty lock behind
            raise
        finally:
            os.close(fd)
        return True

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
                if abs(time.time() - breaker.stat().st_mtime) > BREAK_LOCK_MAX_AGE_S:
                    os.unlink(breaker)
            return False
        except OSError as exc:
            raise LockWriteError(self.path, f"cannot break a stale lock ({_why(exc)})") from None
        try:
            os.close(fd)
            reason = stale_reason(self.path, self.stale_after_s)   # re-check: it may have moved on
            if reason is None:
                return False
            if reason != "gone":
                try:
                    os.unlink(self.path)
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    raise LockWriteError(self.path, f"cannot remove a stale lock ({reason}): {_why(exc)}") from None
                self.broken.append(reason)
            return True
        finally:
            with contextlib.suppress(OSError):
                os.unlink(breaker)


def _why(exc: OSError) -> str:
    return f"[Errno {exc.errno}] {exc.strerror}" if exc.errno and exc.strerror else str(exc)


@contextlib.contextmanager
def hold(folder: str | Path, name: str, **kwargs: float) -> Iterator[SlideLock]:
    """``with hold(out, "manifest", wait_s=60):`` a short critical section under a named lock."""
    lock = SlideLock(folder, name, **kwargs)
    with lock:
        yield lock
