"""The discrete-time NLL must rank patients about as well as Cox on a planted-risk cohort.

Issue 16 §4: with one free hazard head per time bin, NLL-trained ABMIL reached a c-index of
0.55-0.59 where Cox reached 0.67-0.72, and its risks barely followed the planted risk. The
shared head (one risk added to life-table baseline hazards) closes that gap; these tests hold
it closed and show the per-bin head as the negative control.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from slidestream.mil import InMemoryBagSource, TrainConfig, get_model, labels_from_frame
from slidestream.mil.tasks import build_task
from slidestream.mil.train import fit, infer
from tests.mil.mil_synthetic import DIM, Synthetic, make_shifted_survival


@pytest.fixture(scope="module")
def shifted() -> Synthetic:
    return make_shifted_survival(140, seed=0)


def train_survival(data: Synthetic, loss: str, **kw) -> tuple[float, float]:
    """Train on 100 bags (early stopping on 40 more), score all 140: c-index and Spearman."""
    labels = labels_from_frame(data.table.drop(columns="share"), "survival")
    ids = labels.slide_ids
    config = TrainConfig(
        task="survival",
        survival_loss=loss,
        epochs=6,
        patience=3,
        lr=1e-3,
        batch_size=16 if loss == "cox" else 8,
        **kw,
    )
    task = build_task(config, labels, ids[:100])
    torch.manual_seed(0)
    model = get_model("abmil", DIM, task.n_outputs)
    rows = labels.table.set_index("slide_id", drop=False)
    source = InMemoryBagSource(data.bags)
    fit(model, task, rows, ids[:100], ids[100:], source, config, np.random.default_rng(0))
    logits, _ = infer(model, ids, source)
    risk = task.outputs(logits)["risk"].to_numpy()
    c_index = task.metrics(rows.loc[ids], task.outputs(logits))["c_index"]
    rho = spearmanr(risk, data.table.set_index("slide_id").loc[ids, "share"]).correlation
    return c_index, rho


@pytest.mark.slow  # 12-26 s on the shared 2-core machine
def test_nll_ranks_like_cox(shifted):
    cox_c, cox_rho = train_survival(shifted, "cox")
    nll_c, nll_rho = train_survival(shifted, "nll")
    assert nll_c > cox_c - 0.03, (nll_c, cox_c)
    assert nll_rho > 0.78, (nll_rho, cox_rho)  # per-bin head: 0.74-0.75


def test_shared_head_baseline_is_the_life_table_and_round_trips():
    import pandas as pd

    from slidestream.mil.tasks import DiscreteSurvivalTask, task_from_spec

    train = pd.DataFrame({"time": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], "event": [1, 0, 1, 1, 0, 1]})
    task = DiscreteSurvivalTask.from_training(train, n_bins=2, alpha=0.0)
    assert task.n_outputs == 1 and task.n_bins == 2
    # edge = median event time 3.5: bin 0 holds 3 bags (2 events) of 6 at risk, bin 1 2 of 3
    h = np.array([(2 + 0.5) / (6 + 1), (2 + 0.5) / (3 + 1)])
    np.testing.assert_allclose(task.baseline, np.log(h / (1 - h)))
    again = task_from_spec(task.spec())
    logits = np.array([[-1.0], [0.0], [2.0]])
    out, back = task.outputs(logits), again.outputs(logits)
    np.testing.assert_allclose(out.to_numpy(), back.to_numpy())
    np.testing.assert_allclose(
        out["surv_0"], 1 - 1 / (1 + np.exp(-(logits[:, 0] + task.baseline[0])))
    )
    assert np.all(np.diff(out["risk"]) > 0)  # a larger shared log-odds is a larger risk
    per_bin = DiscreteSurvivalTask.from_training(train, 2, 0.0, head="per_bin")
    assert per_bin.n_outputs == 2 and "baseline" not in per_bin.spec()
