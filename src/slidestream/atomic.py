"""The one atomic file writer: a temporary name, fsync, then ``os.replace``.

Every file slidestream writes outside a zarr store (GeoJSON, PNG, CSV manifest, h5 export, JSON
markers, checkpoints) goes through :func:`atomic_path`, so a reader sees the old complete file or
the new complete file and never a truncated one, whatever happens to the writing process (kill -9,
full disk). On failure the temporary file is removed and the error is re-raised unchanged, so the
caller decides how to report it.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

TMP_MARK = ".tmp-"


@contextlib.contextmanager
def atomic_path(path: str | Path, *, fsync: bool = True) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write; on success it replaces ``path`` atomically.

    The temporary name keeps the final suffix (``x.tmp-<id>.png``) so that writers which pick a
    format from the suffix (Pillow, pandas, h5py) keep working.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.stem}{TMP_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}{path.suffix}")
    try:
        yield tmp
        if fsync:
            _fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    if fsync:
        _fsync_dir(path.parent)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def flush_to_disk(files: Iterable[Path], directories: Iterable[Path]) -> None:
    """fsync ``files``, then ``directories`` (their entries): for a batch of files written into a
    folder no reader sees yet (a store node under its temporary name), before it is renamed into
    place. Written first and flushed together, the first fsync commits them all in one journal
    transaction and the others find little left to commit (vs. a commit per atomic write)."""
    for path in files:
        _fsync_file(Path(path))
    for directory in directories:
        _fsync_dir(Path(directory))


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable; some file systems refuse fsync on a directory: ignore that."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
