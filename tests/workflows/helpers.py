"""Shared by the scale-out tests: small fast run configs, a reference run, store comparison.

The reference is one in-process ``slidestream run`` on three real slides at coarse settings
(2 um/px, 56 px tiles, mosaic selection, the built-in handcrafted encoder), made once per test
session and reused by the Snakemake, dask and racing-process tests, which must reproduce it.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from typer.testing import CliRunner

from slidestream.cli import app
from slidestream.store import SlideStore
from tests.conftest import CMU, KIDNEY, PEN, TCGA_JP2K

VENV_BIN = Path(sys.executable).parent
# Slides without mpp metadata get one from the slide list, as users do (see tests/pipeline/test_cli_tiles.py).
LIST_MPP = {CMU.name: None, TCGA_JP2K.name: 0.5, PEN.name: 0.5, KIDNEY.name: 2.0}
REFERENCE_SLIDES = [CMU, KIDNEY, PEN]
STAGE_SETTINGS: dict[str, Any] = {
    "tiling": {"mpp": 2.0, "tile_size": 56},
    "selection": {"method": "mosaic", "fraction": 0.2},
    "features": {"encoder": "handcrafted", "batch_size": 32, "workers": 2},
}


def slide_list(folder: Path, slides: list[Path], name: str = "slides.csv") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows = ["path,mpp"] + [f"{p},{LIST_MPP.get(p.name) or ''}" for p in slides]
    path = folder / name
    path.write_text("\n".join(rows) + "\n")
    return path


def write_config(folder: Path, slides: list[Path] | Path, out: Path, name: str = "run.yaml", **sections: Any) -> Path:
    """A run config in ``folder``: the shared stage settings, overridden/extended by ``sections``."""
    folder.mkdir(parents=True, exist_ok=True)
    slides_value = str(slides) if isinstance(slides, Path) else str(slide_list(folder, slides))
    data = {"slides": [slides_value], "out": str(out), **STAGE_SETTINGS, **sections}
    path = folder / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def run_cli(*args: Any):
    return CliRunner().invoke(app, [str(a) for a in args])


def subprocess_env() -> dict[str, str]:
    """The venv's executables (slidestream, snakemake) first on PATH, for real subprocesses."""
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    return env


_REFERENCE: dict[str, Path] = {}


def reference_run(tmp_path_factory) -> Path:
    """The output folder of the one reference ``slidestream run`` (made on first use)."""
    if "out" not in _REFERENCE:
        folder = tmp_path_factory.mktemp("reference")
        config = write_config(folder, REFERENCE_SLIDES, folder / "out")
        result = run_cli("run", config, "--no-progress")
        assert result.exit_code == 0, result.output
        _REFERENCE["out"] = folder / "out"
    return _REFERENCE["out"]


def copy_reference(tmp_path_factory, dst: Path) -> Path:
    shutil.copytree(reference_run(tmp_path_factory), dst)
    return dst


def snapshot(out: Path, slide_id: str, *, features: bool = True) -> dict[str, Any]:
    """What must be equal between two ways of running: tissue, tiles, selection, features."""
    store = SlideStore.open(out / f"{slide_id}.zarr")
    tiles = store.read_tiles()
    snap: dict[str, Any] = {
        "tissue": store.read_tissue_geojson(),
        "tissue_params": store.node_attrs("tissue")["params"],
        "coords": tiles.coords,
        "tissue_fraction": tiles.tissue_fraction,
        "tiles_params": tiles.attrs["params"],
        "mosaic": store.read_selection("mosaic"),
    }
    if features:
        values, coords, attrs = store.read_features("handcrafted")
        snap["features"] = values
        snap["feature_coords"] = coords
        snap["feature_provenance"] = {k: attrs[k] for k in ("encoder", "weights_sha256", "mpp", "tile_size", "n_tiles", "dtype")}
    return snap


def assert_same_stores(a: Path, b: Path, slide_ids: list[str], *, features: bool = True) -> None:
    for sid in slide_ids:
        sa, sb = snapshot(a, sid, features=features), snapshot(b, sid, features=features)
        assert sa.keys() == sb.keys()
        for key in sa:
            if isinstance(sa[key], np.ndarray):
                assert sa[key].dtype == sb[key].dtype, (sid, key)
                np.testing.assert_array_equal(sa[key], sb[key], err_msg=f"{sid}: {key}")
            else:
                assert sa[key] == sb[key], (sid, key)


def leftovers(out: Path) -> list[Path]:
    """Half-written things that must never survive a run: partial nodes, trash, temp stores, locks."""
    bad = [p for p in out.rglob("*") if p.name.startswith(("_partial-", "_trash-")) or p.name.endswith(".partial")]
    locks = out / ".locks"
    if locks.exists():
        bad += [p for p in locks.rglob("*") if p.is_file()]
    return bad


def job_counts(log: str) -> dict[str, int]:
    """The "Job stats" table of a Snakemake (dry) run: rule -> number of jobs."""
    lines = log.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "Job stats:")
    counts = {}
    for line in lines[start + 3:]:
        parts = line.split()
        if len(parts) < 2 or not parts[1].isdigit():
            break
        counts[parts[0]] = int(parts[1])
    return counts
