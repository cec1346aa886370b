"""The Typer application every command module registers on.

Commands live in one module each (``info.py``, ``tile.py``, ...) and stay thin: they parse
arguments, call the public API, and turn results into a table and an exit code.
"""

from __future__ import annotations

import typer

app = typer.Typer(
    name="slidestream",
    help="Whole-slide images to tissue, tiles, features and slide embeddings.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """Whole-slide images to tissue, tiles, features and slide embeddings."""
