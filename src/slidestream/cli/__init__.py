"""Command line entry point: ``slidestream``.

Each command module registers itself on the shared Typer app (``_app.py``) when imported. The
``slidestream`` executable imports only the module of the command it runs (:mod:`._lazy`), so
``slidestream --help`` and light commands do not pay for torch, zarr or pandas. ``from
slidestream.cli import app`` (tests, embedding) still gives the full app with every command.
"""

from __future__ import annotations

import sys
from typing import Any

from slidestream.errors import SlideStreamError


def main() -> None:
    from slidestream.cli._lazy import build

    try:
        build(sys.argv[1:]).main(prog_name="slidestream")
    except SlideStreamError as exc:  # a run-level error (e.g. the manifest on a full disk): a message, not a traceback
        from slidestream.cli._common import print_error

        print_error(exc)
        raise SystemExit(1) from None


def __getattr__(name: str) -> Any:
    if name == "app":
        from slidestream.cli._app import app
        from slidestream.cli._lazy import load_all

        load_all()
        return app
    if name == "err_console":
        from slidestream.cli._common import err_console

        return err_console
    raise AttributeError(f"module 'slidestream.cli' has no attribute {name!r}")


__all__ = ["app", "main"]
