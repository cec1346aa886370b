"""Command line entry point: ``slidestream``.

Each command module registers itself on the shared Typer app when imported.
"""

from slidestream.cli import encoders, extract, info, mil, slide_encode, tiles  # noqa: F401  (registers commands)
from slidestream.cli._app import app


def main() -> None:
    app()


__all__ = ["app", "main"]
