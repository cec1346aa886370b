"""``slidestream tissue --method hest|grandqc`` and ``run`` with ``tissue.method``: outputs, provenance,
reruns, and the clear failure when the weights are not on this machine."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from slidestream.cli import app
from slidestream.pipeline.batch import Skip
from slidestream.pipeline.config import config_from_dict
from slidestream.pipeline.stages import SlideSource, run_tissue
from slidestream.store import SlideStore
from slidestream.tissue import TissueParams
from slidestream.tissue.params import RUNTIME_FIELDS
from tests.conftest import CMU

pytest.importorskip("segmentation_models_pytorch")


def run(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture
def no_weights(tmp_path, monkeypatch):
    monkeypatch.delenv("SLIDESTREAM_WEIGHTS", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))


def test_missing_weights_fail_once_and_say_where_they_come_from(tmp_path, no_weights):
    out = tmp_path / "out"
    result = run("tissue", CMU, "--out", out, "--method", "hest")
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert "no local weights (deeplabv3_seg_v4.ckpt)" in text and "huggingface.co/MahmoodLab/hest-tissue-seg" in text
    assert not out.exists()  # nothing was started
    artifacts = run("tissue", CMU, "--out", out, "--exclude-artifacts", "fold,pen")
    assert artifacts.exit_code == 2 and "GrandQC_MPP1_state_dict.pth" in " ".join(artifacts.output.split())


def test_bad_choices_are_one_line_errors(tmp_path):
    combine = run("tissue", CMU, "--out", tmp_path, "--combine", "union")
    assert combine.exit_code == 2 and "combine needs a deep method" in combine.output
    artifact = run("tissue", CMU, "--out", tmp_path, "--method", "grandqc", "--exclude-artifacts", "folds", "--random-init")
    assert artifact.exit_code == 2 and "exclude_artifacts" in artifact.output


@pytest.mark.slow
def test_grandqc_writes_the_same_outputs_with_provenance(tmp_path):
    result = run("tissue", CMU, "--out", tmp_path, "--method", "grandqc", "--random-init", "--batch-size", "2")
    assert result.exit_code == 0, result.output
    sid = CMU.stem
    assert (tmp_path / f"{sid}.tissue.png").exists()
    collection = json.loads((tmp_path / f"{sid}.geojson").read_text())
    assert collection["type"] == "FeatureCollection"
    node = SlideStore.open(tmp_path / f"{sid}.zarr").node_attrs("tissue")
    assert node["params"]["method"] == "grandqc" and node["summary"]["method"] == "grandqc"
    model = node["provenance"]["tissue_model"]
    assert model["weights_sha256"] == "random-init" and model["model_mpp"] == 10.0 and model["precision"] == "float32"
    assert not RUNTIME_FIELDS & node["params"].keys()  # where it ran is not what it computed
    again = run("tissue", CMU, "--out", tmp_path, "--method", "grandqc", "--random-init", "--batch-size", "4")
    assert again.exit_code == 0 and "skipped" in again.output  # batch size does not change the result
    other = run("tissue", CMU, "--out", tmp_path)  # classical now: other parameters
    assert other.exit_code != 0 and "other parameters" in " ".join(other.output.split())


def test_a_store_from_before_the_deep_methods_still_matches(tmp_path):
    """Stores written before ``method`` etc. existed hold only the classical keys: same detection."""
    source = SlideSource(CMU)
    run_tissue(source, tmp_path, TissueParams())
    store = SlideStore.open(tmp_path / f"{source.slide_id}.zarr")
    attrs = store.node_attrs("tissue")
    new = {"method", "combine", "threshold", "model_mpp", "artifacts", "artifact_mpp", "exclude_artifacts", "random_init"}
    old_params = {k: v for k, v in attrs["params"].items() if k not in new}
    store.write_tissue(store.read_tissue_geojson(), attrs["summary"], old_params)
    with pytest.raises(Skip):
        run_tissue(source, tmp_path, TissueParams())


def test_run_config_takes_the_tissue_method(tmp_path):
    cfg = config_from_dict({"slides": [str(CMU)], "out": str(tmp_path),
                            "tissue": {"method": "hest", "model_mpp": 2.0, "device": "cpu", "exclude_artifacts": ["pen"]}})
    assert cfg.tissue.method == "hest" and cfg.tissue.run_artifacts and cfg.tissue.exclude_artifacts == ("pen",)
