"""``slidestream run CONFIG``: validation, all stages, skip and resume, manifest, markers, exit codes."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

import slidestream.pipeline.stage_runner as stage_runner
from slidestream.errors import ConfigError
from slidestream.pipeline.config import apply_overrides, config_from_dict, load_config
from slidestream.store import SlideStore
from tests.conftest import CMU, KIDNEY, PEN, TCGA_JP2K
from tests.io.test_bad_input import make_truncated
from tests.workflows.helpers import (
    REFERENCE_SLIDES,
    assert_same_stores,
    copy_reference,
    leftovers,
    reference_run,
    run_cli,
    write_config,
)

IDS = [p.stem for p in REFERENCE_SLIDES]


# ---------------------------------------------------------------------------------- the config
def test_config_errors_name_the_key_and_the_allowed_values(tmp_path):
    config = write_config(tmp_path, [CMU], tmp_path / "out", tiling={"mpp": 2.0, "tile_size": 56, "tile_sise": 3},
                          selection={"method": "mosiac"}, features={"encoder": "unii", "precision": "fp8"})
    result = run_cli("run", config)
    assert result.exit_code == 2
    text = " ".join(result.stderr.split())
    assert "tiling.tile_sise: unknown key; allowed keys: mpp, magnification, tile_size" in text
    assert "selection.method: Input should be 'mosaic', 'fps', 'random' or 'grid' (got 'mosiac')" in text
    assert "features.encoder: unknown encoder 'unii'; allowed: uni, uni2-h" in text and "handcrafted" in text
    assert "features.precision: Input should be 'fp32', 'bf16' or 'fp16'" in text
    assert not (tmp_path / "out").exists()   # nothing touched


def test_set_overrides_are_validated_like_the_file(tmp_path):
    config = write_config(tmp_path, [CMU], tmp_path / "out")
    bad_value = run_cli("run", config, "--set", "tiling.tile_size=0")
    assert bad_value.exit_code == 2 and "tiling.tile_size: Input should be greater than 0" in bad_value.stderr
    bad_form = run_cli("run", config, "--set", "tiling.mpp")
    assert bad_form.exit_code == 2 and "expected key=value" in bad_form.stderr
    bad_shard = run_cli("run", config, "--shard", "3/2")
    assert bad_shard.exit_code == 2 and "shard: expected i/n with 1 <= i <= n" in bad_shard.stderr
    not_configured = run_cli("run", config, "--stage", "mil")
    assert not_configured.exit_code == 2 and "not configured by this config" in not_configured.stderr
    unknown_slide = run_cli("run", config, "--slide", "nope")
    assert unknown_slide.exit_code == 2 and "'nope' is not among this config's slides" in unknown_slide.stderr


def test_overrides_paths_and_stage_plan(tmp_path):
    data = apply_overrides({"slides": "s.csv", "out": "o", "tiling": None},
                           ["tiling.mpp=1.0", "tiling.tile_size=112", "slide_embedding.method=panther", "features.encoder=UNI"])
    cfg = config_from_dict(data, base=tmp_path)
    assert cfg.slides == [tmp_path / "s.csv"] and cfg.out == tmp_path / "o"   # relative to the config's folder
    assert cfg.tiling_params().tile_size == 112 and cfg.encoder == "uni"      # canonical encoder name
    assert cfg.stages() == ("tissue", "tiles", "features", "prototypes", "slide_embedding")
    assert cfg.prototypes_path() == tmp_path / "o" / "prototypes" / "panther-uni-k16.npz"
    native = config_from_dict({"slides": ["s"], "out": "o", "features": {"encoder": "conch-v1"}})
    assert native.tiling_params().tile_size == 448 and native.tiling_params().mpp == 0.5
    with pytest.raises(ConfigError, match=r"features.selection='fps' needs selection.method='fps'"):
        config_from_dict({"slides": ["s"], "out": "o", "features": {"selection": "fps"}})
    with pytest.raises(ConfigError, match="slide_embedding and mil need features"):
        config_from_dict({"slides": ["s"], "out": "o", "features": None, "slide_embedding": {}})
    (tmp_path / "bad.yaml").write_text("slides: [a\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")


# ---------------------------------------------------------------------------------- a whole run
def test_a_run_writes_stores_markers_manifest_and_summary(tmp_path_factory):
    out = reference_run(tmp_path_factory)
    for sid in IDS:
        store = SlideStore.open(out / f"{sid}.zarr")
        assert store.has("tissue") and store.has("tiles") and store.has("selections/mosaic")
        features, _, _ = store.read_features("handcrafted")
        assert features.shape == (len(store.read_tiles()), 35) and np.isfinite(features).all()
        assert sorted(p.name for p in (out / ".done" / sid).iterdir()) == ["features-handcrafted.json", "tiles.json", "tissue.json"]
        marker = json.loads((out / ".done" / sid / "tiles.json").read_text())
        assert marker["nodes"]["tiles"] == store.node_attrs("tiles")["completed"]
    manifest = pd.read_csv(out / "manifest.csv")
    assert set(manifest["stage"]) == {"tissue", "tiles", "features/handcrafted"}
    assert len(manifest) == 3 * len(IDS) and (manifest["status"] == "ok").all()
    assert (manifest["seconds"] > 0).all() and manifest["run_id"].nunique() == 1
    assert leftovers(out) == []


def test_a_rerun_skips_everything(tmp_path_factory, tmp_path):
    out = copy_reference(tmp_path_factory, tmp_path / "out")
    config = write_config(tmp_path, REFERENCE_SLIDES, out)
    before = {p: p.stat().st_mtime_ns for p in (out / ".done").rglob("*.json")}
    result = run_cli("run", config, "--no-progress", "--report", tmp_path / "report.json")
    assert result.exit_code == 0, result.output
    assert "0 ok, 3 skipped, 0 failed" in result.stderr
    assert "features: 0 ok, 3 skipped, 0 failed" in result.stderr
    assert {p: p.stat().st_mtime_ns for p in (out / ".done").rglob("*.json")} == before   # markers untouched
    report = json.loads((tmp_path / "report.json").read_text())
    assert {r["status"] for r in report["outcomes"]} == {"skipped"} and len(report["outcomes"]) == 9


def test_an_interrupted_run_resumes_to_the_reference(tmp_path_factory, tmp_path, monkeypatch):
    out = tmp_path / "out"
    config = write_config(tmp_path, REFERENCE_SLIDES, out)
    real_extract = stage_runner.run_extract  # where the per-slide stage runner looks it up

    def crash_on_pen(source, *args, **kwargs):
        if source.path == PEN:
            raise RuntimeError("simulated crash during extraction")
        return real_extract(source, *args, **kwargs)

    monkeypatch.setattr(stage_runner, "run_extract", crash_on_pen)
    first = run_cli("run", config, "--no-progress")
    assert first.exit_code == 1
    assert "simulated crash" in first.stderr and "2 ok, 0 skipped, 1 failed" in " ".join(first.stderr.split())
    assert not (out / ".done" / PEN.stem / "features-handcrafted.json").exists()
    assert (out / ".done" / PEN.stem / "tiles.json").exists()
    monkeypatch.setattr(stage_runner, "run_extract", real_extract)
    second = run_cli("run", config, "--no-progress", "--report", tmp_path / "report.json")
    assert second.exit_code == 0, second.output
    done = [(r["stage"], r["slide_id"]) for r in json.loads((tmp_path / "report.json").read_text())["outcomes"]
            if r["status"] == "ok"]
    assert done == [("features", PEN.stem)]   # only the missing work was done
    assert_same_stores(out, reference_run(tmp_path_factory), IDS)
    manifest = pd.read_csv(out / "manifest.csv")
    pen = manifest[(manifest["slide_id"] == PEN.stem) & (manifest["stage"] == "features/handcrafted")]
    assert list(pen["status"]) == ["ok"]   # the failure row was replaced


def test_a_failing_slide_fails_the_exit_code_and_blocks_its_later_stages(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    broken = make_truncated(TCGA_JP2K, folder / "broken.svs")
    (folder / "slides.csv").write_text(f"path,mpp\n{CMU},\n{broken},0.5\n")
    config = write_config(tmp_path, folder / "slides.csv", tmp_path / "out")
    result = run_cli("run", config, "--no-progress")
    assert result.exit_code == 1
    text = " ".join(result.stderr.split())
    assert "1 ok, 0 skipped, 1 failed" in text and "broken.svs: tissue: truncated" in text
    manifest = pd.read_csv(tmp_path / "out" / "manifest.csv", keep_default_na=False).set_index(["slide_id", "stage"])
    assert manifest.loc[("broken", "tissue"), "status"] == "failed"
    assert manifest.loc[("broken", "tiles"), "reason"] == "not run: tissue failed"
    assert manifest.loc[("broken", "features/handcrafted"), "reason"] == "not run: tissue failed"
    assert (manifest.loc[CMU.stem, "status"] == "ok").all()
    assert not (tmp_path / "out" / ".done" / "broken").exists()


def test_markers_follow_the_store(tmp_path_factory, tmp_path):
    out = copy_reference(tmp_path_factory, tmp_path / "out")
    config = write_config(tmp_path, REFERENCE_SLIDES, out)
    SlideStore.open(out / f"{CMU.stem}.zarr").delete("features/handcrafted")
    tissue_marker = out / ".done" / CMU.stem / "tissue.json"
    before = tissue_marker.stat().st_mtime_ns
    result = run_cli("run", config, "--stage", "tissue", "--slide", CMU.stem, "--no-progress")
    assert result.exit_code == 0, result.output
    assert not (out / ".done" / CMU.stem / "features-handcrafted.json").exists()
    assert tissue_marker.stat().st_mtime_ns == before
    assert (out / ".done" / KIDNEY.stem / "features-handcrafted.json").exists()


def test_slide_embeddings_mean_and_panther(tmp_path_factory, tmp_path):
    out = copy_reference(tmp_path_factory, tmp_path / "out")
    config = write_config(tmp_path, REFERENCE_SLIDES, out, slide_embedding={"method": "mean"})
    result = run_cli("run", config, "--no-progress")
    assert result.exit_code == 0, result.output
    assert "slide_embedding: 3 ok, 0 skipped, 0 failed" in result.stderr
    assert "tissue: 0 ok, 3 skipped" in result.stderr   # only the new stage did work
    for sid in IDS:
        store = SlideStore.open(out / f"{sid}.zarr")
        embedding, attrs = store.read_slide_embedding("mean")
        np.testing.assert_allclose(embedding, store.read_features("handcrafted")[0].mean(axis=0), rtol=1e-5)
        assert attrs["features_completed"] == store.node_attrs("features/handcrafted")["completed"]
        assert (out / ".done" / sid / "embedding-mean.json").exists()

    panther = ["--set", "slide_embedding.method=panther", "--set", "slide_embedding.panther.k=2",
               "--set", "slide_embedding.panther.samples_per_prototype=40"]
    sharded = run_cli("run", config, *panther, "--shard", "1/1", "--stage", "prototypes", "--stage", "slide_embedding",
                      "--no-progress")
    assert sharded.exit_code == 0, sharded.output
    assert "prototypes skipped: cohort stage: run it once without shard" in " ".join(sharded.stderr.split())
    assert "slide_embedding: 0 ok, 3 skipped" in sharded.stderr   # waiting for prototypes, not failing
    full = run_cli("run", config, *panther, "--no-progress")
    assert full.exit_code == 0, full.output
    assert (out / "prototypes" / "panther-handcrafted-k2.npz").exists()
    assert "slide_embedding: 3 ok" in full.stderr
    for sid in IDS:
        embedding, attrs = SlideStore.open(out / f"{sid}.zarr").read_slide_embedding("panther")
        assert np.isfinite(embedding).all() and attrs["k"] == 2
        assert (out / ".done" / sid / "embedding-panther.json").exists()
    again = run_cli("run", config, *panther, "--no-progress")
    assert again.exit_code == 0 and "slide_embedding: 0 ok, 3 skipped" in again.stderr
    assert "prototypes skipped: prototypes exist" in " ".join(again.stderr.split())


def test_an_empty_shard_is_a_successful_run(tmp_path):
    config = write_config(tmp_path, [CMU], tmp_path / "out")
    from slidestream.pipeline.shard import shard_index

    other = 1 if shard_index(CMU.stem, 2) == 2 else 2
    result = run_cli("run", config, "--shard", f"{other}/2", "--no-progress")
    assert result.exit_code == 0, result.output
    assert "0 ok, 0 skipped, 0 failed" in result.stderr
    assert not (tmp_path / "out" / f"{CMU.stem}.zarr").exists()


def test_missing_slides_input_is_a_config_error(tmp_path):
    config = write_config(tmp_path, tmp_path / "nowhere.csv", tmp_path / "out")
    result = run_cli("run", config)
    assert result.exit_code == 2 and "slides: no such file or folder" in result.stderr
    shutil.rmtree(tmp_path / "out", ignore_errors=True)


def test_a_slide_without_tissue_is_a_note_in_every_stage_not_a_failure(tmp_path):
    """As with ``extract``: blank glass gets empty tiles and features and an explained skip of its
    slide embedding; the run succeeds."""
    from tests.faults.conftest import make_blank_slide

    blank = make_blank_slide(tmp_path / "blank.tif")
    out = tmp_path / "out"
    config = write_config(tmp_path, blank, out, slide_embedding={"method": "mean"})
    result = run_cli("run", config, "--set", "features.batch_size=7")
    assert result.exit_code == 0, result.output
    manifest = pd.read_csv(out / "manifest.csv").set_index("stage")
    assert (manifest["status"] != "failed").all(), manifest
    assert "no tissue found" in manifest.loc["slide_embeddings/mean", "reason"]
    # the config that made the folder (overrides applied) is kept and shown in the report
    import yaml

    recorded = yaml.safe_load((out / "run-config.yaml").read_text())
    assert recorded["config"]["features"]["batch_size"] == 7 and recorded["run_id"]
    page = (out / "report" / "index.html").read_text()
    assert "run-config.yaml" in page and "batch_size: 7" in page
