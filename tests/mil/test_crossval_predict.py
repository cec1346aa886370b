"""Cross-validation run folders, determinism, survival, and predict reproducing out-of-fold."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from slidestream.errors import ConfigError
from slidestream.mil import (
    InMemoryBagSource,
    TrainConfig,
    cross_validate,
    labels_from_frame,
    load_checkpoint,
    predict,
)
from tests.mil.mil_synthetic import make_bags

FAST = {"epochs": 6, "patience": 3, "lr": 1e-3, "folds": 3}


@pytest.fixture(scope="module")
def grouped():
    data = make_bags(60, slides_per_patient=2, seed=5)  # 30 patients, 2 slides each
    return labels_from_frame(data.table, "classification", "labels.csv"), InMemoryBagSource(
        data.bags
    )


@pytest.fixture(scope="module")
def cv_run(grouped, tmp_path_factory):
    labels, source = grouped
    config = TrainConfig(model="abmil", encoder="toy", seed=7, **FAST)
    return cross_validate(labels, source, config, tmp_path_factory.mktemp("run"))


def test_run_folder_contents(cv_run, grouped):
    labels, _ = grouped
    run = cv_run.run_dir
    config = TrainConfig.model_validate_json((run / "config.json").read_text())
    assert config.model == "abmil" and config.seed == 7
    oof = pd.read_csv(run / "oof_predictions.csv", dtype={"slide_id": str, "patient_id": str})
    assert oof["slide_id"].tolist() == labels.slide_ids
    assert (oof.groupby("patient_id")["fold"].nunique() == 1).all()
    np.testing.assert_allclose(oof[["prob_0", "prob_1"]].sum(axis=1), 1.0)
    metrics = json.loads((run / "metrics.json").read_text())
    assert len(metrics["folds"]) == 3
    assert metrics["summary"]["auroc_macro"]["mean"] > 0.95
    assert {"auroc_per_class", "balanced_accuracy", "f1_macro", "confusion_matrix"} <= set(
        metrics["folds"][0]
    )
    summary = (run / "summary.md").read_text()
    assert "mean ± std" in summary and "confusion matrix" in summary
    ckpt = torch.load(run / "fold_1" / "model.pt", weights_only=True)
    assert ckpt["model_name"] == "abmil" and ckpt["in_dim"] == 32
    assert ckpt["classes"] == ["0", "1"] and ckpt["encoder"] == "toy" and ckpt["fold"] == 1
    assert (run / "fold_0" / "history.csv").exists()


def test_same_seed_same_results_other_seed_differs(cv_run, grouped, tmp_path):
    labels, source = grouped
    again = cross_validate(
        labels,
        source,
        TrainConfig(model="abmil", encoder="toy", seed=7, **FAST),
        tmp_path / "again",
    )
    assert again.metrics == cv_run.metrics
    pd.testing.assert_frame_equal(again.oof, cv_run.oof)
    other = cross_validate(
        labels,
        source,
        TrainConfig(model="abmil", encoder="toy", seed=8, **FAST),
        tmp_path / "other",
    )
    assert not np.allclose(other.oof["prob_1"], cv_run.oof["prob_1"])


def test_predict_fold_model_reproduces_oof(cv_run, grouped):
    _, source = grouped
    oof = cv_run.oof.set_index("slide_id")
    for k in range(3):
        test_ids = oof.index[oof["fold"] == k].tolist()
        pred = predict(cv_run.run_dir, source, slide_ids=test_ids, folds=[k])
        np.testing.assert_allclose(
            pred.table[["prob_0", "prob_1"]].to_numpy(),
            oof.loc[test_ids, ["prob_0", "prob_1"]],
            rtol=0,
            atol=1e-12,
        )
        assert pred.table["pred"].tolist() == oof.loc[test_ids, "pred"].tolist()


def test_predict_ensemble_averages_folds(cv_run, grouped):
    _, source = grouped
    ids = source.slide_ids[:5]
    ensemble = predict(cv_run.run_dir, source, slide_ids=ids)
    members = [predict(cv_run.run_dir, source, slide_ids=ids, folds=[k]) for k in range(3)]
    np.testing.assert_allclose(
        ensemble.table["prob_1"], np.mean([m.table["prob_1"] for m in members], axis=0)
    )
    assert (ensemble.table["n_models"] == 3).all()
    for s in ids:
        n_tiles = len(source.load(s)[0])
        assert ensemble.scores[s].shape == (n_tiles,) and ensemble.coords[s].shape == (n_tiles, 2)
        np.testing.assert_allclose(ensemble.scores[s], np.mean([m.scores[s] for m in members], 0))
        assert ensemble.scores[s].sum() == pytest.approx(1.0)  # ABMIL: softmax attention


def test_predict_refuses_other_features(cv_run):
    class OtherEncoder(InMemoryBagSource):
        encoder = "not-toy"

    with pytest.raises(ConfigError, match="trained on 'toy' features"):
        predict(cv_run.run_dir, OtherEncoder({"x": np.ones((3, 32))}))
    with pytest.raises(ConfigError, match="expect 32-d features; the bags have 8-d"):
        predict(cv_run.run_dir, InMemoryBagSource({"x": np.ones((3, 8))}))
    with pytest.raises(ConfigError, match=r"fold\(s\) \[7\] not in this run"):
        predict(cv_run.run_dir, InMemoryBagSource({"x": np.ones((3, 32))}), folds=[7])


def test_checkpoint_round_trip(cv_run):
    loaded = load_checkpoint(cv_run.run_dir / "fold_0" / "model.pt")
    assert loaded.in_dim == 32 and loaded.encoder == "toy"
    assert loaded.task.spec() == {"kind": "classification", "classes": ["0", "1"]}


def test_clam_with_padded_batches_and_subsampling(grouped, tmp_path):
    labels, source = grouped
    config = TrainConfig(
        model="clam_sb",
        batch_size=4,
        max_tiles=16,
        balance="sampler",
        model_kwargs={"k_sample": 4},
        **FAST,
    )
    result = cross_validate(labels, source, config, tmp_path)
    assert result.metrics["summary"]["auroc_macro"]["mean"] > 0.9


def test_single_class_fold_is_a_clear_error(tmp_path):
    data = make_bags(12, seed=0)
    table = data.table.assign(label=["1"] * 2 + ["0"] * 10)
    labels = labels_from_frame(table, "classification", "L.csv")
    with pytest.raises(ConfigError, match="class '1' has 2 patient"):
        cross_validate(labels, InMemoryBagSource(data.bags), TrainConfig(folds=3), tmp_path)


def test_unknown_slides_stop_before_training(tmp_path):
    data = make_bags(12, seed=0)
    labels = labels_from_frame(data.table, "classification", "L.csv")
    source = InMemoryBagSource({k: v for k, v in data.bags.items() if k != "s003"})
    with pytest.raises(ConfigError, match=r"have no feature store .*: s003"):
        cross_validate(labels, source, TrainConfig(folds=3), tmp_path)
    assert not (tmp_path / "config.json").exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("loss", "extra"), [("cox", {"batch_size": 16}), ("nll", {"batch_size": 8})]
)
def test_survival_cindex(survival_bags, tmp_path, loss, extra):
    labels = labels_from_frame(survival_bags.table, "survival")
    config = TrainConfig(
        task="survival",
        survival_loss=loss,
        model="abmil",
        folds=3,
        epochs=15,
        patience=5,
        lr=1e-3,
        **extra,
    )
    result = cross_validate(labels, InMemoryBagSource(survival_bags.bags), config, tmp_path)
    # the oracle (true number of aggressive tiles) scores about 0.86 on these bags
    assert result.metrics["summary"]["c_index"]["mean"] > 0.75, result.metrics["summary"]
    assert min(f["c_index"] for f in result.metrics["folds"]) > 0.7
    source = InMemoryBagSource(survival_bags.bags)
    assert predict(tmp_path, source).table["risk"].notna().all()
    fold0 = result.oof[result.oof["fold"] == 0]
    again = predict(tmp_path, source, slide_ids=fold0["slide_id"].tolist(), folds=[0])
    np.testing.assert_allclose(again.table["risk"], fold0["risk"], rtol=0, atol=1e-12)
    if loss == "nll":
        assert {"surv_0", "surv_3"} <= set(result.oof.columns)
        # folds fit their own time bins, so the ensemble averages risks, never misaligned curves
        ensemble = predict(tmp_path, source).table
        assert not any(c.startswith("surv_") for c in ensemble.columns)
        one = [predict(tmp_path, source, folds=[k]).table["risk"].to_numpy() for k in range(3)]
        np.testing.assert_allclose(ensemble["risk"], np.mean(one, axis=0), atol=1e-12)
