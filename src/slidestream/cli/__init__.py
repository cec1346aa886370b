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
)
from slidestream.cli._app import app


def main() -> None:
    app()


__all__ = ["app", "main"]
