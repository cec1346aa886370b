"""The SpatialData export opens in spatialdata and LazySlide's wsidata with its content.

spatialdata pins pandas<3 and dask<2026.1.2 (and anndata, which it needs, pins pandas<3), so it
cannot live in the main test environment. The export and the reading run in the interpreter
named by ``SLIDESTREAM_INTEROP_PYTHON`` (``.ci/run`` builds ``.venv-interop`` with
``pip install -e '.[interop]'`` and sets it, so in CI these tests run and fail when the tools are
missing), or in this interpreter when it has spatialdata and wsidata; elsewhere they skip.

The store comes from a real ``extract`` of the CMU slide in this (main) environment; the export
is the real CLI in the interop interpreter; ``_spatialdata_reader.py`` opens it with
``spatialdata.read_zarr`` and ``wsidata.open_wsi(slide, store=...)`` and dumps what those tools
see, which is compared here with the store.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from shapely.geometry import Polygon, shape

import slidestream as ss
from slidestream.store import SlideStore, load_features
from tests.conftest import CMU, REPO
from tests.store.conftest import make_store

READER = Path(__file__).with_name("_spatialdata_reader.py")
INTEROP_ENV = "SLIDESTREAM_INTEROP_PYTHON"


def interop_python() -> str | None:
    """The interpreter that has spatialdata and wsidata, or None (then the tests skip)."""
    named = os.environ.get(INTEROP_ENV)
    if named:
        if not Path(named).is_file():
            pytest.fail(f"{INTEROP_ENV}={named} does not exist (.ci/run builds it with scripts/interop-venv.sh)")
        return named
    if importlib.util.find_spec("spatialdata") and importlib.util.find_spec("wsidata"):
        return sys.executable
    return None


def run_in(python: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}  # this checkout's code, whatever is installed there
    return subprocess.run([python, *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=300)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """CMU extracted here (handcrafted), plus a slide without tissue, exported by the interop env."""
    python = interop_python()
    if python is None:
        pytest.skip(f"spatialdata/wsidata not installed here and {INTEROP_ENV} not set")
    root = tmp_path_factory.mktemp("spatialdata")
    ss.extract_features(CMU, encoder="handcrafted", out=root / "out", show_progress=False)
    make_store(root / "out", "blank", 0)
    done = run_in(python, "-m", "slidestream.cli", "export", "spatialdata", str(root / "out"),
                  "--dest", str(root / "sd"), "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)["summary"]
    assert (summary["ok"], summary["skipped"], summary["failed"]) == (1, 1, 0)  # blank: nothing to export
    export = root / "sd" / f"{CMU.stem}.zarr"
    dump = run_in(python, str(READER), str(export), str(CMU), "handcrafted", str(root / "seen.npz"))
    assert dump.returncode == 0, dump.stderr[-3000:]
    with np.load(root / "seen.npz") as seen:
        arrays = {k: seen[k] for k in seen.files}
    return SlideStore.open(root / "out" / f"{CMU.stem}.zarr"), json.loads(str(arrays.pop("meta"))), arrays


@pytest.mark.slow  # one extract + two interop interpreter starts (~35 s), shared by the module
def test_the_blank_slide_is_not_exported(exported):
    store, _, _ = exported
    assert sorted(p.name for p in (store.path.parent.parent / "sd").iterdir()) == [f"{CMU.stem}.zarr"]


@pytest.mark.slow  # one extract + two interop interpreter starts (~35 s), shared by the module
def test_spatialdata_reads_tissues_tiles_and_the_feature_table(exported):
    store, meta, seen = exported
    features, coords = load_features(store.path, "handcrafted")
    footprint = store.read_tiles().attrs["level0_size"]
    assert meta["shapes"] == ["tiles", "tissues"] and meta["tables"] == ["handcrafted_tiles"]
    assert meta["identity_global"]  # level-0 pixels, like the slide
    np.testing.assert_array_equal(seen["tile_xy"], coords)
    np.testing.assert_array_equal(seen["tile_bounds"], np.column_stack([coords, coords + footprint]))
    np.testing.assert_array_equal(seen["tile_ids"], np.arange(len(coords)))
    assert (meta["region"], meta["region_key"], meta["instance_key"]) == ("tiles", "library_id", "tile_id")
    np.testing.assert_array_equal(seen["table_tile_ids"], np.arange(len(coords)))
    np.testing.assert_allclose(seen["table_x"], features, rtol=1e-6)


@pytest.mark.slow  # one extract + two interop interpreter starts (~35 s), shared by the module
def test_wsidata_opens_it_with_the_slide(exported):
    store, meta, seen = exported
    features, coords = load_features(store.path, "handcrafted")
    pieces = [shape(f["geometry"]) for f in store.read_tissue_geojson()["features"]]
    assert meta["wsi_shapes"] == ["tiles", "tissues"] and meta["wsi_tables"] == ["handcrafted_tiles"]
    assert meta["slide_shape"] == [store.slide_info["height"], store.slide_info["width"]]
    assert meta["n_tissue"] == len(pieces) > 0 and meta["n_tiles"] == len(coords) > 0
    # wsidata's tissue contours: each piece's outline and its holes (the export keeps both)
    np.testing.assert_allclose(seen["tissue_outer_areas"], [Polygon(p.exterior).area for p in pieces])
    np.testing.assert_allclose(seen["tissue_hole_areas"], [sum(Polygon(h).area for h in p.interiors) for p in pieces])
    # wsidata's own feature accessor: features in tile order, with the tile corners as obsm["spatial"]
    np.testing.assert_allclose(seen["fetched_x"], features, rtol=1e-6)
    np.testing.assert_array_equal(seen["fetched_xy"], coords)
    tiles = store.read_tiles().attrs
    spec = meta["tile_spec"]
    assert (spec["width"], spec["height"], spec["mpp"]) == (224, 224, pytest.approx(0.5))
    assert spec["base_width"] == spec["base_stride_width"] == tiles["level0_size"][0]  # wsidata's level-0 footprint
    assert spec["tissue_name"] == "tissues"
    assert meta["first_tile_shape"] == [224, 224, 3]  # wsidata reads tiles of the declared size from the slide


def test_without_spatialdata_the_command_says_what_to_install(tmp_path):
    if importlib.util.find_spec("spatialdata"):
        pytest.skip("spatialdata is installed here")
    from typer.testing import CliRunner

    from slidestream.cli import app

    make_store(tmp_path / "out", "slide-a", 3)
    result = CliRunner().invoke(app, ["export", "spatialdata", str(tmp_path / "out"), "--dest", str(tmp_path / "sd")])
    assert result.exit_code == 2
    assert "pip install 'slidestream[spatialdata]'" in result.stderr and not (tmp_path / "sd").exists()
