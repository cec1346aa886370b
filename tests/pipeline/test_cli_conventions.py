"""CLI conventions: --version, -h, and --json results on stdout with the tables kept on stderr."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from slidestream._version import __version__
from slidestream.cli import app
from tests.conftest import CMU


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_version_and_short_help():
    result = run("--version")
    assert result.exit_code == 0 and result.stdout.strip() == f"slidestream {__version__}"
    for args in (["-h"], ["tile", "-h"], ["export", "h5", "-h"]):
        result = run(*args)
        assert result.exit_code == 0 and "Usage" in result.stdout, args


def test_batch_json_goes_to_stdout_and_the_table_to_stderr(tmp_path):
    missing = tmp_path / "gone.svs"
    result = run("tissue", CMU, missing, "--out", tmp_path / "out", "--json")
    assert result.exit_code == 1  # one slide failed
    report = json.loads(result.stdout)  # stdout is nothing but the JSON document
    assert report["command"] == "tissue" and report["exit_code"] == 1
    assert report["summary"] == {"ok": 1, "skipped": 0, "failed": 1, "busy": 0}
    rows = {row["slide"].rsplit("/", 1)[-1]: row for row in report["slides"]}
    assert rows[CMU.name]["status"] == "ok" and rows[CMU.name]["tissue_pieces"] >= 1
    assert rows["gone.svs"]["status"] == "failed" and rows["gone.svs"]["reason"]
    assert "traceback" not in rows["gone.svs"]
    assert "1 ok, 0 skipped, 1 failed" in result.stderr and "tissue" in result.stderr


def test_info_and_encoders_use_the_same_streams():
    info = run("info", CMU)
    encoders = run("encoders")
    for result in (info, encoders):
        assert result.exit_code == 0 and result.stdout == "" and result.stderr.strip()
    assert json.loads(run("info", CMU, "--json").stdout)[0]["width"] == 2220


def test_slide_encode_json_has_one_record_per_slide(tmp_path):
    from tests.store.conftest import make_store

    make_store(tmp_path / "out", "a", 20)
    make_store(tmp_path / "out", "blank", 0)
    result = run("slide-encode", "--method", "mean", "--stores", tmp_path / "out", "--encoder", "handcrafted",
                 "--table", tmp_path / "t.parquet", "--json")
    assert result.exit_code == 1, result.output  # the blank slide has no tiles to embed
    report = json.loads(result.stdout)
    status = {row["slide_id"]: row["status"] for row in report["slides"]}
    assert status == {"a": "ok", "blank": "failed"} and report["exit_code"] == 1
    assert "embedding" not in report["slides"][0] and "1/2 slides" in result.stderr
