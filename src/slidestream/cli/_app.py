"""The Typer application every command module registers on.

Commands live in one module each (``info.py``, ``tile.py``, ...) and stay thin: they parse
arguments, call the public API, and turn results into a table and an exit code.
"""

from __future__ import annotations

from typing import Annotated

import typer

app = typer.Typer(
    name="slidestream",
    help="Whole-slide images to tissue, tiles, features and slide embeddings.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        from slidestream._version import __version__

        typer.echo(f"slidestream {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", "-V", callback=_print_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Whole-slide images to tissue, tiles, features and slide embeddings."""
