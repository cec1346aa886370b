"""Every bad input a clear one-line error: exit 2 for a run that cannot start (naming the option or
file and what is wrong), a failed row for one slide while the others run; never a traceback."""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from slidestream.pipeline.manifest import read_manifest
from slidestream.store import SlideStore
from tests.conftest import CMU
from tests.faults.conftest import cli, copy

TILE_ARGS = ["--mpp", "2.0", "--tile-size", "112"]


def one_line(result) -> str:
    return " ".join(result.output.split())


def assert_refused(result, *words: str) -> None:
    """Exit 2, no traceback, and the message names what is wrong."""
    assert result.exit_code == 2, result.output
    assert ("Traceback" not in result.output and result.exception is None) or isinstance(result.exception, SystemExit)
    text = one_line(result)
    for word in words:
        assert word in text, (word, text)


@pytest.fixture
def slide(tmp_path) -> Path:
    return copy(CMU, tmp_path / "cmu.svs")


# ---------------------------------------------------------------------------------- output folder
def test_an_output_folder_that_is_a_file_is_refused(tmp_path, slide):
    out = tmp_path / "out.txt"
    out.write_text("not a folder")
    assert_refused(cli("tissue", slide, "--out", out), str(out), "output folder is a file")
    assert_refused(cli("tissue", slide, "--out", out / "sub"), str(out / "sub"), "is under a file")
    assert out.read_text() == "not a folder"


@pytest.mark.parametrize("code", [errno.EROFS, errno.EACCES, errno.ENOSPC])
def test_an_unwritable_output_folder_is_refused_before_any_work(tmp_path, slide, monkeypatch, code):
    real = Path.write_bytes

    def refuse(self, data):   # the file layer says no, as a read-only mount / chmod / full disk does
        if self.name.startswith(".write-test"):
            raise OSError(code, os.strerror(code), str(self))
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", refuse)
    out = tmp_path / "out"
    assert_refused(cli("tile", slide, "--out", out, *TILE_ARGS), str(out), f"is not writable ({os.strerror(code)})")
    assert not list(out.glob("*.zarr"))


def test_a_config_whose_out_is_a_file_is_refused(tmp_path, slide):
    out = tmp_path / "out"
    out.write_text("")
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"slides": [str(slide)], "out": str(out), "features": None}))
    assert_refused(cli("run", config), str(out), "output folder is a file")


# ---------------------------------------------------------------------------------- config files
def test_malformed_yaml_with_brackets_is_one_clear_line(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("slides: [a.svs, [b\nout: [red]x[/red]: y\n")
    result = cli("run", config)
    assert_refused(result, str(config), "not valid YAML", "[")
    assert "MarkupError" not in result.output


def test_a_config_that_is_not_utf8_is_refused(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_bytes("slides: [caf\u00e9.svs]\nout: out\n".encode("latin-1"))
    assert_refused(cli("run", config), str(config), "not UTF-8 text", "0xe9")


@pytest.mark.parametrize(("key", "value", "words"), [
    ("tiling", {"mpp": float("inf")}, ["tiling.mpp", "finite"]),
    ("tiling", {"mpp": float("nan")}, ["tiling.mpp", "finite"]),
    ("tiling", {"mpp": 0}, ["tiling.mpp", "greater than 0"]),
    ("default_mpp", 1e9, ["default_mpp", "less than or equal to 100"]),
    ("features", {"device": "potato"}, ["features.device", "'potato'", "allowed: cpu"]),
    ("lock", {"wait_s": -1}, ["lock.wait_s"]),
])
def test_bad_run_config_values_are_refused_naming_the_key(tmp_path, slide, key, value, words):
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"slides": [str(slide)], "out": str(tmp_path / "out"), key: value}))
    assert_refused(cli("run", config), str(config), *words)


# ---------------------------------------------------------------------------------- options
@pytest.mark.parametrize(("args", "words"), [
    (["tile", "--mpp", "0"], ["mpp", "greater than 0"]),
    (["tile", "--tile-size", "0"], ["tile_size", "greater than 0"]),
    (["tile", "--mpp", "inf"], ["--mpp", "finite"]),
    (["tile", "--mpp", "nan"], ["--mpp", "finite"]),
    (["tile", "--min-tissue", "nan"], ["--min-tissue", "finite"]),
    (["tile", "--default-mpp", "inf"], ["--default-mpp", "finite"]),
    (["tile", "--default-mpp", "1e9"], ["--default-mpp", "implausible"]),
    (["tile", "--magnification", "20", "--mpp", "0.5"], ["--mpp 0.5", "--magnification 20", "contradict"]),
    (["extract", "--mpp", "0"], ["mpp", "greater than 0"]),
    (["extract", "--tile-size", "0"], ["tile_size", "greater than 0"]),
    (["extract", "--mpp", "inf"], ["--mpp", "finite"]),
    (["extract", "--device", "potato"], ["--device", "'potato'", "allowed: cpu"]),
    (["tissue", "--wait", "nan"], ["--wait"]),
    (["tissue", "--wait", "inf"], ["--wait", "finite"]),
])
def test_bad_options_are_refused_before_any_work(tmp_path, slide, args, words):
    out = tmp_path / "out"
    result = cli(args[0], slide, "--out", out, *args[1:])
    assert_refused(result, *words)
    assert not list(out.glob("*.zarr"))


# ---------------------------------------------------------------------------------- slide lists and folders
def test_bad_mpp_cells_fail_their_own_slide_and_the_others_run(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    rows = ["path,mpp", f"{copy(CMU, folder / 'good.svs')},"]
    for name, mpp in (("neg", "-1"), ("zero", "0"), ("word", "abc"), ("huge", "1e9"), ("inf", "inf")):
        (folder / f"{name}.svs").symlink_to(CMU)
        rows.append(f"{folder / name}.svs,{mpp}")
    listing = folder / "slides.csv"
    listing.write_text("\n".join(rows) + "\n")
    out = tmp_path / "out"
    start = time.monotonic()
    result = cli("tissue", listing, "--out", out)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert "1 ok, 0 skipped, 5 failed" in one_line(result)
    manifest = read_manifest(out).set_index("slide_id")
    assert manifest.loc["good", "status"] == "ok"
    expected = {"neg": "positive finite number, got -1.0", "zero": "positive finite number, got 0.0",
                "word": "mpp 'abc' in slides.csv, line 5, is not a number", "huge": "1e+09 um/px is implausible",
                "inf": "positive finite number, got inf"}
    for name, words in expected.items():
        row = manifest.loc[name]
        assert row["status"] == "failed" and words in row["reason"], row["reason"]
        assert "slides.csv, line" in row["reason"] and row["seconds"] < 1.0   # refused before any work
        assert not (out / f"{name}.zarr").exists()
    assert time.monotonic() - start < 120


def test_symlink_loops_broken_links_and_aliases_are_each_named(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    copy(CMU, folder / "good.svs")
    (folder / "loop.svs").symlink_to(folder / "loop.svs")       # a link to itself
    (folder / "broken.svs").symlink_to(folder / "nowhere.svs")
    (folder / "alias.svs").symlink_to(folder / "good.svs")
    out = tmp_path / "out"
    result = cli("tissue", folder, "--out", out)
    text = one_line(result)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert "2 ok, 0 skipped, 2 failed" in text
    assert f"warning {folder / 'loop.svs'} is a broken or looping symlink" in text
    assert f"warning {folder / 'broken.svs'} is a broken or looping symlink" in text
    assert f"{folder / 'good.svs'} and {folder / 'alias.svs'} are the same file" in text
    manifest = read_manifest(out).set_index("slide_id")
    assert manifest.loc["loop", "status"] == "failed" and manifest.loc["broken", "status"] == "failed"
    assert {manifest.loc["good", "status"], manifest.loc["alias", "status"]} == {"ok"}


def test_two_list_entries_linking_one_file_both_run_and_are_named(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    a = copy(CMU, folder / "a.svs")
    (folder / "b.svs").symlink_to(a)
    listing = folder / "slides.txt"
    listing.write_text(f"{a}\n{folder / 'b.svs'}\n{a}\n")
    result = cli("tissue", listing, "--out", tmp_path / "out")
    text = one_line(result)
    assert result.exit_code == 0, result.output
    assert "2 ok, 0 skipped, 0 failed" in text
    assert f"{folder / 'b.svs'} and {a} are the same file" in text
    assert f"{a} is listed more than once; processed once" in text


def test_a_lone_dicom_file_in_a_folder_is_not_dropped(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "lone.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 64)
    result = cli("tissue", folder, "--out", tmp_path / "out")
    assert result.exit_code in (1, 2), result.output
    assert "Traceback" not in result.output
    assert "in" in one_line(result) and ("failed" in one_line(result) or "error" in one_line(result))


def test_non_utf8_slide_list_is_refused(tmp_path):
    listing = tmp_path / "slides.txt"
    listing.write_bytes(b"/data/caf\xe9.svs\n")
    assert_refused(cli("tissue", listing, "--out", tmp_path / "out"), str(listing), "not UTF-8")


def test_the_good_slide_of_a_bad_batch_equals_a_clean_run(tmp_path):
    """Tiles of a slide run next to broken neighbours equal a lone run."""
    folder = tmp_path / "in"
    folder.mkdir()
    good = copy(CMU, folder / "good.svs")
    (folder / "broken.svs").write_bytes(b"not a slide")
    cli("tile", folder, "--out", tmp_path / "mixed", *TILE_ARGS)
    cli("tile", good, "--out", tmp_path / "alone", *TILE_ARGS)
    np.testing.assert_array_equal(SlideStore.open(tmp_path / "mixed" / "good.zarr").read_tiles().coords,
                                  SlideStore.open(tmp_path / "alone" / "good.zarr").read_tiles().coords)


def test_slide_encode_refuses_an_unknown_device(tmp_path):
    result = cli("slide-encode", "--method", "cobra", "--stores", tmp_path, "--encoder", "uni",
                 "--table", tmp_path / "t.parquet", "--device", "potato")
    assert_refused(result, "--device", "'potato'", "allowed: cpu")
