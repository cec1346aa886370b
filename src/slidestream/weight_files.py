"""Weight files on local disk: the Hugging Face hub cache layout, and file digests.

Both weight resolvers (patch encoders in ``encoders/weights.py``, deep tissue segmenters in
``tissue/seg_weights.py``) look in the same hub cache and hash what they load into provenance;
tissue sits below encoders and may not import it, so the shared part lives here, in the base
room. Nothing here reaches the network or imports ``huggingface_hub``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def hf_hub_cache() -> Path:
    """The hub cache folder, resolved the way ``huggingface_hub`` does (without importing it)."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "huggingface" / "hub"


def snapshot_dirs(repo_dir: Path) -> list[Path]:
    """Snapshots of a hub repo folder (``models--org--name``): the one ``refs/main`` points to
    first, then the newest first, so a stale older download never shadows the current one."""
    snapshots = repo_dir / "snapshots"
    if not snapshots.is_dir():
        return []
    revs = sorted((p for p in snapshots.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime, reverse=True)
    ref = repo_dir / "refs" / "main"
    if ref.is_file():
        main = snapshots / ref.read_text().strip()
        if main in revs:
            revs.remove(main)
            revs.insert(0, main)
    return revs


def find_in_snapshots(repo_dir: Path, names: Iterable[str]) -> Path | None:
    """The first of ``names`` present in the repo folder's snapshots, in :func:`snapshot_dirs`
    order. A dangling symlink (an unfinished download) is skipped."""
    wanted = list(names)
    for snap in snapshot_dirs(repo_dir):
        for name in wanted:
            candidate = snap / name
            if candidate.is_file():
                return candidate
    return None


def sha256_file(path: str | os.PathLike[str], chunk_size: int = 1 << 22) -> str:
    """Hex SHA-256 of a file, streamed; cached per (path, mtime, size) so a rerun that loads the
    same multi-GB checkpoint again does not hash it again."""
    resolved = Path(path).resolve()
    stat = resolved.stat()
    key = (str(resolved), stat.st_mtime_ns, stat.st_size)
    if key not in _SHA_CACHE:
        digest = hashlib.sha256()
        with resolved.open("rb") as fh:
            while chunk := fh.read(chunk_size):
                digest.update(chunk)
        _SHA_CACHE[key] = digest.hexdigest()
    return _SHA_CACHE[key]
