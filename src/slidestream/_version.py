"""Single source of the package version (read from the installed metadata), read on first use.

``importlib.metadata`` costs tens of milliseconds (it parses e-mail headers), so ``__version__``
is resolved lazily (PEP 562): ``from slidestream._version import __version__`` works as before,
and ``import slidestream`` alone does not pay for it.
"""

from __future__ import annotations


def _read_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("slidestream")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0.0.0+unknown"


def __getattr__(name: str) -> str:
    if name == "__version__":
        value = _read_version()
        globals()["__version__"] = value
        return value
    raise AttributeError(f"module 'slidestream._version' has no attribute {name!r}")
