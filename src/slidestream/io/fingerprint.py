"""Slide identity for provenance: cheap by default, full checksum on request.

Hashing every byte of a 3 GB slide costs seconds locally and minutes on network storage, for
every run. Size plus the first and last MiB identify a file in practice (headers, directories and
tile tables live there); ``full=True`` hashes everything when a study needs it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from slidestream.io.dicom import is_dicom_path, series_at
from slidestream.io.remote import read_range, remote_size, remote_url

_EDGE = 1 << 20


def slide_fingerprint(path: str | Path, *, full: bool = False) -> str:
    url = remote_url(path)
    if url is not None:
        return _remote_fingerprint(url, full=full)
    path = Path(path)
    if is_dicom_path(path):
        try:  # a DICOM slide is its series' files, not the folder (which may hold other series)
            files = series_at(path).files
        except ValueError:
            files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    else:
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    digest = hashlib.sha256()
    for f in files:
        size = f.stat().st_size
        digest.update(f"{f.name}:{size}".encode())
        with open(f, "rb") as fh:
            if full or size <= 2 * _EDGE:
                for block in iter(lambda: fh.read(1 << 22), b""):
                    digest.update(block)
            else:
                digest.update(fh.read(_EDGE))
                fh.seek(size - _EDGE)
                digest.update(fh.read(_EDGE))
    kind = "sha256" if full else "sha256-size-head-tail-1MiB"
    return f"{kind}:{digest.hexdigest()}"


def _remote_fingerprint(url: str, *, full: bool) -> str:
    """The same digest as for a local file (name, size, head and tail), by range requests."""
    size = remote_size(url)
    digest = hashlib.sha256()
    digest.update(f"{url.rsplit('/', 1)[-1]}:{size}".encode())
    if full or size <= 2 * _EDGE:
        for start in range(0, size, 1 << 22):
            digest.update(read_range(url, start, min(size, start + (1 << 22))))
    else:
        digest.update(read_range(url, 0, _EDGE))
        digest.update(read_range(url, size - _EDGE, size))
    kind = "sha256" if full else "sha256-size-head-tail-1MiB"
    return f"{kind}:{digest.hexdigest()}"
