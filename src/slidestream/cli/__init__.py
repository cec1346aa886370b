"""Command line entry point: ``slidestream``.

Each command module registers itself on the shared Typer app when imported.
"""

from slidestream.cli import (  # noqa: F401  (importing registers the commands)
    encoders,
    extract,
    heatmap,
    info,
    mil,
    report,
    run,
    slide_encode,
    tiles,
    verify,
)
from slidestream.cli._app import app
from slidestream.cli._common import print_error
from slidestream.errors import SlideStreamError


def main() -> None:
    try:
        app()
    except SlideStreamError as exc:  # a run-level error (e.g. the manifest on a full disk): a message, not a traceback
        print_error(exc)
        raise SystemExit(1) from None


__all__ = ["app", "main"]
