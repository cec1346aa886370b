"""Contrastive pre-training learns an encoder-agnostic slide space on synthetic cohorts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from slidestream.slide_encoders.cobra import Cobra, CobraConfig, embed
from slidestream.slide_encoders.cobra_train import (
    PretrainConfig,
    info_nce,
    sample_view,
    train_cobra,
)

DIMS = {"a": 16, "b": 24}


def synthetic_cohort(n_slides: int, seed: int, latent: int = 6):
    """Each slide has its own latent centre; two "patch encoders" see the tiles through fixed
    random non-linear maps of different widths, so only a learned projection can match them."""
    maps = {
        k: np.random.default_rng(100 + i).normal(size=(latent, d))
        for i, (k, d) in enumerate(DIMS.items())
    }
    rng = np.random.default_rng(seed)
    slides = []
    for _ in range(n_slides):
        centre = rng.normal(size=latent) * 1.5
        z = centre + 0.7 * rng.normal(size=(int(rng.integers(40, 120)), latent))
        slides.append(
            {
                k: (
                    np.tanh(z @ w / np.sqrt(latent)) + 0.05 * rng.normal(size=(len(z), w.shape[1]))
                ).astype(np.float32)
                for k, w in maps.items()
            }
        )
    return slides


def small_config() -> CobraConfig:
    return CobraConfig(
        dict(DIMS),
        embed_dim=32,
        num_heads=4,
        layers=1,
        att_dim=16,
        d_state=8,
        headdim=16,
        chunk_size=16,
        dropout=0.1,
        embed_dropout=0.1,
    )


def cross_encoder_similarity(model: Cobra, slides, seed: int = 1):
    """Cosine similarities between encoder-a views and encoder-b views of every slide."""
    rng = np.random.default_rng(seed)
    za, zb = (
        np.stack([embed(model, {k: sample_view(s[k], 64, rng)}, pool="hidden") for s in slides])
        for k in ("a", "b")
    )
    za, zb = za - za.mean(0), zb - zb.mean(0)
    za /= np.linalg.norm(za, axis=1, keepdims=True)
    zb /= np.linalg.norm(zb, axis=1, keepdims=True)
    return za @ zb.T


@pytest.fixture(scope="module")
def trained():
    slides = synthetic_cohort(24, seed=0)
    cfg = PretrainConfig(
        epochs=70,
        batch_size=12,
        lr=2e-3,
        warmup_epochs=2,
        n_tiles=64,
        proj_dim=32,
        momentum=0.9,
        seed=0,
    )
    return slides, train_cobra(slides, small_config(), cfg)


def test_pretraining_lowers_the_loss(trained):
    _, result = trained
    losses = np.array(result.epoch_losses)
    assert len(result.step_losses) == 70 * 2
    assert losses[-10:].mean() < 0.5 * losses[:3].mean()


def test_views_of_a_slide_are_closer_than_other_slides_after_training(trained):
    slides, result = trained
    torch.manual_seed(0)
    untrained = cross_encoder_similarity(Cobra(small_config()).eval(), slides)
    sim = cross_encoder_similarity(result.model, slides)
    off_diagonal = sim[~np.eye(len(sim), dtype=bool)]
    assert np.diag(sim).mean() > off_diagonal.mean() + 0.4
    top1 = (sim.argmax(1) == np.arange(len(sim))).mean()
    assert top1 > 0.4 > (untrained.argmax(1) == np.arange(len(sim))).mean() + 0.2  # chance: 1/24


def test_pretraining_is_reproducible_with_a_seed():
    slides = synthetic_cohort(6, seed=3)
    cfg = PretrainConfig(epochs=2, batch_size=3, n_tiles=16, proj_dim=8, seed=5)
    a, b = (train_cobra(slides, small_config(), cfg) for _ in range(2))
    assert a.step_losses == b.step_losses
    for (k, va), vb in zip(
        a.model.state_dict().items(), b.model.state_dict().values(), strict=True
    ):
        assert torch.equal(va, vb), k


def test_patients_group_slides_and_too_few_patients_fail():
    slides = synthetic_cohort(4, seed=4)
    cfg = PretrainConfig(epochs=1, batch_size=8, n_tiles=8, proj_dim=8)
    result = train_cobra(slides, small_config(), cfg, groups=["p1", "p1", "p2", "p2"], keep="base")
    assert len(result.step_losses) == 1  # two patients, one batch
    with pytest.raises(ValueError, match="at least 2 patients"):
        train_cobra(slides, small_config(), cfg, groups=["p"] * 4)


def test_info_nce_prefers_matching_rows():
    q = torch.eye(4)
    assert info_nce(q, q, 0.2) < info_nce(q, q.roll(1, 0), 0.2)


def test_sample_view_tops_up_short_slides():
    rows = np.arange(5)[:, None]
    view = sample_view(rows, 12, np.random.default_rng(0))
    assert view.shape == (12, 1) and set(view[:10, 0]) == set(range(5))
