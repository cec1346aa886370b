"""PANTHER's MAP-EM: monotone objective, recovery of a known mixture, documented layout."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from slidestream.slide_encoders.panther import (
    embedding_dim,
    map_em,
    map_objective,
    panther_embedding,
    split_allcat,
)


def overlapping_slide(seed=0):
    """Three strongly overlapping blobs and prototypes far from them: EM needs many steps."""
    rng = np.random.default_rng(seed)
    means = np.array([[0.0, 0.0, 0.0], [1.2, 0.5, 0.0], [0.3, 1.5, -0.8]])
    labels = rng.choice(3, size=600, p=[0.5, 0.3, 0.2])
    x = (means[labels] + rng.normal(size=(600, 3))).astype(np.float32)
    protos = rng.normal(0.0, 2.0, size=(4, 3))
    return x, protos


@pytest.mark.parametrize(("tau", "eps"), [(1.0, 1.0), (0.001, 0.1), (10.0, 0.5)])
def test_em_never_decreases_the_map_objective(tau, eps):
    x, protos = overlapping_slide()
    fit = map_em(x, protos, em_iter=25, tau=tau, eps=eps, track_objective=True)
    steps = np.diff(fit.objective)
    assert len(steps) == 25
    assert steps.min() >= -1e-8 * abs(fit.objective[-1])
    assert steps[:3].max() > 1.0  # it really moves, so the check is not vacuous


def test_objective_detects_a_wrong_m_step():
    """The objective is sharp enough to catch a broken update (variance off by a factor)."""
    x, protos = overlapping_slide()
    fit = map_em(x, protos, em_iter=10, tau=1.0, eps=1.0)
    m, v = protos - 0, np.full_like(protos, 1.0)
    args = (fit.pi.astype(float), fit.mu.astype(float))
    good = map_objective(x, *args, fit.sigma.astype(float), m, v, 1.0)
    worse = map_objective(x, *args, 1.5 * fit.sigma.astype(float), m, v, 1.0)
    assert worse < good - 1.0


def test_recovers_means_and_weights_of_a_known_mixture(mixture, gaussian_mixture):
    means, weights, sds = mixture
    x, _ = gaussian_mixture(8000, means, weights, sds, seed=1)
    protos = means + np.random.default_rng(2).normal(0.0, 0.7, size=means.shape)
    fit = map_em(x, protos, em_iter=30, tau=1.0, eps=1.0)
    cost = ((fit.mu[:, None] - means[None]) ** 2).sum(-1)
    rows, cols = linear_sum_assignment(cost)
    assert np.abs(fit.mu[rows] - means[cols]).max() < 0.1
    assert np.abs(fit.pi[rows] - weights[cols]).max() < 0.02
    assert np.abs(np.sqrt(fit.sigma[rows]) - sds[cols]).max() < 0.1


def test_prototype_assignment_is_the_argmax_of_the_last_e_step(mixture, gaussian_mixture):
    means, weights, sds = mixture
    x, labels = gaussian_mixture(2000, means, weights, sds, seed=3)
    fit = map_em(x, means, em_iter=3, tau=1.0, eps=1.0)
    assert fit.responsibilities.shape == (2000, 4)
    np.testing.assert_allclose(fit.responsibilities.sum(1), 1.0, atol=1e-5)
    assert fit.assignment.dtype == np.int64
    assert (fit.assignment == labels).mean() > 0.98  # well-separated: tiles go to their blob


def test_single_step_returns_responsibilities_of_the_prior():
    """With L=1 the returned q is computed at the prior mode (π uniform, μ=m, Σ=ε)."""
    x, protos = overlapping_slide()
    fit = map_em(x, protos, em_iter=1, tau=0.001, eps=0.1)
    d2 = ((x[:, None].astype(float) - protos[None]) ** 2).sum(-1)
    q = np.exp(-(d2 - d2.min(1, keepdims=True)) / (2 * 0.1))
    q /= q.sum(1, keepdims=True)
    np.testing.assert_allclose(fit.responsibilities, q, atol=1e-5)


def test_allcat_layout_and_length():
    rng = np.random.default_rng(0)
    p, d = 16, 12
    x = rng.normal(size=(300, d))
    fit = map_em(x, rng.normal(size=(p, d)))
    vec = panther_embedding(fit, "allcat")
    assert vec.dtype == np.float32 and vec.shape == (p + 2 * p * d,) == (embedding_dim(p, d),)
    np.testing.assert_array_equal(vec[:p], fit.pi)
    np.testing.assert_array_equal(vec[p : p + d], fit.mu[0])  # component-major: all of μ_1 first
    np.testing.assert_array_equal(vec[p + d : p + 2 * d], fit.mu[1])
    np.testing.assert_array_equal(vec[p + p * d : p + p * d + d], fit.sigma[0])
    pi, mu, sigma = split_allcat(vec, p)
    np.testing.assert_array_equal(mu, fit.mu)
    np.testing.assert_array_equal(sigma, fit.sigma)
    np.testing.assert_array_equal(pi, fit.pi)
    assert embedding_dim(16, 1024) == 32784


@pytest.mark.parametrize(
    "out_type",
    ["weight_all_cat", "weight_avg_all", "weight_avg_mean", "select_top3", "select_botC"],
)
def test_other_layouts(out_type):
    rng = np.random.default_rng(1)
    fit = map_em(rng.normal(size=(200, 5)), rng.normal(size=(6, 5)), em_iter=2)
    vec = panther_embedding(fit, out_type)
    assert vec.shape == (embedding_dim(6, 5, out_type),)
    if out_type == "weight_avg_mean":
        np.testing.assert_allclose(vec, fit.pi @ fit.mu, rtol=1e-5)
    if out_type == "select_top3":
        top = np.argsort(-fit.pi)[:3]
        np.testing.assert_array_equal(vec[:3], fit.pi[top])
        np.testing.assert_array_equal(vec[3:8], fit.mu[top[0]])


def test_unknown_layout_is_rejected():
    rng = np.random.default_rng(1)
    fit = map_em(rng.normal(size=(20, 5)), rng.normal(size=(3, 5)))
    with pytest.raises(ValueError, match="param_cat"):
        panther_embedding(fit, "param_cat")


def test_identical_across_reruns_and_float32_input_is_fine():
    x, protos = overlapping_slide()
    a = panther_embedding(map_em(x, protos, em_iter=3))
    b = panther_embedding(map_em(x.astype(np.float32), protos.astype(np.float32), em_iter=3))
    np.testing.assert_array_equal(a, panther_embedding(map_em(x, protos, em_iter=3)))
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_large_offset_features_stay_accurate():
    """Features far from the origin (e.g. un-normalised encoders) must not lose the variance."""
    x, protos = overlapping_slide()
    x = x.astype(np.float64)
    near = map_em(x, protos, em_iter=5, tau=1.0, eps=1.0)
    far = map_em(x + 1e6, protos + 1e6, em_iter=5, tau=1.0, eps=1.0)
    np.testing.assert_allclose(far.sigma, near.sigma, rtol=1e-5)
    np.testing.assert_allclose(far.pi, near.pi, rtol=1e-5)


def test_empty_slide_returns_the_prior():
    protos = np.arange(12, dtype=float).reshape(3, 4)
    fit = map_em(np.zeros((0, 4)), protos, em_iter=2, tau=0.001, eps=0.1)
    np.testing.assert_allclose(fit.pi, 1 / 3)
    np.testing.assert_allclose(fit.mu, protos)
    np.testing.assert_allclose(fit.sigma, 0.1, rtol=1e-6)
    assert fit.assignment.shape == (0,)


def test_rejects_bad_arguments():
    with pytest.raises(ValueError):
        map_em(np.zeros((3, 4)), np.zeros((2, 5)))
    with pytest.raises(ValueError):
        map_em(np.zeros((3, 4)), np.zeros((2, 4)), tau=0.0)
