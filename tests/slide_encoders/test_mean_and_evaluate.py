"""Mean pooling and the linear / Cox probes with patient-level folds."""

from __future__ import annotations

import numpy as np
import pytest

from slidestream.slide_encoders.cox import RidgeCox, concordance_index
from slidestream.slide_encoders.evaluate import cox_probe, linear_probe, patient_folds
from slidestream.slide_encoders.mean import mean_embedding


def test_mean_and_meanmax():
    x = np.array([[1.0, 5.0], [3.0, -1.0]], np.float32)
    np.testing.assert_array_equal(mean_embedding(x), [2.0, 2.0])
    np.testing.assert_array_equal(mean_embedding(x, "meanmax"), [2.0, 2.0, 3.0, 5.0])
    with pytest.raises(ValueError, match="empty"):
        mean_embedding(x[:0])
    with pytest.raises(ValueError, match="mode"):
        mean_embedding(x, "median")


def cohort(n_patients=60, slides_per_patient=2, seed=0):
    rng = np.random.default_rng(seed)
    patient = np.repeat(np.arange(n_patients), slides_per_patient).astype(str)
    label = np.repeat(rng.integers(0, 2, n_patients), slides_per_patient)
    x = rng.normal(size=(len(label), 10))
    x[:, 0] += 2.0 * label
    return x, label, patient


def test_folds_never_split_a_patient():
    _, label, patient = cohort()
    folds = patient_folds(label, patient, n_splits=5, seed=0)
    for p in np.unique(patient):
        assert len(set(folds[patient == p])) == 1
    assert set(folds) == set(range(5))


def test_linear_probe_separable_vs_noise():
    x, label, patient = cohort()
    good = linear_probe(x, label, patient, n_splits=5)
    assert len(good.per_fold) == 5
    assert good.summary["auroc"][0] > 0.85 and good.summary["balanced_accuracy"][0] > 0.75
    noise = linear_probe(x[:, 1:], label, patient, n_splits=5)
    assert noise.summary["auroc"][0] < 0.7
    assert "auroc" in str(good) and "±" in str(good)


def test_linear_probe_multiclass_and_given_folds():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 150)
    x = rng.normal(size=(150, 6)) + np.eye(3, 6)[y] * 3
    folds = np.arange(150) % 3
    res = linear_probe(x, y, np.arange(150), folds=folds)
    assert len(res.per_fold) == 3 and res.summary["auroc"][0] > 0.9


def survival(n=300, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5))
    risk = 1.5 * x[:, 0] - 1.0 * x[:, 1]
    t_event = rng.exponential(np.exp(-risk))
    t_cens = rng.exponential(2.0, n)
    return x, np.minimum(t_event, t_cens), t_event <= t_cens, risk


def test_concordance_index_matches_brute_force():
    rng = np.random.default_rng(2)
    t = rng.integers(0, 20, 60).astype(float)  # ties in time
    e = rng.random(60) < 0.6
    r = rng.integers(0, 5, 60).astype(float)  # ties in risk
    num = den = 0.0
    for i in range(60):
        for j in range(60):
            if e[i] and t[i] < t[j]:
                den += 1
                num += 1.0 if r[i] > r[j] else 0.5 if r[i] == r[j] else 0.0
    assert concordance_index(t, e, r) == pytest.approx(num / den)


def test_ridge_cox_recovers_the_direction_of_risk():
    x, t, e, _ = survival()
    model = RidgeCox(alpha=0.01).fit(x, t, e)
    beta = model.coef_
    assert beta[0] > 1.0 and beta[1] < -0.6 and np.abs(beta[2:]).max() < 0.3
    assert concordance_index(t, e, model.predict_risk(x)) > 0.75
    shrunk = RidgeCox(alpha=100.0).fit(x, t, e).coef_
    assert np.linalg.norm(shrunk) < 0.2 * np.linalg.norm(beta)


def test_cox_probe_cross_validated():
    x, t, e, _ = survival()
    groups = np.arange(len(t)) // 2
    res = cox_probe(x, t, e, groups, n_splits=4, alpha=1.0)
    assert len(res.per_fold) == 4 and res.summary["c_index"][0] > 0.7
    noise = cox_probe(x[:, 2:], t, e, groups, n_splits=4)
    assert noise.summary["c_index"][0] < 0.62


def test_breslow_partial_likelihood_with_tied_times():
    import torch

    from slidestream.slide_encoders.cox import _breslow_nll

    rng = np.random.default_rng(3)
    t = rng.integers(0, 6, 40).astype(float)
    e = rng.random(40) < 0.7
    eta = rng.normal(size=40)
    expected = -np.mean([eta[i] - np.log(np.exp(eta[t >= t[i]]).sum()) for i in range(40) if e[i]])
    got = float(_breslow_nll(torch.as_tensor(eta), t, e))
    assert got == pytest.approx(expected, rel=1e-10)
