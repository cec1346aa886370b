"""``slidestream encoders``: which patch encoders exist and which have weights on this machine.

Nothing is built or loaded: the table comes from the specs and a look at local disk (the same
search ``load_encoder`` does), so it is instant and works offline.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from slidestream.cli._app import app
from slidestream.cli._common import err_console
from slidestream.errors import WeightsError

if TYPE_CHECKING:
    from slidestream.encoders.spec import EncoderSpec


def _human(n: int) -> str:
    if n >= 1e9:
        return f"{n / 1e9:.2f}B"
    if n >= 1e6:
        return f"{n / 1e6:.1f}M"
    return str(n)


def _weights_status(spec: EncoderSpec) -> tuple[str | None, str]:
    """(local path or None, short status) for one encoder."""
    if not spec.requires_weights:
        return None, "built-in (no weights)"
    try:
        from slidestream.encoders import resolve_weights

        path = resolve_weights(spec)
    except WeightsError as exc:  # e.g. an unreadable folder in $SLIDESTREAM_WEIGHTS
        return None, f"error: {exc.reason}"
    if path is not None:
        return str(path), str(path)
    if not spec.weights_public:
        return None, "not public"
    return None, "not found"


def _record(spec: EncoderSpec) -> dict[str, Any]:
    path, status = _weights_status(spec)
    return {
        "name": spec.name,
        "family": spec.family,
        "dim": spec.embed_dim,
        "input_size": spec.input_size,
        "tile_size": spec.tile_size,
        "native_mpp": spec.native_mpp,
        "pooling": spec.pooling,
        "params": spec.expected_params,
        "published_params": spec.published_params,
        "default_precision": spec.default_precision,
        "hf_repo": spec.hf_repo,
        "weights_public": spec.weights_public,
        "weights_path": path,
        "weights_status": status,
        "gated": spec.gated,
        "license": spec.license,
        "notes": spec.notes,
    }


@app.command("encoders")
def encoders(
    as_json: Annotated[bool, typer.Option("--json", help="Also print a JSON array on stdout (the table stays on stderr).")] = False,
) -> None:
    """List the patch encoders: size, input, scale, and whether weights are on this machine.

    Like every command, the table for people goes to stderr and only JSON goes to stdout.
    """
    from slidestream.encoders import all_specs  # torch/timm load only for this command

    records = [_record(spec) for spec in all_specs()]
    if as_json:
        typer.echo(json.dumps(records, indent=2))
    table = Table(title="patch encoders", show_lines=False)
    for col, justify in (
        ("name", "left"),
        ("dim", "right"),
        ("tile→input px", "right"),
        ("mpp", "right"),
        ("embedding", "left"),
        ("params", "right"),
        ("weights", "left"),
        ("access / licence", "left"),
    ):
        table.add_column(col, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for r in records:
        found = r["weights_path"] is not None
        status = f"[green]{r['weights_status']}[/]" if found else f"[dim]{r['weights_status']}[/]"
        access = ("gated, " if r["gated"] else "") + r["license"]
        table.add_row(
            r["name"],
            str(r["dim"]),
            f"{r['tile_size']}→{r['input_size']}",
            f"{r['native_mpp']:g}",
            r["pooling"],
            _human(r["params"]),
            status,
            access,
        )
    err_console.print(table)
