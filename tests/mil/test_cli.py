"""``slidestream train`` / ``slidestream predict`` on fake slide stores."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import slidestream.cli.mil
import slidestream.store
from slidestream.cli import app
from tests.mil.mil_synthetic import make_bags

runner = CliRunner()


@pytest.fixture
def project(tmp_path, monkeypatch):
    """30 slides of 15 patients as ``OUT/<slide>.zarr`` with features of encoder ``toy``."""
    data = make_bags(30, slides_per_patient=2, seed=4)
    stores = tmp_path / "OUT"
    for slide, (feats, coords) in data.bags.items():
        (stores / f"{slide}.zarr").mkdir(parents=True)
        np.savez(stores / f"{slide}.zarr" / "toy.npz", features=feats, coords=coords)

    def load_features(store_path, encoder):
        path = store_path / f"{encoder}.npz"
        if not path.exists():
            raise slidestream.errors.StoreError(store_path, f"no features for encoder {encoder!r}")
        with np.load(path) as npz:
            return npz["features"], npz["coords"]

    monkeypatch.setattr(slidestream.store, "load_features", load_features, raising=False)
    labels = tmp_path / "labels.csv"
    data.table.to_csv(labels, index=False)
    return tmp_path, stores, labels


def _train(labels, stores, out, *extra):
    return runner.invoke(
        app,
        [
            "train",
            "--labels",
            str(labels),
            "--stores",
            str(stores),
            "--encoder",
            "toy",
            "--out",
            str(out),
            "--folds",
            "3",
            "--epochs",
            "3",
            "--lr",
            "1e-3",
            "--seed",
            "1",
            "--max-tiles",
            "24",
            *extra,
        ],
    )


def test_train_then_predict(project):
    tmp_path, stores, labels = project
    result = _train(labels, stores, tmp_path / "RUN", "--model", "abmil_gated")
    assert result.exit_code == 0, result.output
    assert "auroc_macro" in result.output
    assert (tmp_path / "RUN" / "fold_2" / "model.pt").exists()
    result = runner.invoke(
        app,
        [
            "predict",
            "--run",
            str(tmp_path / "RUN"),
            "--stores",
            str(stores),
            "--encoder",
            "toy",
            "--out",
            str(tmp_path / "preds.csv"),
            "--scores-dir",
            str(tmp_path / "scores"),
        ],
    )
    assert result.exit_code == 0, result.output
    preds = pd.read_csv(tmp_path / "preds.csv")
    assert len(preds) == 30 and {"prob_0", "prob_1", "pred", "n_tiles"} <= set(preds.columns)
    npz = np.load(tmp_path / "scores" / "s000.npz")
    assert npz["scores"].shape == (preds.loc[0, "n_tiles"],)


def test_unknown_slides_give_one_line_error(project):
    tmp_path, stores, labels = project
    table = pd.read_csv(labels)
    table.loc[len(table)] = ["ghost-slide", "p999", 1]
    table.to_csv(labels, index=False)
    result = _train(labels, stores, tmp_path / "RUN")
    assert result.exit_code == 1
    assert "error:" in result.output and "ghost-slide" in result.output
    assert "Traceback" not in result.output


def test_missing_encoder_gives_one_line_error(project):
    tmp_path, stores, labels = project
    result = runner.invoke(
        app,
        [
            "train",
            "--labels",
            str(labels),
            "--stores",
            str(stores),
            "--encoder",
            "uni",
            "--out",
            str(tmp_path / "RUN"),
        ],
    )
    assert result.exit_code == 1
    assert "no features for encoder 'uni'" in result.output and "Traceback" not in result.output


def test_bad_options_are_reported(project):
    tmp_path, stores, labels = project
    result = _train(labels, stores, tmp_path / "RUN", "--task", "regression")
    assert result.exit_code == 2 and "task" in result.output
    result = _train(
        labels, stores, tmp_path / "RUN", "--model", "abmil", "--model-option", "nope=1"
    )
    assert result.exit_code == 1 and "no option(s) ['nope']" in result.output


def test_predict_takes_a_checkpoint_of_the_original_clam(project, tmp_path):
    """``--run`` may be a state dict saved by mahmoodlab/CLAM (keys mapped, loaded strictly)."""
    import torch

    from tests.mil.test_foreign_checkpoints import clam_state

    _, stores, _ = project
    dim = np.load(next(stores.glob("*.zarr")) / "toy.npz")["features"].shape[1]
    torch.save(clam_state(2, mb=False, dim=dim), tmp_path / "s_0_checkpoint.pt")
    result = runner.invoke(app, ["predict", "--run", str(tmp_path / "s_0_checkpoint.pt"), "--stores", str(stores),
                                 "--encoder", "toy", "--out", str(tmp_path / "clam.csv")])
    assert result.exit_code == 0, result.output
    preds = pd.read_csv(tmp_path / "clam.csv")
    assert len(preds) == 30 and {"prob_0", "prob_1", "pred"} <= set(preds.columns)
    assert np.allclose(preds["prob_0"] + preds["prob_1"], 1.0)
