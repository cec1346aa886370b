"""``slidestream --help`` and light commands start without the heavy libraries (issue 17, issue 15 §4).

The executable imports only the module of the command it runs (``cli/_lazy.py``); these tests
check, in fresh interpreters, that the listing is complete and equal to what importing every
command registers, and that the start-up stays free of torch, zarr, pandas and the stages.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main

from slidestream.cli._lazy import requested, scan
from tests.conftest import CMU

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "zarr", "pandas", "geopandas", "cv2", "scipy", "numpy", "slidestream.pipeline.stages")


def fresh(code: str) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin", "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO, timeout=120)


def test_the_scan_finds_exactly_the_commands_importing_everything_registers():
    from slidestream.cli import app  # imports every command module

    group = typer.main.get_command(app)
    real = {name: (cmd.help or "").strip() for name, cmd in group.commands.items()}  # type: ignore[attr-defined]
    scanned = {e.name: e.help.strip() for e in scan()}
    assert scanned.keys() == real.keys()
    for name, text in scanned.items():  # the listing shows the real help text
        assert text == real[name] or real[name].startswith(text), name


def test_help_lists_every_command_without_loading_the_stages():
    probe = ("import sys; sys.argv = ['slidestream', '--help']\n"
             "from slidestream.cli import main\n"
             "try:\n    main()\nexcept SystemExit as e:\n    code = e.code\n"
             f"print('@@', code, [m for m in {HEAVY!r} if m in sys.modules])")
    proc = fresh(probe)
    code, loaded = proc.stdout.rsplit("@@", 1)[1].split(" ", 2)[1:]
    assert code in ("0", "None"), proc.stderr
    assert loaded.strip() == "[]", f"--help imported {loaded.strip()}"
    for entry in scan():
        assert entry.name in proc.stdout


@pytest.mark.slow
def test_every_command_help_starts_without_the_heavy_libraries():
    """``slidestream <command> --help`` is what a user types first: no torch, zarr, pandas, OpenCV,
    shapely or slide readers for it (``tile``'s help shows ``TissueParams`` defaults, and the
    tissue package resolves its names lazily so that this does not import detection)."""
    heavy = (*HEAVY, "shapely", "openslide", "tiffslide", "slidestream.tissue.detect")
    for entry in scan():
        probe = (f"import sys; sys.argv = ['slidestream', {entry.name!r}, '--help']\n"
                 "from slidestream.cli import main\n"
                 "try:\n    main()\nexcept SystemExit as e:\n    code = e.code\n"
                 f"print('@@', code, [m for m in {heavy!r} if m in sys.modules])")
        proc = fresh(probe)
        code, loaded = proc.stdout.rsplit("@@", 1)[1].split(" ", 2)[1:]
        assert code in ("0", "None"), (entry.name, proc.stderr)
        assert loaded.strip() == "[]", f"{entry.name} --help imported {loaded.strip()}"


def test_a_light_command_loads_only_its_own_module():
    slide = REPO / "src" / "slidestream" / "data" / "CMU-1-Small-Region.svs"
    probe = (f"import sys; sys.argv = ['slidestream', 'info', {str(slide)!r}, '--json']\n"
             "from slidestream.cli import main\n"
             "try:\n    main()\nexcept SystemExit as e:\n    pass\n"
             "print('@@', [m for m in sys.modules if m.startswith('slidestream.cli.') and not m.startswith('slidestream.cli._')],"
             " [m for m in ('torch', 'zarr', 'pandas') if m in sys.modules])")
    proc = fresh(probe)
    records, tail = proc.stdout.rsplit("@@", 1)
    assert json.loads(records)[0]["width"] == 2220, proc.stderr
    assert tail.strip() == "['slidestream.cli.info'] []"


def test_a_command_run_through_its_listing_still_runs_for_real():
    """Should the command line be misread, the listing loads the real command and runs it."""
    probe = ("import sys; sys.argv = ['slidestream', 'info', '--help']\n"
             "from slidestream.cli._lazy import build\n"
             "build([]).main(args=sys.argv[1:], prog_name='slidestream')")
    proc = fresh(probe)
    assert proc.returncode == 0, proc.stderr
    assert "--json" in proc.stdout and "--backend" in proc.stdout  # the real command's options


def test_the_requested_command_is_the_first_word_naming_one():
    names = {"info", "tile", "export"}
    assert requested(["--help"], names) is None
    assert requested(["tile", "a.svs", "--out", "info"], names) == "tile"
    assert requested(["export", "h5", "x"], names) == "export"


# Never needed by a classical-tissue, handcrafted extract job: geopandas (with pandas and pyproj)
# only for GeoDataFrames, scipy/skimage only through skimage.filters and skimage.color (the Otsu
# threshold and the stain matrix are computed here instead). pandas writes the run manifest, so it
# may load after the first batch, never before it.
NEVER_IN_EXTRACT = ("geopandas", "pyproj", "scipy", "skimage", "timm", "torchvision")
NOT_BEFORE_FIRST_BATCH = ("pandas", *NEVER_IN_EXTRACT)


@pytest.mark.slow
def test_a_handcrafted_extract_job_imports_only_what_it_runs(tmp_path):
    """A real one-slide ``extract`` (issue 15 §4): the modules present when the encoder is first
    called, and at the end of the job."""
    out = tmp_path / "out"
    probe = ("import sys\n"
             "from slidestream.encoders.encoder import Encoder\n"
             "seen = []\n"
             "call = Encoder.__call__\n"
             "def first(self, tiles):\n"
             "    if not seen:\n"
             f"        seen.append([m for m in {NOT_BEFORE_FIRST_BATCH!r} if m in sys.modules])\n"
             "    return call(self, tiles)\n"
             "Encoder.__call__ = first\n"
             f"sys.argv = ['slidestream', 'extract', {str(CMU)!r}, '--out', {str(out)!r}, '--encoder', 'handcrafted']\n"
             "from slidestream.cli import main\n"
             "try:\n    main()\nexcept SystemExit as e:\n    code = e.code\n"
             f"print('@@', code, seen, [m for m in {NEVER_IN_EXTRACT!r} if m in sys.modules])")
    proc = fresh(probe)
    assert "@@" in proc.stdout, proc.stderr[-2000:]
    code, rest = proc.stdout.rsplit("@@", 1)[1].strip().split(" ", 1)
    assert code in ("0", "None"), proc.stderr[-2000:]
    assert rest == "[[]] []", f"imported before the first batch / by the end: {rest}"
    assert (out / "CMU-1-Small-Region.zarr").is_dir() and (out / "manifest.csv").exists()
