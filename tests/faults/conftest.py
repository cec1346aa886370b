"""Shared pieces of the fault-injection tests: small real slides, broken copies, the CLI.

Every run embeds with the ``handcrafted`` encoder (no weights) at 2 um/px with 112 px tiles, so a
slide costs a fraction of a second and the whole suite stays fast.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
from typer.testing import CliRunner

from slidestream.cli import app
from slidestream.store import SlideStore, load_features
from tests.conftest import CMU, PEN, REPO, TCGA_JP2K

ENCODER = "handcrafted"
EXTRACT_ARGS = ["--encoder", ENCODER, "--mpp", "2.0", "--tile-size", "112", "--workers", "2"]
PEN_MPP = 0.5  # the pen-marks slide carries no mpp; a slide list supplies one


def cli(*args: object):
    """The CLI in this process (``CliRunner``); stderr is kept apart."""
    return CliRunner().invoke(app, [str(a) for a in args])


def cli_command(*args: object) -> list[str]:
    """The CLI as its own process (what a user or a scheduler starts)."""
    return [sys.executable, "-c", "from slidestream.cli import main; main()", *[str(a) for a in args]]


def subprocess_env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""), "COLUMNS": "200"}
    env.pop("FORCE_COLOR", None)
    return env


def run_cli_process(*args: object, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(cli_command(*args), capture_output=True, text=True, timeout=timeout, env=subprocess_env(),
                          cwd=REPO)


def summary_counts(stderr: str) -> tuple[int, int, int]:
    """(ok, skipped, failed) from the batch summary line."""
    match = re.findall(r"(\d+) ok, (\d+) skipped, (\d+) failed", stderr)
    assert match, stderr[-2000:]
    ok, skipped, failed = (int(v) for v in match[-1])
    return ok, skipped, failed


def slide_list(folder: Path, rows: list[tuple[Path, float | None]]) -> Path:
    """A CSV slide list (``path,mpp``) in the given order."""
    path = folder / "slides.csv"
    path.write_text("path,mpp\n" + "".join(f"{p},{'' if m is None else m}\n" for p, m in rows))
    return path


def make_blank_slide(path: Path, mpp: float = 0.5, side: int = 2048) -> Path:
    """A JPEG-tiled pyramid of empty glass (faint noise, no tissue) with resolution tags."""
    rng = np.random.default_rng(0)
    image = np.clip(242 + rng.normal(0, 1.5, (side, side, 3)), 0, 255).astype(np.uint8)
    with tifffile.TiffWriter(path) as tif:
        for k in range(3):
            px_per_cm = 1e4 / (mpp * 2**k)
            tif.write(image[:: 2**k, :: 2**k], tile=(256, 256), compression="jpeg", photometric="rgb",
                      resolution=(px_per_cm, px_per_cm), resolutionunit="CENTIMETER", subfiletype=1 if k else 0)
    return path


def make_truncated(src: Path, dst: Path, fraction: float = 0.6) -> Path:
    dst.write_bytes(src.read_bytes()[: int(src.stat().st_size * fraction)])
    return dst


def copy(src: Path, dst: Path) -> Path:
    shutil.copy(src, dst)
    return dst


def features_of(out: Path, slide_id: str) -> np.ndarray:
    return load_features(out / f"{slide_id}.zarr", ENCODER)[0]


def assert_nothing_half_claimed(out: Path) -> None:
    """Every store in ``out`` opens, and every node it calls complete reads back whole."""
    for path in sorted(out.glob("*.zarr")):
        store = SlideStore.open(path)  # raises on unreadable metadata
        if store.has("tiles"):
            tiles = store.read_tiles()
            assert len(tiles.coords) == tiles.attrs["n_tiles"]
        for encoder in store.list_nodes("features"):
            features, coords, attrs = store.read_features(encoder)
            assert len(features) == len(coords) == attrs["n_rows"]
            assert np.isfinite(features).all()


@pytest.fixture(scope="session")
def reference(tmp_path_factory) -> dict[str, np.ndarray]:
    """Features of an uninterrupted run on the good slides, by slide file name."""
    folder = tmp_path_factory.mktemp("reference")
    rows = [(copy(CMU, folder / "cmu.svs"), None), (copy(PEN, folder / "pen.tif"), PEN_MPP),
            (copy(TCGA_JP2K, folder / "jp2k.svs"), 0.5)]
    out = folder / "out"
    result = cli("extract", slide_list(folder, rows), "--out", out, *EXTRACT_ARGS)
    assert result.exit_code == 0, result.output
    refs = {p.name: features_of(out, p.stem) for p, _ in rows}
    assert all(len(f) > 0 for f in refs.values())
    return refs
