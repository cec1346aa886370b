"""Snakemake really runs the workflow on real slides (local profile) and writes the stores
``slidestream run`` writes; both agree on what is done."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import CMU, KIDNEY, REPO
from tests.workflows.helpers import (
    REFERENCE_SLIDES,
    assert_same_stores,
    copy_reference,
    job_counts,
    leftovers,
    reference_run,
    subprocess_env,
    write_config,
)

SNAKEFILE = REPO / "workflows" / "Snakefile"
LOCAL = REPO / "workflows" / "profiles" / "local"
SLIDES = [CMU, KIDNEY]   # openslide + metadata mpp, tiffslide-only + slide-list mpp


def snakemake(workdir: Path, config: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(["snakemake", "-s", str(SNAKEFILE), "--profile", str(LOCAL), "--cores", "1",
                           "--directory", str(workdir), "--config", f"run_config={config}", *extra],
                          env=subprocess_env(), capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_snakemake_local_run_equals_slidestream_run(tmp_path_factory, tmp_path):
    out = tmp_path / "out"
    config = write_config(tmp_path, SLIDES, out)
    result = snakemake(tmp_path, config)
    assert result.returncode == 0, result.stdout + result.stderr
    log = result.stdout + result.stderr
    for rule in ("tissue", "tiles", "features"):
        assert f"rule {rule}:" in log
        for sid in (p.stem for p in SLIDES):
            assert f"slidestream run {config} --no-progress --stage {rule} --slide={sid}" in log
    assert_same_stores(out, reference_run(tmp_path_factory), [p.stem for p in SLIDES])
    assert leftovers(out) == []
    manifest = pd.read_csv(out / "manifest.csv")
    assert len(manifest) == 6 and (manifest["status"] == "ok").all()   # one job per stage per slide
    assert (out / "logs" / f"{CMU.stem}.features.log").exists()

    again = snakemake(tmp_path, config, "--dry-run")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr


@pytest.mark.slow
def test_snakemake_finds_nothing_to_do_in_a_slidestream_run_folder(tmp_path_factory, tmp_path):
    out = copy_reference(tmp_path_factory, tmp_path / "out")
    config = write_config(tmp_path, REFERENCE_SLIDES, out)
    result = snakemake(tmp_path, config, "--dry-run")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Nothing to be done" in result.stdout + result.stderr
    (out / ".done" / KIDNEY.stem / "features-handcrafted.json").unlink()   # a marker Snakemake lost
    result = snakemake(tmp_path, config, "--dry-run")
    assert result.returncode == 0, result.stdout + result.stderr
    assert job_counts(result.stdout) == {"features": 1, "all": 1, "total": 2}   # only the lost stage reruns


@pytest.mark.slow
def test_a_failing_workflow_still_writes_the_report(tmp_path):
    """The report is most needed when a slide failed: Snakemake's onerror writes it too."""
    from tests.io.test_bad_input import make_truncated

    out = tmp_path / "out"
    bad = make_truncated(CMU, tmp_path / "broken.svs")
    config = write_config(tmp_path, [bad], out)
    result = snakemake(tmp_path, config)
    assert result.returncode != 0
    page = out / "report" / "index.html"
    assert page.exists(), result.stdout + result.stderr
    assert "broken" in page.read_text()
