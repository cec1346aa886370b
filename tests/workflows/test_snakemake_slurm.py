"""A dry run with the SLURM profile builds the expected job graph (no cluster needed for ``-n``)."""

from __future__ import annotations

import re
import subprocess
from types import SimpleNamespace

import pytest
import yaml

from tests.conftest import ALL_SLIDES, REPO
from tests.workflows.helpers import job_counts, subprocess_env, write_config

SNAKEFILE = REPO / "workflows" / "Snakefile"
SLURM = REPO / "workflows" / "profiles" / "slurm"
IDS = sorted(p.stem for p in ALL_SLIDES)


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("slurm")
    (folder / "labels.csv").write_text("slide_id,patient_id,label\n")
    config = write_config(folder, ALL_SLIDES, folder / "out",
                          features={"encoder": "handcrafted", "device": "cuda", "batch_size": 256, "workers": 8},
                          slide_embedding={"method": "panther", "panther": {"k": 8}},
                          mil={"labels": "labels.csv", "train": {"folds": 3}})
    result = subprocess.run(["snakemake", "-n", "-s", str(SNAKEFILE), "--profile", str(SLURM), "--directory", str(folder),
                             "--config", f"run_config={config}"], env=subprocess_env(), capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return folder, config, result.stdout


def _jobs(log: str) -> list[dict[str, str]]:
    """Each job block of the dry run: rule, input, output, resources, shell command, group."""
    jobs, group = [], None
    for block in re.split(r"\n(?=\s*\[[^\]]+\]\s*\n)|\n(?=\[[^\]]+\] Group job)", log):
        if match := re.search(r"Group job (\S+)", block):
            group = match.group(1)
        if match := re.search(r"^\s*(?:local)?rule (\w+):", block, re.M):
            job = {"rule": match.group(1), "group": group if block.startswith("    ") else None}
            for key in ("input", "output", "resources", "Shell command"):
                if found := re.search(rf"^\s*{key}: (.*)$", block, re.M):
                    job[key] = found.group(1)
            jobs.append(job)
    return jobs


def test_the_job_graph_has_one_job_per_stage_per_slide_and_the_cohort_jobs(dry_run):
    _, _, log = dry_run
    n = len(ALL_SLIDES)
    assert job_counts(log) == {"tissue": n, "tiles": n, "features": n, "slide_embedding": n, "prototypes": 1,
                               "mil": 1, "all": 1, "total": 4 * n + 3}
    jobs = _jobs(log)
    assert len(jobs) == 4 * n + 3
    prototypes = next(j for j in jobs if j["rule"] == "prototypes")
    assert sorted(re.findall(r"\.done/([^/]+)/features-handcrafted\.json", prototypes["input"])) == IDS
    mil = next(j for j in jobs if j["rule"] == "mil")
    assert mil["input"].count("features-handcrafted.json") == n and "labels.csv" in mil["input"]
    for job in (j for j in jobs if j["rule"] == "slide_embedding"):
        assert "panther-handcrafted-k8.npz" in job["input"] and "features-handcrafted.json" in job["input"]
    for job in (j for j in jobs if j["rule"] == "tiles"):
        assert job["input"].endswith("tissue.json")


def test_resources_gpus_and_grouping(dry_run):
    _, config, log = dry_run
    jobs = _jobs(log)
    for job in jobs:
        if job["rule"] in ("tissue", "tiles", "slide_embedding"):       # CPU-only, grouped many per job
            assert "slurm_partition=cpu" in job["resources"] and "gres" not in job["resources"]
            assert job["group"] == ("embed" if job["rule"] == "slide_embedding" else "cpu_front")
        if job["rule"] in ("features", "mil"):                           # one GPU via --gres, not grouped
            assert "slurm_partition=gpu" in job["resources"] and "gres=gpu:1" in job["resources"]
            assert "gpu=0" in job["resources"] and job["group"] is None
        if job["rule"] == "features":
            assert re.search(r"mem_mb=16000\b", job["resources"]) and "cpus_per_task=8" in job["resources"]
        if job["rule"] != "all":
            assert job["Shell command"].startswith(f"slidestream run {config} --no-progress --stage {job['rule']}")


def test_profile_values_pass_the_slurm_plugin_checks():
    from snakemake_executor_plugin_slurm.utils import set_gres_string
    from snakemake_executor_plugin_slurm.validation import validate_slurm_extra

    profile = yaml.safe_load((SLURM / "config.yaml").read_text())
    assert profile["executor"] == "slurm" and profile["retries"] >= 1
    assert profile["default-resources"]["slurm_partition"] and profile["group-components"]["cpu_front"] > 1

    class Resources(dict):
        def __getattr__(self, key):
            try:
                return self[key]
            except KeyError:
                raise AttributeError(key) from None

    for rule, resources in profile["set-resources"].items():
        values = {k: (yaml.safe_load(v) if isinstance(v, str) and v.startswith("'") else v) for k, v in resources.items()}
        job = SimpleNamespace(resources=Resources(values), name=rule)
        validate_slurm_extra(job)                      # no --gres/--mem/... smuggled into slurm_extra
        if "gres" in values:
            assert set_gres_string(job).strip() == f"--gres={values['gres']}"   # and no second --gpus
    with pytest.raises(Exception, match="not allowed in the 'slurm_extra'"):   # the check is real
        validate_slurm_extra(SimpleNamespace(resources=Resources(slurm_extra="--gres=gpu:1")))
