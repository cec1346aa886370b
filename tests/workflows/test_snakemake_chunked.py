"""``--config slides_per_job=N``: the front stages of N slides in one job (one process start-up),
with the same per-slide markers and the same stores as per-slide jobs (issue 15 §4)."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.conftest import CMU, KIDNEY, PEN
from tests.workflows.helpers import (
    assert_same_stores,
    job_counts,
    leftovers,
    reference_run,
    write_config,
)
from tests.workflows.test_snakemake_local import snakemake

FRONT = ("tissue.json", "tiles.json", "features-handcrafted.json")


@pytest.mark.slow
def test_chunks_plan_one_job_per_n_slides_and_keep_per_slide_markers(tmp_path):
    config = write_config(tmp_path, [CMU, KIDNEY, PEN], tmp_path / "out")
    result = snakemake(tmp_path, config, "slides_per_job=2", "--dry-run")
    assert result.returncode == 0, result.stdout + result.stderr
    assert job_counts(result.stdout) == {"slides_0": 1, "slides_1": 1, "all": 1, "total": 3}
    log = result.stdout
    assert f"--stage tissue --stage tiles --stage features --slide={CMU.stem} --slide={KIDNEY.stem} >" in log
    assert f"--stage tissue --stage tiles --stage features --slide={PEN.stem} >" in log
    for sid in (CMU.stem, KIDNEY.stem, PEN.stem):   # every slide's markers are outputs
        for name in FRONT:
            assert str(tmp_path / "out" / ".done" / sid / name) in log


@pytest.mark.slow
def test_a_mean_slide_embedding_joins_the_chunk_and_panther_does_not(tmp_path):
    mean = write_config(tmp_path, [CMU, KIDNEY], tmp_path / "out", name="mean.yaml", slide_embedding={"method": "mean"})
    result = snakemake(tmp_path, mean, "slides_per_job=2", "--dry-run")
    assert result.returncode == 0, result.stdout + result.stderr
    assert job_counts(result.stdout) == {"slides_0": 1, "all": 1, "total": 2}
    assert "--stage features --stage slide_embedding" in result.stdout
    panther = write_config(tmp_path, [CMU, KIDNEY], tmp_path / "out", name="panther.yaml",
                           slide_embedding={"method": "panther", "panther": {"k": 2}})
    result = snakemake(tmp_path, panther, "slides_per_job=2", "--dry-run")
    assert result.returncode == 0, result.stdout + result.stderr
    assert job_counts(result.stdout) == {"slides_0": 1, "prototypes": 1, "slide_embedding": 2, "all": 1, "total": 5}


@pytest.mark.slow
@pytest.mark.parametrize("bad", ["0", "1.5"])
def test_a_bad_chunk_size_is_one_clear_error(tmp_path, bad):
    config = write_config(tmp_path, [CMU], tmp_path / "out")
    result = snakemake(tmp_path, config, f"slides_per_job={bad}", "--dry-run")
    assert result.returncode != 0
    assert "slides_per_job must be a whole number >= 1" in result.stdout + result.stderr


@pytest.mark.slow
def test_a_chunk_job_writes_what_per_slide_jobs_write(tmp_path_factory, tmp_path):
    out = tmp_path / "out"
    config = write_config(tmp_path, [CMU, KIDNEY], out)
    result = snakemake(tmp_path, config, "slides_per_job=2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert job_counts(result.stdout + result.stderr) == {"slides_0": 1, "all": 1, "total": 2}   # one process, two slides
    assert_same_stores(out, reference_run(tmp_path_factory), [CMU.stem, KIDNEY.stem])
    assert leftovers(out) == []
    manifest = pd.read_csv(out / "manifest.csv")
    assert len(manifest) == 6 and (manifest["status"] == "ok").all()
    assert (out / "logs" / "slides_0.log").exists()
    # Snakemake's "done" is still slidestream's, per slide: a lost marker reruns its chunk only
    again = snakemake(tmp_path, config, "slides_per_job=2", "--dry-run")
    assert "Nothing to be done" in again.stdout + again.stderr
    (out / ".done" / KIDNEY.stem / "features-handcrafted.json").unlink()
    rerun = snakemake(tmp_path, config, "slides_per_job=2")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert (out / ".done" / KIDNEY.stem / "features-handcrafted.json").exists()
    manifest = pd.read_csv(out / "manifest.csv")
    assert set(manifest["status"]) <= {"ok", "skipped"} and len(manifest) == 6   # nothing recomputed


