"""Broken files fail at open with their own error type and a message naming the file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
from typer.testing import CliRunner

from slidestream.cli import app
from slidestream.errors import MissingMppError, SlideOpenError
from slidestream.io import open_slide
from tests.conftest import CMU, KIDNEY, TCGA_JP2K


def make_truncated(src: Path, dst: Path, fraction: float = 0.6) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst


def make_tiff_without_resolution(dst: Path) -> Path:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (512, 768, 3), dtype=np.uint8)
    tifffile.imwrite(dst, image, tile=(256, 256), photometric="rgb", compression="zlib")
    return dst


@pytest.fixture
def bad_files(tmp_path: Path) -> dict[str, Path]:
    text = tmp_path / "notes.svs"
    text.write_text("this is not a slide\n")
    empty = tmp_path / "empty.svs"
    empty.touch()
    return {
        "truncated": make_truncated(CMU, tmp_path / "truncated.svs"),
        "text": text,
        "empty": empty,
    }


@pytest.mark.parametrize("kind", ["truncated", "text", "empty"])
def test_broken_files_raise_slide_open_error_naming_the_file(bad_files, kind):
    path = bad_files[kind]
    with pytest.raises(SlideOpenError) as info:
        open_slide(path)
    assert str(path) in str(info.value)
    assert info.value.path == path
    assert "\n" not in str(info.value)


def test_truncation_is_named_as_such(bad_files):
    with pytest.raises(SlideOpenError, match="truncated"):
        open_slide(bad_files["truncated"])


def test_truncated_jpeg2000_slide_is_caught_at_open(tmp_path):
    with pytest.raises(SlideOpenError, match="truncated"):
        open_slide(make_truncated(TCGA_JP2K, tmp_path / "cut.svs", 0.9))


def test_tiff_without_resolution_opens_but_has_no_mpp(tmp_path):
    path = make_tiff_without_resolution(tmp_path / "nores.tif")
    with open_slide(path) as slide:
        assert slide.dimensions == (768, 512)
        with pytest.raises(MissingMppError) as info:
            _ = slide.mpp
        assert str(path) in str(info.value)
    with open_slide(path, mpp=0.5) as slide:
        assert slide.mpp == (0.5, 0.5)


def test_missing_file_and_unknown_backend(tmp_path):
    with pytest.raises(SlideOpenError, match="does not exist"):
        open_slide(tmp_path / "nope.svs")
    with pytest.raises(ValueError, match="unknown backend"):
        open_slide(CMU, backend="bioformats")  # type: ignore[arg-type]


def test_info_reports_good_slides_lists_bad_ones_and_exits_nonzero(tmp_path, bad_files):
    folder = tmp_path / "batch"
    folder.mkdir()
    for p in (CMU, KIDNEY):
        shutil.copy(p, folder / p.name)
    for p in bad_files.values():
        shutil.move(p, folder / p.name)
    make_tiff_without_resolution(folder / "nores.tif")
    result = CliRunner().invoke(app, ["info", str(folder), "--json"])
    assert result.exit_code == 1
    records = json.loads(result.stdout)
    assert sorted(Path(r["path"]).name for r in records) == sorted([CMU.name, KIDNEY.name, "nores.tif"])
    for name in ("truncated.svs", "notes.svs", "empty.svs"):
        assert f"{name}:" in result.stderr
    cmu = next(r for r in records if r["path"].endswith(CMU.name))
    assert cmu["mpp_x"] == pytest.approx(0.499) and cmu["objective_power"] == 20


def test_info_on_good_slides_exits_zero():
    result = CliRunner().invoke(app, ["info", str(CMU), str(KIDNEY)])
    assert result.exit_code == 0, result.output
    assert "2 ok, 0 skipped, 0 failed" in result.stderr
