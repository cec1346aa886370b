"""Losses and metrics against direct transcriptions of their definitions."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from slidestream.mil.losses import (
    cox_partial_nll,
    discrete_survival_curve,
    discrete_survival_nll,
    smooth_top1_svm,
)
from slidestream.mil.metrics import classification_metrics, concordance_index, summarize


def test_smooth_svm_matches_definition():
    torch.manual_seed(0)
    s, y = torch.randn(6, 2), torch.tensor([0, 1, 1, 0, 1, 0])
    expected = []
    for row, label in zip(s, y, strict=True):
        terms = [(float(j != label) + row[j] - row[label]) for j in range(2)]
        expected.append(math.log(sum(math.exp(t) for t in terms)))
    assert smooth_top1_svm(s, y).item() == pytest.approx(np.mean(expected), rel=1e-5)


def test_smooth_svm_switches_to_hinge_for_large_margins():
    s, y = torch.tensor([[20.0, 0.0], [0.0, 20.0]]), torch.tensor([0, 0])
    # row 0: correct with a big margin -> hinge 0; row 1: wrong -> hinge 1 + 20
    assert smooth_top1_svm(s, y).item() == pytest.approx((0.0 + 21.0) / 2)


def test_cox_loss_breslow_with_ties():
    risk = torch.tensor([0.3, -1.0, 2.0, 0.5, 0.0])
    time = torch.tensor([5.0, 3.0, 3.0, 8.0, 1.0])
    event = torch.tensor([1, 1, 0, 1, 0])
    terms = []
    for i in range(5):
        if event[i]:
            at_risk = [j for j in range(5) if time[j] >= time[i]]
            terms.append(risk[i] - torch.log(torch.exp(risk[at_risk]).sum()))
    expected = -torch.stack(terms).mean()
    assert cox_partial_nll(risk, time, event).item() == pytest.approx(expected.item(), rel=1e-6)


def test_cox_loss_without_events_is_zero_but_differentiable():
    risk = torch.tensor([0.3, -1.0], requires_grad=True)
    loss = cox_partial_nll(risk, torch.tensor([1.0, 2.0]), torch.tensor([0, 0]))
    loss.backward()
    assert loss.item() == 0.0 and risk.grad is not None


def test_discrete_nll_matches_probability_form():
    torch.manual_seed(1)
    logits = torch.randn(5, 4)
    y, e = torch.tensor([0, 1, 3, 2, 0]), torch.tensor([1, 0, 1, 0, 0])
    h = torch.sigmoid(logits)
    surv = torch.cumprod(1 - h, dim=1)
    surv_pad = torch.cat([torch.ones(5, 1), surv], dim=1)
    for alpha in (0.0, 0.4):
        unc = -e * (torch.log(surv_pad[range(5), y]) + torch.log(h[range(5), y]))
        cen = -(1 - e) * torch.log(surv_pad[range(5), y + 1])
        expected = ((1 - alpha) * (unc + cen) + alpha * unc).mean()
        got = discrete_survival_nll(logits, y, e, alpha)
        assert got.item() == pytest.approx(expected.item(), rel=1e-5)
    assert torch.allclose(discrete_survival_curve(logits), surv, atol=1e-6)


def test_discrete_nll_hand_computed_reference_case():
    """Zadeh & Schmid NLL as PORPOISE/Patho-Bench ``nll_loss`` writes it, worked out by hand.

    Both bags have hazards σ(log 3, −log 3, 0) = (3/4, 1/4, 1/2). Bag A has its event in bin 1:
    −log S_0 − log h_1 = −log(1/4) − log(1/4) = 4 log 2. Bag B is censored in bin 2 (the
    reference's ``c = 1``): −log S_2 = −log(1/4 · 3/4 · 1/2) = log(32/3).
    """
    z = torch.tensor([[math.log(3), -math.log(3), 0.0]] * 2, dtype=torch.float64)
    y, e = torch.tensor([1, 2]), torch.tensor([1.0, 0.0])
    a, b = 4 * math.log(2), math.log(32 / 3)
    assert discrete_survival_nll(z, y, e).item() == pytest.approx((a + b) / 2, rel=1e-12)
    # alpha = 0.4 (PORPOISE's default): (1 − α)(a + b) + α·a, averaged over the two bags
    expected = (0.6 * (a + b) + 0.4 * a) / 2
    assert discrete_survival_nll(z, y, e, alpha=0.4).item() == pytest.approx(expected, rel=1e-12)


def _cindex_loop(time, event, risk):
    num = den = 0.0
    for i, j in itertools.permutations(range(len(time)), 2):
        if event[i] and (time[j] > time[i] or (time[j] == time[i] and not event[j])):
            den += 1
            num += 1.0 if risk[i] > risk[j] else 0.5 if risk[i] == risk[j] else 0.0
    return num / den


def test_cindex_matches_pairwise_loop():
    rng = np.random.default_rng(0)
    time = rng.integers(1, 10, size=40).astype(float)  # many ties on purpose
    event = rng.integers(0, 2, size=40)
    risk = rng.integers(0, 5, size=40).astype(float)
    assert concordance_index(time, event, risk) == pytest.approx(_cindex_loop(time, event, risk))
    assert concordance_index(time, np.ones(40), -time) == 1.0
    assert concordance_index(time, np.ones(40), time) == pytest.approx(
        _cindex_loop(time, np.ones(40), time)
    )


def test_classification_metrics_binary_and_multiclass():
    m = classification_metrics(
        np.array([0, 0, 1, 1]),
        np.array([[0.9, 0.1], [0.4, 0.6], [0.3, 0.7], [0.2, 0.8]]),
        ["0", "1"],
    )
    assert m["auroc_macro"] == 1.0
    assert m["confusion_matrix"] == [[1, 1], [0, 2]]
    assert m["balanced_accuracy"] == 0.75
    probs = np.eye(3)[[0, 1, 2, 2]] * 0.8 + 0.2 / 3
    m3 = classification_metrics(np.array([0, 1, 2, 1]), probs, ["a", "b", "c"])
    assert set(m3["auroc_per_class"]) == {"a", "b", "c"}
    assert m3["confusion_matrix"][1] == [0, 1, 1]


def test_summarize_mean_and_std():
    folds = [{"c_index": 0.7}, {"c_index": 0.8}, {"c_index": float("nan")}]
    out = summarize(folds, ["c_index"])
    assert out["c_index"]["mean"] == pytest.approx(0.75)
    assert out["c_index"]["std"] == pytest.approx(np.std([0.7, 0.8], ddof=1))
