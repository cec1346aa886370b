"""Per-tile MIL scores written back into real slide stores, and ``predict --heatmaps``."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from slidestream.cli import app
from slidestream.mil import MILPredictions, StoreBagSource, write_tile_scores
from slidestream.store import SlideStore
from tests.mil.mil_synthetic import make_bags
from tests.viz.synthetic_store import make_store


@pytest.fixture
def stores(tmp_path):
    out = tmp_path / "OUT"
    for i in range(3):
        make_store(out, f"s{i}", seed=i)
    return out


def _predictions(source: StoreBagSource) -> MILPredictions:
    scores, coords = {}, {}
    for sid in source.slide_ids:
        feats, xy = source.load(sid)
        scores[sid], coords[sid] = feats[:, 0].astype(np.float64), xy
    table = pd.DataFrame(
        {"slide_id": source.slide_ids, "prob_1": [0.2, 0.9, 0.5], "pred": ["0", "1", "1"]}
    )
    return MILPredictions(table, scores, coords)


def test_scores_land_in_the_store_aligned_with_the_features(stores, tmp_path):
    source = StoreBagSource.from_folder(stores, "uni")
    preds = _predictions(source)
    (tmp_path / "RUN").mkdir()
    (tmp_path / "RUN" / "config.json").write_text(
        json.dumps({"model": "abmil", "task": "classification"})
    )
    assert write_tile_scores(preds, source, name="attention", run=tmp_path / "RUN") == {}
    values, attrs = SlideStore.open(stores / "s1.zarr").read_tile_scores("attention")
    np.testing.assert_allclose(values, preds.scores["s1"], rtol=1e-6)
    assert attrs["rows"] == "features/uni" and attrs["kind"] == "continuous"
    assert attrs["model"] == "abmil" and attrs["prediction"] == {"prob_1": 0.9, "pred": "1"}


def test_a_store_that_changed_is_reported_not_written(stores):
    source = StoreBagSource.from_folder(stores, "uni")
    preds = _predictions(source)
    preds.coords["s2"] = preds.coords["s2"][::-1]
    failures = write_tile_scores(preds, source)
    assert list(failures) == ["s2"] and "changed since the prediction" in failures["s2"]
    assert not SlideStore.open(stores / "s2.zarr").has("tile_scores/attention")
    assert SlideStore.open(stores / "s0.zarr").has("tile_scores/attention")


def test_train_then_predict_with_heatmaps(tmp_path):
    """Planted-instance bags in real stores: predict writes tile_scores, PNGs and GeoJSON."""
    data = make_bags(16, seed=4, n_tiles=(12, 20))
    out = tmp_path / "OUT"
    for slide, (feats, _) in data.bags.items():
        make_store(out, slide, grid=(len(feats), 1), features=feats)
    labels = tmp_path / "labels.csv"
    data.table.to_csv(labels, index=False)
    runner = CliRunner()
    train = [
        "train",
        "--labels",
        str(labels),
        "--stores",
        str(out),
        "--encoder",
        "uni",
        "--out",
        str(tmp_path / "RUN"),
        "--folds",
        "2",
        "--epochs",
        "2",
    ]
    result = runner.invoke(app, train)  # 4 slides per class per training part: no 5-way split
    assert result.exit_code == 1 and "--val-fraction" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    result = runner.invoke(app, [*train, "--val-fraction", "0.5"])
    assert result.exit_code == 0, result.output
    maps = tmp_path / "maps"
    result = runner.invoke(
        app,
        [
            "predict",
            "--run",
            str(tmp_path / "RUN"),
            "--stores",
            str(out),
            "--encoder",
            "uni",
            "--out",
            str(tmp_path / "p.csv"),
            "--heatmaps",
            str(maps),
            "--heatmap-size",
            "128",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "16 heatmap(s)" in result.output
    for slide, (feats, _) in data.bags.items():
        assert (maps / f"{slide}.attention.png").exists()
        fc = json.loads((maps / f"{slide}.attention.geojson").read_text())
        assert len(fc["features"]) == len(feats)
        values, _ = SlideStore.open(out / f"{slide}.zarr").read_tile_scores("attention")
        assert values.shape == (len(feats),) and np.isclose(
            values.sum(), 1.0, atol=1e-4
        )  # ABMIL softmax


def test_predict_heatmaps_from_a_checkpoint_of_the_original_dsmil(stores, tmp_path):
    """An official (binli123/dsmil-wsi) state dict drives ``predict --heatmaps`` and ``heatmap``."""
    import torch

    from tests.mil.test_foreign_checkpoints import dsmil_state

    dim = StoreBagSource.from_folder(stores, "uni").load("s0")[0].shape[1]
    state = dsmil_state(1)  # binary DSMIL (BCE, one output), 48-d in the helper: rebuild at this dim
    state = {k: (torch.randn(*v.shape[:-1], dim) * 0.2 if v.shape[-1] == 48 else v) for k, v in state.items()}
    torch.save(state, tmp_path / "dsmil.pth")
    maps = tmp_path / "maps"
    runner = CliRunner()
    result = runner.invoke(app, ["predict", "--run", str(tmp_path / "dsmil.pth"), "--stores", str(stores),
                                 "--encoder", "uni", "--out", str(tmp_path / "p.csv"), "--heatmaps", str(maps)])
    assert result.exit_code == 0, result.output
    assert "3 heatmap(s)" in result.output and (maps / "s1.attention.png").exists()
    values, attrs = SlideStore.open(stores / "s1.zarr").read_tile_scores("attention")
    assert np.isclose(values.sum(), 1.0, atol=1e-4) and attrs["run"].endswith("dsmil.pth")
    redraw = runner.invoke(app, ["heatmap", str(stores), "--out", str(tmp_path / "again"), "--cmap", "viridis"])
    assert redraw.exit_code == 0, redraw.output
    assert (tmp_path / "again" / "s2.attention.png").exists()
