"""Seeded, bounded samples of patch features across a cohort.

Prototype fitting needs a few hundred thousand rows drawn from every slide, but the cohort's features
(millions of rows of 1-2k floats) never fit in RAM. Two limits keep the sample fair and bounded:
a per-slide cap (no slide with 100k tiles dominates the prototypes) and a reservoir over the capped
rows (a fixed budget without knowing the number of slides in advance). The reservoir lives in RAM when
small and in a memory-mapped ``.npy`` file otherwise, so only one slide is ever held whole.

PANTHER itself takes the *first* ``ceil(budget / n_slides)`` rows of every slide in file order;
``per_slide="first"`` reproduces that, the default draws the capped rows at random (tile order in
a store is raster order, so "first rows" means "top of the slide").
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

__all__ = ["CohortSample", "sample_cohort"]


@dataclass
class CohortSample:
    """Rows drawn from a cohort: ``features`` (possibly a memmap) and where they came from.

    ``n_seen`` counts the rows offered to the reservoir, i.e. after the per-slide caps.
    """

    features: np.ndarray
    slide_ids: list[str]
    n_seen: int
    tmpdir: tempfile.TemporaryDirectory | None = field(default=None, repr=False)

    @property
    def n(self) -> int:
        return int(self.features.shape[0])

    def close(self) -> None:
        """Drop the spill file (if any); the sample is unusable afterwards."""
        self.features = np.empty((0, self.features.shape[1]), np.float32)
        if self.tmpdir is not None:
            self.tmpdir.cleanup()
            self.tmpdir = None


def slide_rng(seed: int, slide_id: str) -> np.random.Generator:
    """A generator per slide that depends on the seed and the id, not on the slide's position.

    Re-ordering or extending a cohort then leaves each slide's own draw unchanged.
    """
    digest = hashlib.sha256(f"{seed}:{slide_id}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _allocate(rows: int, dim: int, memmap_bytes: int, workdir: str | Path | None):
    if rows * dim * 4 <= memmap_bytes:
        return np.empty((rows, dim), np.float32), None
    tmp = tempfile.TemporaryDirectory(prefix="slidestream-sample-", dir=workdir)
    path = Path(tmp.name) / "sample.npy"
    arr = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(rows, dim))
    return arr, tmp


def sample_cohort(
    slides: Iterable[tuple[str, np.ndarray]],
    budget: int,
    per_slide_cap: int | None = None,
    *,
    per_slide: Literal["random", "first"] = "random",
    seed: int = 0,
    memmap_bytes: int = 1 << 30,
    workdir: str | Path | None = None,
) -> CohortSample:
    """One pass over ``(slide_id, features (N, D))`` pairs into a sample of at most ``budget`` rows.

    ``per_slide_cap=None`` uses PANTHER's ``ceil(budget / n_slides)`` when ``slides`` has a length,
    otherwise no cap (the reservoir alone bounds the sample). Deterministic for a given seed,
    cohort and order.
    """
    if budget < 1:
        raise ValueError(f"budget must be >= 1, got {budget}")
    if per_slide_cap is None and hasattr(slides, "__len__") and len(slides) > 0:  # type: ignore[arg-type]
        per_slide_cap = -(-budget // len(slides))  # type: ignore[arg-type]
    rng = np.random.default_rng(seed)
    store: np.ndarray | None = None
    tmp = None
    seen = 0
    ids: list[str] = []
    for slide_id, feats in slides:
        feats = np.asarray(feats)
        if feats.ndim != 2:
            raise ValueError(f"{slide_id}: features must be (N, D), got shape {feats.shape}")
        if store is None:
            store, tmp = _allocate(budget, feats.shape[1], memmap_bytes, workdir)
        elif feats.shape[1] != store.shape[1]:
            raise ValueError(f"{slide_id}: feature dim {feats.shape[1]} != {store.shape[1]}")
        ids.append(slide_id)
        rows = feats
        if per_slide_cap is not None and len(feats) > per_slide_cap:
            if per_slide == "first":
                rows = feats[:per_slide_cap]
            else:
                pick = np.sort(
                    slide_rng(seed, slide_id).choice(len(feats), per_slide_cap, replace=False)
                )
                rows = feats[pick]
        seen = _reservoir_add(store, seen, rows.astype(np.float32, copy=False), rng)
    if store is None:
        raise ValueError("the cohort has no slides to sample from")
    kept = min(seen, budget)
    return CohortSample(store[:kept], ids, seen, tmp)


def _reservoir_add(store: np.ndarray, seen: int, rows: np.ndarray, rng: np.random.Generator) -> int:
    """Algorithm R, vectorised over a block of rows; returns the updated count of rows seen."""
    cap = store.shape[0]
    m = len(rows)
    fill = max(0, min(m, cap - seen))
    if fill:
        store[seen : seen + fill] = rows[:fill]
    if fill < m:
        positions = seen + np.arange(fill, m)  # global 0-based index of each remaining row
        slots = rng.integers(0, positions + 1)  # row i survives with probability cap / (i + 1)
        hit = slots < cap
        src, dst = np.nonzero(hit)[0] + fill, slots[hit]
        # a later row replacing the same slot wins, exactly as in the sequential algorithm
        _, last = np.unique(dst[::-1], return_index=True)
        keep = len(dst) - 1 - last
        store[dst[keep]] = rows[src[keep]]
    return seen + m
