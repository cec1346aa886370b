"""Synthetic bags for the MIL tests.

Background tiles come from a few "tissue" clusters; a bag of class ``c > 0`` also holds 3-5
tiles from a class-specific cluster (the planted positive instances). Survival bags hold 0-6
"aggressive" tiles and their event times are exponential with hazard ``exp(1.2 · m)``.
Sizes are small so that every model trains in a few CPU seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

DIM = 32


@dataclass
class Synthetic:
    bags: dict[str, tuple[np.ndarray, np.ndarray]]
    planted: dict[str, np.ndarray]
    table: pd.DataFrame


def _geometry(n_classes: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(12345)  # fixed: every call shares the same clusters
    tissue = rng.normal(size=(4, dim)) * 1.5
    planted = rng.normal(size=(n_classes + 1, dim)) * 1.5
    return tissue, planted


def make_bags(
    n_bags: int,
    n_classes: int = 2,
    seed: int = 0,
    slides_per_patient: int = 1,
    n_tiles: tuple[int, int] = (20, 40),
    prefix: str = "s",
) -> Synthetic:
    tissue, centres = _geometry(n_classes, DIM)
    rng = np.random.default_rng(seed)
    bags, planted, rows = {}, {}, []
    for i in range(n_bags):
        patient = i // slides_per_patient
        y = patient % n_classes
        n = int(rng.integers(*n_tiles))
        x = tissue[rng.integers(len(tissue), size=n)] + 0.6 * rng.normal(size=(n, DIM))
        idx = np.array([], dtype=np.int64)
        if y > 0:
            k = int(rng.integers(3, 6))
            idx = np.sort(rng.choice(n, size=k, replace=False))
            x[idx] = centres[y] + 0.6 * rng.normal(size=(k, DIM))
        coords = np.stack([rng.permutation(n) * 224, np.zeros(n, dtype=np.int64)], axis=1)
        sid = f"{prefix}{i:03d}"
        bags[sid] = (x.astype(np.float32), coords.astype(np.int64))
        planted[sid] = idx
        rows.append({"slide_id": sid, "patient_id": f"p{patient:03d}", "label": str(y)})
    return Synthetic(bags, planted, pd.DataFrame(rows))


def make_survival(n_bags: int, seed: int = 0, beta: float = 1.2) -> Synthetic:
    tissue, centres = _geometry(1, DIM)
    rng = np.random.default_rng(seed)
    bags, planted, rows = {}, {}, []
    for i in range(n_bags):
        n, m = int(rng.integers(20, 40)), int(rng.integers(0, 7))
        x = tissue[rng.integers(len(tissue), size=n)] + 0.6 * rng.normal(size=(n, DIM))
        idx = np.sort(rng.choice(n, size=m, replace=False))
        x[idx] = centres[1] + 0.6 * rng.normal(size=(m, DIM))
        t = rng.exponential(100.0 / np.exp(beta * m))
        c = rng.exponential(100.0)
        sid = f"v{i:03d}"
        bags[sid] = (x.astype(np.float32), np.zeros((n, 2), dtype=np.int64))
        planted[sid] = idx
        rows.append(
            {"slide_id": sid, "patient_id": f"q{i:03d}", "time": min(t, c), "event": int(t <= c)}
        )
    return Synthetic(bags, planted, pd.DataFrame(rows))


def precision_at_k(scores: dict[str, np.ndarray], planted: dict[str, np.ndarray]) -> float:
    """Mean share of planted tiles among the k top-scored tiles (k = #planted) of positive bags."""
    values = [
        np.isin(np.argsort(-scores[s], kind="stable")[: len(p)], p).mean()
        for s, p in planted.items()
        if len(p) and s in scores
    ]
    return float(np.mean(values))


def make_shifted_survival(n_bags: int = 140, seed: int = 0, beta: float = 4.0) -> Synthetic:
    """Survival bags whose planted risk is the *share* of shifted tiles (0-60 % of each bag).

    A shifted tile is a background tile plus one fixed offset; event times are exponential with
    hazard ``exp(beta · share)`` and about a third to 40 % of the bags are censored. ``planted``
    holds the shifted tile indices; the table has an extra ``share`` column (the oracle risk).
    """
    tissue, _ = _geometry(1, DIM)
    rng = np.random.default_rng(seed)
    shift = rng.normal(size=DIM)
    shift *= 4.0 / np.linalg.norm(shift)
    bags, planted, rows = {}, {}, []
    for i in range(n_bags):
        n = int(rng.integers(20, 40))
        x = tissue[rng.integers(len(tissue), size=n)] + 0.6 * rng.normal(size=(n, DIM))
        idx = np.sort(rng.choice(n, size=round(rng.uniform(0, 0.6) * n), replace=False))
        x[idx] += shift
        share = len(idx) / n
        t = rng.exponential(100.0 / np.exp(beta * share))
        c = rng.exponential(45.0)
        sid = f"h{i:03d}"
        bags[sid] = (x.astype(np.float32), np.zeros((n, 2), dtype=np.int64))
        planted[sid] = idx
        rows.append(
            {
                "slide_id": sid,
                "patient_id": f"k{i:03d}",
                "time": min(t, c),
                "event": int(t <= c),
                "share": share,
            }
        )
    return Synthetic(bags, planted, pd.DataFrame(rows))
