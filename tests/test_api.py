"""The public Python API mirrors the CLI: a batch of slides in, stores and outcomes out."""

from __future__ import annotations

import numpy as np

import slidestream as ss
from slidestream.data import sample_slide
from tests.conftest import CMU


def test_extract_features_api_reports_failures_and_writes_stores(tmp_path):
    bad = tmp_path / "bad.svs"
    bad.write_bytes(b"not a slide")
    result = ss.extract_features([sample_slide(), bad], encoder="handcrafted", out=tmp_path / "out",
                                 show_progress=False, batch_size=16)
    assert result.summary_line() == "1 ok, 0 skipped, 1 failed"
    assert result.failed[0].path == bad and "not a TIFF file" in result.failed[0].reason
    features, coords = ss.load_features(tmp_path / "out" / "CMU-1-Small-Region.zarr", "handcrafted")
    assert features.shape[0] == coords.shape[0] > 0
    manifest = (tmp_path / "out" / "manifest.csv").read_text()
    assert "bad.svs" in manifest and "failed" in manifest


def test_stage_functions_compose_without_the_cli():
    with ss.open_slide(CMU) as slide:
        tissue = ss.detect_tissue(slide)
        grid = ss.tile_slide(slide, tissue.geometry, mpp=0.5, tile_size=224)
        picks = ss.select_tiles("mosaic", grid.coords, extent0=grid.level0_size, image=tissue.image,
                                level0_size=slide.dimensions, count=5)
    assert len(grid) > 0 and len(picks) == 5
    assert np.isin(picks, np.arange(len(grid))).all()


def test_import_is_light():
    import subprocess
    import sys

    code = "import sys, slidestream; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"  # torch loads only when an encoder is needed
