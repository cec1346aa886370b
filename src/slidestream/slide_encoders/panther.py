"""PANTHER slide embeddings (Song et al., CVPR 2024): a MAP Gaussian mixture per slide.

Each slide's tiles are modelled as a mixture of ``p`` diagonal Gaussians whose prior comes from the
cohort prototypes: means ``m_k`` (the prototypes), variances ``V = ε`` in every coordinate, and a
pseudo-count ``τ`` that pulls weights, means and variances toward that prior. ``L`` EM steps from the
prior's mode give ``(π, μ, Σ)``; their concatenation is the slide embedding.

Defaults are the values the released code *actually* runs with (``L=1, τ=0.001, ε=0.1``; the
command-line ``--em_iter/--tau/--ot_eps`` of its scripts never reach the model), see SLIDE_LEVEL §1.5.

Numerics, where this departs from the reference (which is float32 torch): statistics are computed in
float64 on features centred at the slide mean (the fit is translation-equivariant, and centring
removes the cancellation in ``E[x²] − μ²``); the returned parameters are float32 as in the reference.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp

__all__ = [
    "OUT_TYPES",
    "PantherFit",
    "embedding_dim",
    "map_em",
    "map_objective",
    "panther_embedding",
    "split_allcat",
]

OUT_TYPES = (
    "allcat",
    "weight_all_cat",
    "weight_avg_all",
    "weight_avg_mean",
    "select_topC",
    "select_botC",
)


@dataclass
class PantherFit:
    """MAP mixture of one slide and the responsibilities of the last E-step.

    ``responsibilities (N, p)`` are computed with the parameters *before* the final M-step, as in the
    reference; ``assignment`` (argmax over prototypes) is what a prototype map colours each tile by.
    ``objective`` holds the MAP objective of the initial parameters and after every M-step.
    """

    pi: np.ndarray  # (p,)
    mu: np.ndarray  # (p, d)
    sigma: np.ndarray  # (p, d) diagonal variances
    responsibilities: np.ndarray  # (N, p)
    objective: list[float]

    @property
    def assignment(self) -> np.ndarray:
        """Prototype index of every tile (``int64 (N,)``)."""
        return self.responsibilities.argmax(axis=1).astype(np.int64)


def _log_joint(x: np.ndarray, pi: np.ndarray, mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """``log π_k + log N(x_n | μ_k, diag Σ_k)`` for all tiles and components, ``(N, p)``.

    Expanded as in ``mog_eval`` so the cost is three matrix products, not an ``(N, p, d)`` tensor.
    """
    inv = 1.0 / sigma
    d = x.shape[1]
    quad = (x * x) @ inv.T - 2.0 * x @ (mu * inv).T + (mu * mu * inv).sum(1)[None]
    logdet = np.log(sigma).sum(1)[None]
    return np.log(pi)[None] - 0.5 * (d * math.log(2 * math.pi) + logdet + quad)


def map_objective(
    x: np.ndarray,
    pi: np.ndarray,
    mu: np.ndarray,
    sigma: np.ndarray,
    prior_mean: np.ndarray,
    prior_var: np.ndarray,
    tau: float,
) -> float:
    """Log-likelihood plus log prior (up to a constant) that the M-step maximises exactly.

    The prior behind the update rules is a Dirichlet with ``τ`` extra counts per component and, per
    coordinate, ``τ`` pseudo-observations with mean ``m`` and spread ``V``:
    ``τ Σ log π_k − Σ_kj [τ/2 log Σ_kj + τ((μ_kj − m_kj)² + V_kj) / (2 Σ_kj)]``. EM may not
    decrease this quantity, which is what the tests check.
    """
    x = np.asarray(x, np.float64)
    loglik = float(logsumexp(_log_joint(x, pi, mu, sigma), axis=1).sum()) if len(x) else 0.0
    prior = tau * float(np.log(pi).sum()) - float(
        (0.5 * tau * np.log(sigma) + tau * ((mu - prior_mean) ** 2 + prior_var) / (2 * sigma)).sum()
    )
    return loglik + prior


def map_em(
    features: np.ndarray,
    prototypes: np.ndarray,
    *,
    em_iter: int = 1,
    tau: float = 0.001,
    eps: float = 0.1,
    track_objective: bool = False,
) -> PantherFit:
    """DIEM-style MAP-EM of one slide (SLIDE_LEVEL §1.3), started at the prior's mode.

    ``features (N, d)``, ``prototypes (p, d)``; ``em_iter`` = L, ``tau`` = τ, ``eps`` = ε (the
    prior variance, ``ot_eps`` in the reference). An empty slide returns the prior itself.
    """
    if em_iter < 1:
        raise ValueError(f"em_iter must be >= 1, got {em_iter}")
    if tau <= 0 or eps <= 0:
        # τ > 0 is what keeps Σ positive for a component that receives no tiles
        raise ValueError(f"need tau > 0 and eps > 0, got tau={tau}, eps={eps}")
    x = np.asarray(features, np.float64)
    m = np.asarray(prototypes, np.float64)
    if x.ndim != 2 or m.ndim != 2 or x.shape[1] != m.shape[1]:
        raise ValueError(f"features {x.shape} and prototypes {m.shape} must be (N, d) and (p, d)")
    p = m.shape[0]
    shift = x.mean(0) if len(x) else np.zeros(m.shape[1])
    x, m = x - shift, m - shift
    v = np.full_like(m, eps)

    pi, mu, sigma = np.full(p, 1.0 / p), m.copy(), v.copy()
    objective = [map_objective(x, pi, mu, sigma, m, v, tau)] if track_objective else []
    q = np.zeros((len(x), p))
    for _ in range(em_iter):
        if len(x):
            log_joint = _log_joint(x, pi, mu, sigma)
            q = np.exp(log_joint - logsumexp(log_joint, axis=1, keepdims=True))
        s0 = q.sum(0)
        s1 = q.T @ x
        s2 = q.T @ (x * x)
        denom = s0 + tau
        pi = denom / denom.sum()
        mu = (s1 + tau * m) / denom[:, None]
        sigma = (s2 + tau * (v + m * m)) / denom[:, None] - mu * mu
        if track_objective:
            objective.append(map_objective(x, pi, mu, sigma, m, v, tau))
    return PantherFit(
        pi=pi.astype(np.float32),
        mu=(mu + shift).astype(np.float32),
        sigma=sigma.astype(np.float32),
        responsibilities=q.astype(np.float32),
        objective=objective,
    )


def _top_count(out_type: str) -> int:
    match = re.fullmatch(r"select_(?:top|bot)(\d*)(?:C)?", out_type)
    if match is None:
        raise ValueError(f"unknown out_type {out_type!r}; choose from {', '.join(OUT_TYPES)}")
    return int(match.group(1) or 1)


def panther_embedding(fit: PantherFit, out_type: str = "allcat") -> np.ndarray:
    """The slide vector in the reference's order (``PANTHERBase.out``), float32.

    ``allcat`` = ``[π (p), μ_1 … μ_p (p·d), Σ_1 … Σ_p (p·d)]`` (component-major).
    ``select_topC`` / ``select_botC`` take C from a numeric suffix (``select_top3``; default 1) and
    keep ``[π, μ, Σ]`` of the components with the largest / smallest weight, in that order.
    """
    pi, mu, sigma = fit.pi, fit.mu, fit.sigma
    if out_type == "allcat":
        parts = [pi, mu.ravel(), sigma.ravel()]
    elif out_type == "weight_all_cat":
        parts = [(pi[:, None] * mu).ravel(), (pi[:, None] * sigma).ravel()]
    elif out_type == "weight_avg_all":
        parts = [pi @ mu, pi @ sigma]
    elif out_type == "weight_avg_mean":
        parts = [pi @ mu]
    elif out_type.startswith("select_"):
        c = min(_top_count(out_type), len(pi))
        order = np.argsort(-pi if "top" in out_type else pi, kind="stable")[:c]
        parts = [pi[order], mu[order].ravel(), sigma[order].ravel()]
    else:
        raise ValueError(f"unknown out_type {out_type!r}; choose from {', '.join(OUT_TYPES)}")
    return np.concatenate(parts).astype(np.float32)


def embedding_dim(p: int, d: int, out_type: str = "allcat") -> int:
    """Length of :func:`panther_embedding` for ``p`` prototypes of dimension ``d``."""
    if out_type == "allcat":
        return p + 2 * p * d
    if out_type == "weight_all_cat":
        return 2 * p * d
    if out_type == "weight_avg_all":
        return 2 * d
    if out_type == "weight_avg_mean":
        return d
    return min(_top_count(out_type), p) * (2 * d + 1)


def split_allcat(vector: np.ndarray, p: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Invert ``allcat`` into ``(π (p,), μ (p, d), Σ (p, d))`` (the reference's "tokenizer")."""
    vector = np.asarray(vector)
    d, rest = divmod(vector.shape[-1] - p, 2 * p)
    if rest or d < 1:
        raise ValueError(f"length {vector.shape[-1]} is not p + 2·p·d for p={p}")
    pi = vector[..., :p]
    mu = vector[..., p : p + p * d].reshape(*vector.shape[:-1], p, d)
    sigma = vector[..., p + p * d :].reshape(*vector.shape[:-1], p, d)
    return pi, mu, sigma
