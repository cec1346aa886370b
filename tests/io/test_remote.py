"""Remote slides over HTTP (fsspec + tiffslide range requests), against a local server."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from slidestream.cli import app
from slidestream.errors import SlideOpenError
from slidestream.io import open_slide
from slidestream.io.fingerprint import slide_fingerprint
from slidestream.io.remote import remote_url
from slidestream.store import SlideStore, load_features
from tests.conftest import CMU, SLIDES_DIR
from tests.io.range_server import serve

pytest.importorskip("aiohttp")


@pytest.fixture(scope="module")
def base_url():
    with serve(SLIDES_DIR.parent) as url:
        yield url


def test_a_url_survives_being_squeezed_through_path():
    from pathlib import Path

    assert remote_url(Path("https://host/a/b.svs")) == "https://host/a/b.svs"
    assert remote_url("s3://bucket/k.svs") == "s3://bucket/k.svs"
    assert remote_url("/data/slides/x.svs") is None and remote_url("C:/x.svs") is None


def test_remote_slide_reads_the_same_pixels_and_fingerprint_as_the_local_file(base_url):
    url = f"{base_url}/slides/{CMU.name}"
    with open_slide(url) as remote, open_slide(CMU, backend="tiffslide") as local:
        assert remote.backend_name == "tiffslide"
        assert remote.info()["path"] == url and remote.info()["size_bytes"] == CMU.stat().st_size
        assert remote.mpp == local.mpp and remote.level_dimensions == local.level_dimensions
        for loc in [(0, 0), (700, 1200), (2000, 2800)]:
            np.testing.assert_array_equal(remote.read_region(loc, 0, (256, 200)), local.read_region(loc, 0, (256, 200)))
    assert slide_fingerprint(url) == slide_fingerprint(CMU)


def test_missing_objects_packages_and_local_only_backends_are_clear_errors(base_url):
    with pytest.raises(SlideOpenError, match="does not exist"):
        open_slide(f"{base_url}/slides/nothere.svs")
    with pytest.raises(SlideOpenError, match="local files only"):
        open_slide(f"{base_url}/slides/{CMU.name}", backend="openslide")
    try:
        import s3fs  # noqa: F401
    except ImportError:
        with pytest.raises(SlideOpenError, match=r"needs the optional package s3fs \(pip install s3fs\)"):
            open_slide("s3://some-bucket/slide.svs")


@pytest.mark.slow
def test_cli_info_and_extract_on_a_remote_slide_write_local_stores(base_url, tmp_path):
    url = f"{base_url}/slides/{CMU.name}"
    runner = CliRunner()
    result = runner.invoke(app, ["info", url, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout[result.stdout.index("["):])[0]["path"] == url
    out = tmp_path / "out"
    result = runner.invoke(app, ["extract", url, "--out", str(out), "--encoder", "handcrafted", "--mpp", "1.0"])
    assert result.exit_code == 0, result.output
    store = SlideStore.open(out / "CMU-1-Small-Region.zarr")
    assert store.slide_info["path"] == url
    features, coords = load_features(store.path, "handcrafted")
    assert len(features) > 0 and np.isfinite(features).all()
    assert store.node_attrs("features/handcrafted")["reader"] == "backend:tiffslide"
    # the same tiles read from the local file through the same (backend) reader embed identically
    from slidestream.encoders import load_encoder
    from slidestream.extraction import open_tile_reader

    with open_slide(CMU, backend="tiffslide") as local:
        reader = open_tile_reader(local.spec, store.read_tiles().attrs, fast=False, workers=1)
        try:
            assert reader.name == "backend:tiffslide"
            local_features = load_encoder("handcrafted")(reader.read_batch(coords))
        finally:
            reader.close()
    np.testing.assert_allclose(features, local_features, rtol=1e-5, atol=1e-5)
