"""Command line entry point: ``slidestream``."""

from slidestream.cli._app import app


def main() -> None:
    app()


__all__ = ["app", "main"]
