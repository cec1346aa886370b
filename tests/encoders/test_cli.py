"""``slidestream encoders``: the table and its JSON form."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

import slidestream.cli.encoders  # noqa: F401  (registers the command on the app)
from slidestream.cli._app import app
from slidestream.encoders import list_encoders


def test_json_lists_every_encoder_with_local_weights_found(clean_weights_env: Path) -> None:
    weights = clean_weights_env / "spaces--Saghir--PathDino" / "snapshots" / "r" / "PathDino512.pth"
    weights.parent.mkdir(parents=True)
    weights.write_bytes(b"0")
    result = CliRunner().invoke(app, ["encoders", "--json"])
    assert result.exit_code == 0, result.output
    records = {r["name"]: r for r in json.loads(result.stdout)}  # stdout holds only the JSON
    assert list(records) == list_encoders()
    assert records["pathdino"]["weights_path"] == str(weights)
    assert (
        records["uni"]["weights_path"] is None and records["uni"]["weights_status"] == "not found"
    )
    assert (
        records["pluto"]["weights_status"] == "not public"
        and not records["pluto"]["weights_public"]
    )
    assert records["handcrafted"]["params"] == 0
    assert records["virchow2"]["dim"] == 2560 and records["uni2-h"]["gated"]


def test_table_names_every_encoder_and_says_pluto_is_not_public() -> None:
    result = CliRunner().invoke(app, ["encoders"], env={"COLUMNS": "220"})
    assert result.exit_code == 0, result.output
    for name in list_encoders():
        assert name in result.stderr
    assert "not public" in result.stderr and "681.4M" in result.stderr
    assert result.stdout == ""  # the table is for people: stderr, like every other command's table
