"""Slides behind URLs (``https://``, ``s3://``, ``gs://``, ...), read through fsspec.

tiffslide reads TIFF-family files (SVS, generic and OME-TIFF) over fsspec with range requests,
so only the bytes of the tiles asked for travel. Everything downstream of ``open_slide`` keeps
working with ``pathlib.Path`` objects; a URL squeezed through ``Path`` loses one slash of its
``//`` (``https:/host/x.svs``), and :func:`remote_url` gives the URL back from either form, so a
remote slide's id, manifest row and worker re-open all behave like a local file's.

The filesystem packages are optional: ``https://`` needs ``aiohttp``, ``s3://`` ``s3fs``,
``gs://`` ``gcsfs``; a missing one is a clear error naming the package to install.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

# fsspec protocols worth recognising as remote slides (local paths never look like this)
REMOTE_SCHEMES = ("http", "https", "s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "hf")
_URL = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*):/+(?P<rest>.+)$")
_PACKAGES = {"http": "aiohttp", "https": "aiohttp", "s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs",
             "gcs": "gcsfs", "az": "adlfs", "abfs": "adlfs", "abfss": "adlfs", "adl": "adlfs",
             "hf": "huggingface_hub"}


class RemoteError(OSError):
    """A remote slide cannot be reached (missing filesystem package, missing object, no access)."""


def remote_url(path: str | Path) -> str | None:
    """The URL ``path`` names (also from its ``Path``-collapsed form), or None for local paths."""
    match = _URL.match(str(path))
    if match is None or match["scheme"].lower() not in REMOTE_SCHEMES:
        return None
    return f"{match['scheme'].lower()}://{match['rest']}"


def is_remote(path: str | Path) -> bool:
    return remote_url(path) is not None


def location(path: str | Path) -> str:
    """What to record as a slide's place: its URL, or its absolute local path."""
    url = remote_url(path)
    return url if url is not None else str(Path(path).resolve())


def filesystem(url: str) -> tuple[Any, str]:
    """The fsspec filesystem and the path inside it; a clear error when its package is missing."""
    try:
        import fsspec
    except ImportError as exc:  # pragma: no cover - fsspec comes with tiffslide
        raise RemoteError(f"reading {url} needs fsspec (pip install fsspec)") from exc
    scheme = url.split("://", 1)[0]
    try:
        return fsspec.core.url_to_fs(url)
    except ImportError as exc:
        package = _PACKAGES.get(scheme, "the fsspec filesystem for it")
        raise RemoteError(f"reading {scheme}:// slides needs the optional package {package} "
                          f"(pip install {package})") from exc


def remote_size(url: str) -> int:
    """Size in bytes; raises :class:`RemoteError` when the object is missing or unreachable."""
    fs, inner = filesystem(url)
    try:
        info = fs.info(inner)
    except FileNotFoundError as exc:
        raise RemoteError(f"{url} does not exist") from exc
    except RemoteError:
        raise
    except Exception as exc:  # network errors come in many types
        raise RemoteError(f"cannot reach {url} ({type(exc).__name__}: {exc})") from exc
    size = info.get("size")
    return int(size) if size is not None else -1


def read_range(url: str, start: int, end: int) -> bytes:
    fs, inner = filesystem(url)
    return fs.cat_file(inner, start=start, end=end)
