"""A small ridge-penalised Cox model and Harrell's C-index, in torch and numpy.

Slide embeddings are wide (PANTHER: 32 784 numbers for 16 prototypes of UNI) and cohorts are small,
so an unpenalised Cox fit is meaningless; a ridge penalty on standardised features is the simplest
linear survival probe. ``lifelines``/``scikit-survival`` would do this too, but neither is a
dependency, and the partial likelihood is a few lines: Breslow's handling of ties, fitted with L-BFGS
in float64.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["RidgeCox", "concordance_index"]


def _breslow_nll(eta: torch.Tensor, time: np.ndarray, event: np.ndarray) -> torch.Tensor:
    """Mean negative Breslow partial log-likelihood over events."""
    order = np.argsort(-time, kind="stable")  # descending: the risk set of i is a prefix
    t_desc = time[order]
    ascending = t_desc[::-1]
    # with ties, the risk set of i runs to the last subject with the same time
    last = len(t_desc) - 1 - np.searchsorted(ascending, t_desc, side="left")
    eta_s = eta[order]
    log_risk = torch.logcumsumexp(eta_s, dim=0)[torch.as_tensor(last)]
    ev = torch.as_tensor(event[order].astype(bool))
    return -(eta_s[ev] - log_risk[ev]).sum() / max(int(ev.sum()), 1)


class RidgeCox:
    """``h(t | x) = h0(t) exp(xᵀβ)`` with penalty ``alpha/2 ‖β‖²`` on standardised ``x``."""

    def __init__(self, alpha: float = 1.0, max_iter: int = 200) -> None:
        self.alpha = alpha
        self.max_iter = max_iter

    def fit(self, x: np.ndarray, time: np.ndarray, event: np.ndarray) -> RidgeCox:
        x = np.asarray(x, np.float64)
        time = np.asarray(time, np.float64)
        event = np.asarray(event).astype(bool)
        if not event.any():
            raise ValueError("Cox fit needs at least one event")
        self.mean_ = x.mean(0)
        self.scale_ = x.std(0)
        self.scale_[self.scale_ == 0] = 1.0
        xt = torch.as_tensor((x - self.mean_) / self.scale_)
        beta = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS(
            [beta], max_iter=self.max_iter, line_search_fn="strong_wolfe", tolerance_grad=1e-9
        )

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = _breslow_nll(xt @ beta, time, event) + 0.5 * self.alpha * beta.pow(2).sum()
            loss.backward()
            return loss

        opt.step(closure)
        self.coef_ = beta.detach().numpy() / self.scale_
        return self

    def predict_risk(self, x: np.ndarray) -> np.ndarray:
        """Linear predictor ``xᵀβ`` (higher = earlier event)."""
        return (np.asarray(x, np.float64) - self.mean_) @ self.coef_


def concordance_index(time: np.ndarray, event: np.ndarray, risk: np.ndarray) -> float:
    """Harrell's C: of the pairs where the earlier time is an event, the share ranked riskier.

    Ties in risk count one half; pairs with equal times are not comparable.
    """
    time = np.asarray(time, np.float64)
    event = np.asarray(event).astype(bool)
    risk = np.asarray(risk, np.float64)
    num = den = 0.0
    for start in range(0, len(time), 1024):  # blocks keep the pair matrix small
        ti, ei, ri = (
            time[start : start + 1024, None],
            event[start : start + 1024, None],
            risk[start : start + 1024, None],
        )
        comparable = ei & (ti < time[None])
        num += float((comparable * ((ri > risk[None]) + 0.5 * (ri == risk[None]))).sum())
        den += float(comparable.sum())
    return num / den if den else float("nan")
