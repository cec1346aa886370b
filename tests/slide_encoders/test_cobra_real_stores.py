"""COBRA-style pre-training on features extracted from the real slides, end to end."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from slidestream.cli import app
from slidestream.slide_encoders.cobra import CobraConfig, embed
from slidestream.slide_encoders.cobra_train import PretrainConfig, train_cobra
from slidestream.slide_encoders.cobra_weights import load_cobra, save_cobra
from slidestream.store import iter_stores, load_features
from tests.conftest import CMU, PEN, TCGA_JP2K


@pytest.fixture(scope="module")
def real_features(tmp_path_factory):
    out = tmp_path_factory.mktemp("cobra-real")
    slides = out / "slides.csv"
    slides.write_text(f"path,mpp\n{CMU},\n{PEN},0.5\n{TCGA_JP2K},0.5\n")
    result = CliRunner().invoke(app, ["extract", str(slides), "--out", str(out), "--encoder", "handcrafted",
                                      "--mpp", "2.0", "--tile-size", "56"])
    assert result.exit_code == 0, result.output
    bags = [load_features(s.path, "handcrafted")[0] for s in iter_stores(out)]
    assert len(bags) == 3 and all(len(b) >= 16 for b in bags)
    # standardise per dimension over the cohort, as one would for handcrafted statistics
    stacked = np.concatenate(bags)
    mu, sd = stacked.mean(0), stacked.std(0) + 1e-6
    return [{"handcrafted": ((b - mu) / sd).astype(np.float32)} for b in bags]


def tiny_config(dim: int) -> CobraConfig:
    return CobraConfig({"handcrafted": dim}, embed_dim=32, num_heads=4, layers=1, att_dim=16, d_state=8,
                       headdim=16, chunk_size=16, dropout=0.0, embed_dropout=0.0)


def test_pretraining_on_real_stores_lowers_the_loss_and_checkpoints_round_trip(real_features, tmp_path):
    dim = real_features[0]["handcrafted"].shape[1]
    result = train_cobra(real_features, tiny_config(dim),
                         PretrainConfig(epochs=40, batch_size=3, lr=2e-3, warmup_epochs=2, n_tiles=16,
                                        proj_dim=16, momentum=0.9, seed=0), keep="base")
    losses = np.asarray(result.epoch_losses)
    assert np.isfinite(losses).all()
    assert losses[-5:].mean() < losses[:3].mean()
    path = save_cobra(result.model, tmp_path / "cobra.pt")
    reloaded = load_cobra(path)
    for slide in real_features:
        np.testing.assert_allclose(embed(reloaded, slide), embed(result.model, slide), rtol=0, atol=1e-6)
