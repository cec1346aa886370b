"""Slide files named like attacks (shell metacharacters, quotes, markup, a leading dash, unicode)
are plain names to slidestream: processed correctly by the CLI, ``run``, dask and the Snakemake
workflow, printed and reported literally, and nothing is ever executed (no file named PWNED)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

from slidestream.pipeline.manifest import read_manifest
from slidestream.store import SlideStore
from tests.conftest import CMU, REPO
from tests.faults.conftest import cli
from tests.workflows.helpers import subprocess_env

SNAKEFILE = REPO / "workflows" / "Snakefile"
LOCAL = REPO / "workflows" / "profiles" / "local"
TILE_ARGS = ["--mpp", "2.0", "--tile-size", "112"]

HOSTILE = [
    "sp ace", "it's", 'say "hi"', "$(touch PWNED)", "`touch PWNED`", "a;touch PWNED;b", "a && touch PWNED &",
    "ünïcødé-切片", "-leading-dash", "--out=elsewhere", "[bold]markup[", "<img src=x onerror=alert(1)>", "{brace}",
]
# The workflow takes every name but braces (Snakemake wildcards). Real runs use two names that pack
# the shell-dangerous characters (substitutions, separators, quotes, a leading dash):
SHELLISH = ["$(touch PWNED)`touch PWNED`;a&b", "-dash it's \"q\""]


def hostile_folder(folder: Path, names: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / f"{name}.svs").symlink_to(CMU)
    return folder


def assert_no_pwned(*roots: Path) -> None:
    for root in roots:
        assert not [p for p in root.rglob("PWNED*")], f"a command ran: PWNED in {root}"
    assert not Path("PWNED").exists() and not (REPO / "PWNED").exists()


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> np.ndarray:
    folder = tmp_path_factory.mktemp("clean")
    (folder / "cmu.svs").symlink_to(CMU)
    result = cli("tile", folder / "cmu.svs", "--out", folder / "out", *TILE_ARGS)
    assert result.exit_code == 0, result.output
    return SlideStore.open(folder / "out" / "cmu.zarr").read_tiles().coords


def test_the_cli_processes_hostile_names_literally(tmp_path, clean, monkeypatch):
    monkeypatch.chdir(tmp_path)
    slides = hostile_folder(tmp_path / "in", HOSTILE)
    out = tmp_path / "out"
    result = cli("tile", slides, "--out", out, *TILE_ARGS)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    assert f"{len(HOSTILE)} ok, 0 skipped, 0 failed" in " ".join(result.output.split())
    for name in HOSTILE:
        assert name in result.output                      # printed as is (markup is not interpreted)
        np.testing.assert_array_equal(SlideStore.open(out / f"{name}.zarr").read_tiles().coords, clean)
        assert (out / f"{name}.tiles.png").exists() and (out / f"{name}.geojson").exists()
    manifest = read_manifest(out)
    assert sorted(manifest["slide_id"]) == sorted(HOSTILE) and set(manifest["status"]) == {"ok"}
    page = (out / "report" / "index.html").read_text()
    assert "<img src=x onerror" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert_no_pwned(tmp_path)


def test_slide_ids_that_would_escape_the_output_folder_fail_as_rows(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "...svs").symlink_to(CMU)        # id "..": .done/../ would leave the marker folder
    (folder / "good.svs").symlink_to(CMU)
    out = tmp_path / "out"
    result = cli("tissue", folder, "--out", out)
    assert result.exit_code == 1, result.output
    text = " ".join(result.output.split())
    assert "1 ok, 0 skipped, 1 failed" in text
    assert "slide id '..' cannot name an output file" in text
    assert not (tmp_path / ".zarr").exists() and sorted(p.name for p in out.glob("*.zarr")) == ["good.zarr"]


def _config(folder: Path, slides: Path, out: Path, **extra) -> Path:
    data = {"slides": [str(slides)], "out": str(out), "tiling": {"mpp": 2.0, "tile_size": 112},
            "features": {"encoder": "handcrafted", "batch_size": 32, "workers": 1}, **extra}
    path = folder / "run.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path


@pytest.mark.slow
def test_run_processes_hostile_names(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    slides = hostile_folder(tmp_path / "in", SHELLISH)
    out = tmp_path / "out"
    result = cli("run", _config(tmp_path, slides, out), "--no-progress")
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    manifest = read_manifest(out)
    assert len(manifest) == 3 * len(SHELLISH) and set(manifest["status"]) == {"ok"}
    first = SlideStore.open(out / f"{SHELLISH[0]}.zarr").read_features("handcrafted")[0]
    for name in SHELLISH:
        assert (out / ".done" / name / "features-handcrafted.json").exists()
        np.testing.assert_array_equal(SlideStore.open(out / f"{name}.zarr").read_features("handcrafted")[0], first)
    assert_no_pwned(tmp_path)


@pytest.mark.slow
def test_dask_processes_hostile_names(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    names = SHELLISH
    slides = hostile_folder(tmp_path / "in", names)
    out = tmp_path / "out"
    config = _config(tmp_path, slides, out, features=None, dask={"enabled": True, "n_workers": 1})
    result = cli("run", config, "--no-progress")
    assert result.exit_code == 0, result.output
    for name in names:
        assert SlideStore.open(out / f"{name}.zarr").has("tiles")
    assert_no_pwned(tmp_path)


def snakemake(workdir: Path, config: Path, *extra: str) -> subprocess.CompletedProcess:
    env = subprocess_env()   # this checkout's slidestream, in the Snakefile and in every job
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), *filter(None, [env.get("PYTHONPATH")])])
    return subprocess.run(["snakemake", "-s", str(SNAKEFILE), "--profile", str(LOCAL), "--cores", "1",
                           "--directory", str(workdir), "--config", f"run_config={config}", *extra],
                          env=env, capture_output=True, text=True, timeout=600, cwd=workdir)


def test_snakemake_quotes_every_hostile_name(tmp_path):
    names = [n for n in HOSTILE if "{" not in n]
    slides = hostile_folder(tmp_path / "in", names)
    config = _config(tmp_path, slides, tmp_path / "out", features=None)
    result = snakemake(tmp_path, config, "--dry-run", "--printshellcmds")
    log = result.stdout + result.stderr
    assert result.returncode == 0, log
    for name in names:   # each job's command line passes the id as one quoted word
        assert f"--slide={_q(name)} > " in log, name
    assert_no_pwned(tmp_path)


@pytest.mark.slow
def test_snakemake_really_runs_hostile_names(tmp_path):
    names = SHELLISH
    slides = hostile_folder(tmp_path / "in", names)
    out = tmp_path / "out"
    config = _config(tmp_path, slides, out, features=None)
    result = snakemake(tmp_path, config)
    assert result.returncode == 0, result.stdout + result.stderr
    for name in names:
        assert (out / ".done" / name / "tiles.json").exists()
        assert (out / "logs" / f"{name}.tiles.log").exists()
    assert_no_pwned(tmp_path)


def _q(text: str) -> str:
    import shlex

    return shlex.quote(text)


def test_leading_dash_ids_reach_run_as_values(tmp_path, monkeypatch):
    """``--slide=-x`` (what the workflow passes) selects slide ``-x``; nothing parses it as an option."""
    monkeypatch.chdir(tmp_path)
    slides = hostile_folder(tmp_path / "in", ["-x", "--out=elsewhere"])
    out = tmp_path / "out"
    result = cli("run", _config(tmp_path, slides, out, features=None), "--no-progress", "--stage", "tissue",
                 "--slide=--out=elsewhere")
    assert result.exit_code == 0, result.output
    assert SlideStore.open(out / "--out=elsewhere.zarr").has("tissue")
    assert not (out / "-x.zarr").exists() and not (tmp_path / "elsewhere").exists()
    assert os.listdir(tmp_path / "in")


def test_snakemake_names_a_braced_slide_id_instead_of_failing_in_the_dag(tmp_path):
    slides = hostile_folder(tmp_path / "in", ["{brace}"])
    result = snakemake(tmp_path, _config(tmp_path, slides, tmp_path / "out", features=None), "--dry-run")
    log = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0
    assert "slide id '{brace}'" in log and "contains braces, which Snakemake reads as wildcards" in log
