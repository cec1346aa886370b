"""Tissue + tiling as dask tasks (a given scheduler, or a LocalCluster started by the run): same stores."""

from __future__ import annotations

import logging
import shutil

import pandas as pd
import pytest

from slidestream.pipeline.config import load_config
from slidestream.pipeline.run import run_pipeline
from tests.conftest import TCGA_JP2K
from tests.io.test_bad_input import make_truncated
from tests.workflows.helpers import (
    REFERENCE_SLIDES,
    assert_same_stores,
    reference_run,
    slide_list,
    write_config,
)

distributed = pytest.importorskip("distributed")
IDS = [p.stem for p in REFERENCE_SLIDES]


@pytest.mark.slow
def test_dask_front_stages_match_the_serial_run(tmp_path_factory, tmp_path):
    folder = tmp_path / "in"
    slides = slide_list(folder, REFERENCE_SLIDES)
    broken = make_truncated(TCGA_JP2K, folder / "broken.svs")
    slides.write_text(slides.read_text() + f"{broken},0.5\n")
    out = tmp_path / "out"
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=logging.ERROR) as cluster:
        config = write_config(tmp_path, slides, out, dask={"enabled": True, "scheduler": cluster.scheduler_address})
        report = run_pipeline(load_config(config), stages=["tissue", "tiles"], show_progress=False)
    assert report.stages["tissue"].summary_line() == "3 ok, 0 skipped, 1 failed"
    assert report.stages["tiles"].summary_line() == "3 ok, 0 skipped, 1 failed"
    failed = report.stages["tiles"].failed[0]
    assert failed.path == broken and failed.reason == "not run: tissue failed"
    assert "truncated" in report.stages["tissue"].failed[0].reason
    assert report.exit_code == 1
    assert_same_stores(out, reference_run(tmp_path_factory), IDS, features=False)
    for sid in IDS:
        assert (out / ".done" / sid / "tiles.json").exists()
    manifest = pd.read_csv(out / "manifest.csv", keep_default_na=False)
    assert len(manifest) == 8 and (manifest[manifest["status"] == "ok"]["seconds"] > 0).all()

    # A LocalCluster the run starts itself; everything is done, so everything is skipped, and the
    # rest of the pipeline (features, serial) continues from the dask-made tiles.
    shutil.rmtree(out / "broken.zarr", ignore_errors=True)
    slides.write_text("\n".join(slides.read_text().splitlines()[:-1]) + "\n")
    own = write_config(tmp_path, slides, out, name="own.yaml", dask={"enabled": True, "n_workers": 1})
    again = run_pipeline(load_config(own), show_progress=False)
    assert again.stages["tissue"].summary_line() == "0 ok, 3 skipped, 0 failed"
    assert again.stages["features"].summary_line() == "3 ok, 0 skipped, 0 failed"
    assert_same_stores(out, reference_run(tmp_path_factory), IDS)
