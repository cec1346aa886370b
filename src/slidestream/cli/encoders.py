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
    slide: Annotated[
        bool, typer.Option("--slide", help="Only the slide foundation encoders (with --json too).")
    ] = False,
) -> None:
    """List the patch encoders and the slide foundation encoders: size, input, scale, weights.

    Like every command, the table for people goes to stderr and only JSON goes to stdout.
    """
    from slidestream.encoders import all_specs  # torch/timm load only for this command

    if slide:
        _print_slide_encoders(as_json)
        return

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
    _print_slide_encoders(False)


def _slide_record(spec: Any) -> dict[str, Any]:
    from slidestream.slide_encoders.foundation import find_weights

    try:
        path: str | None = str(find_weights(spec))
    except WeightsError:
        path = None
    req = spec.requirement
    return {
        "name": spec.name,
        "family": spec.family,
        "dim": spec.embed_dim,
        "params": spec.expected_params,
        "published_params": spec.published_params,
        "input": req.describe(),
        "patch_encoder": req.patch_encoders[0],
        "feature_dim": req.feature_dim,
        "tile_size": req.tile_size,
        "mpp": req.mpp,
        "uses_coords": req.uses_coords,
        "hf_repo": spec.hf_repo,
        "weights_source": spec.weights_source,
        "weights_path": path,
        "gated": spec.gated,
        "license": spec.license,
        "notes": spec.notes,
    }


def _print_slide_encoders(as_json: bool) -> None:
    """The slide foundation encoders (``slide-encode --method NAME --weights PATH``)."""
    from slidestream.slide_encoders.foundation import all_slide_specs

    records = [_slide_record(spec) for spec in all_slide_specs()]
    if as_json:
        typer.echo(json.dumps(records, indent=2))
        return
    table = Table(title="slide foundation encoders (slide-encode --method NAME)")
    for col in ("name", "dim", "params", "needs (patch encoder, tiles)", "coords", "weights"):
        table.add_column(col, overflow="fold")
    for r in records:
        table.add_row(
            r["name"], str(r["dim"]), _human(r["params"]),
            f"{r['patch_encoder']} {r['feature_dim']}-d, {r['tile_size']} px @ {r['mpp']:g} um/px",
            "yes" if r["uses_coords"] else "no",
            r["weights_path"] or f"[dim]not found ({r['weights_source']})[/]",
        )
    err_console.print(table)
