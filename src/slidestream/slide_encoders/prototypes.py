"""Cohort prototypes for PANTHER: K-means centres of sampled patch features, saved with provenance.

PANTHER clusters ``16 × 100 000`` sampled features with (faiss or sklearn) K-means and uses the
centres as the prior means of every slide's mixture. The sample can be several GB, so it is streamed
in random chunks from the (possibly memory-mapped) :class:`~.sampling.CohortSample`:

- ``algorithm="minibatch"``: sklearn ``MiniBatchKMeans.partial_fit`` over shuffled chunks, a few
  epochs. Fast; the centres are close to, not equal to, full K-means.
- ``algorithm="lloyd"``: exact Lloyd iterations (PANTHER's sklearn mode, ``max_iter=50``) whose
  sums and counts are accumulated chunk by chunk in float64 — full K-means with bounded memory.

Prototypes are written as ``<name>.npz`` (array ``prototypes (K, D)``) plus ``<name>.json`` with the
provenance that makes the embedding reproducible (encoder, slide ids, K, seed, sample size).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from sklearn.cluster import MiniBatchKMeans, kmeans_plusplus

from slidestream.atomic import atomic_path, atomic_write_text
from slidestream.errors import ConfigError
from slidestream.slide_encoders.sampling import CohortSample, sample_cohort

__all__ = ["Prototypes", "fit_prototypes", "kmeans_chunked", "load_prototypes"]


@dataclass
class Prototypes:
    """``centers (K, D)`` float32 and a JSON-able provenance record."""

    centers: np.ndarray
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def k(self) -> int:
        return int(self.centers.shape[0])

    @property
    def dim(self) -> int:
        return int(self.centers.shape[1])

    def save(self, path: str | Path) -> Path:
        """Write ``path`` (``.npz``) and its ``.json`` sidecar; returns the ``.npz`` path."""
        path = Path(path).with_suffix(".npz")
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"k": self.k, "dim": self.dim, **self.provenance}
        atomic_write_text(path.with_suffix(".json"), json.dumps(meta, indent=2, sort_keys=True))
        with atomic_path(path) as tmp:  # the .npz last: its presence means the pair is complete
            np.savez(tmp, prototypes=self.centers.astype(np.float32))
        return path


def load_prototypes(path: str | Path) -> Prototypes:
    """Read prototypes from ``.npz`` (+ optional ``.json``) or a bare ``(K, D)``/``(1, K, D)`` ``.npy``."""
    path = Path(path)
    if not path.exists() and path.suffix not in (".npz", ".npy"):
        path = path.with_suffix(".npz")  # what :meth:`Prototypes.save` wrote for a bare name
    if not path.exists():
        raise ConfigError(path, "prototype file does not exist (fit it with --fit first)")
    try:
        if path.suffix == ".npy":
            centers = np.load(path, allow_pickle=False)
        else:
            with np.load(path, allow_pickle=False) as data:
                centers = data["prototypes"]
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(path, f"not a prototype file ({exc})") from exc
    centers = np.asarray(centers, np.float32)
    if centers.ndim == 3 and centers.shape[0] == 1:  # PANTHER stores (1, K, D)
        centers = centers[0]
    if centers.ndim != 2:
        raise ConfigError(path, f"prototypes must have shape (K, D), got {centers.shape}")
    sidecar = path.with_suffix(".json")
    provenance = json.loads(sidecar.read_text()) if sidecar.exists() else {}
    return Prototypes(centers, provenance)


def _chunks(n: int, size: int, rng: np.random.Generator) -> Iterable[np.ndarray]:
    """Random, disjoint index chunks covering ``range(n)``, each sorted for memmap locality."""
    order = rng.permutation(n)
    for start in range(0, n, size):
        yield np.sort(order[start : start + size])


def kmeans_chunked(
    x: np.ndarray,
    k: int,
    *,
    algorithm: Literal["minibatch", "lloyd"] = "minibatch",
    seed: int = 0,
    chunk_size: int = 8192,
    epochs: int = 5,
    max_iter: int = 50,
    tol: float = 1e-6,
) -> np.ndarray:
    """K-means centres of ``x (n, D)`` (array or memmap) reading ``chunk_size`` rows at a time."""
    n = len(x)
    if n < k:
        raise ValueError(f"need at least k={k} samples for K-means, got {n}")
    rng = np.random.default_rng(seed)
    if algorithm == "minibatch":
        km = MiniBatchKMeans(
            n_clusters=k, random_state=seed, batch_size=min(chunk_size, n), n_init=1
        )
        # k-means++ on a random subsample: partial_fit would otherwise seed from its first chunk only
        init_rows = np.sort(rng.choice(n, min(n, max(chunk_size, 32 * k)), replace=False))
        km.init, _ = kmeans_plusplus(np.asarray(x[init_rows], np.float64), k, random_state=seed)
        for _ in range(epochs):
            for idx in _chunks(n, chunk_size, rng):
                km.partial_fit(np.asarray(x[idx], np.float32))
        return km.cluster_centers_.astype(np.float32)
    if algorithm != "lloyd":
        raise ValueError(f"unknown algorithm {algorithm!r}: use 'minibatch' or 'lloyd'")
    init_rows = np.sort(rng.choice(n, min(n, max(chunk_size, 32 * k)), replace=False))
    centers, _ = kmeans_plusplus(np.asarray(x[init_rows], np.float64), k, random_state=seed)
    for _ in range(max_iter):
        sums = np.zeros_like(centers)
        counts = np.zeros(k)
        c_sq = (centers**2).sum(1)
        for start in range(0, n, chunk_size):
            block = np.asarray(x[start : start + chunk_size], np.float64)
            label = np.argmin(c_sq[None] - 2.0 * block @ centers.T, axis=1)
            np.add.at(sums, label, block)
            counts += np.bincount(label, minlength=k)
        empty = counts == 0
        new = np.where(empty[:, None], centers, sums / np.maximum(counts, 1)[:, None])
        shift = float(((new - centers) ** 2).sum())
        centers = new
        if shift <= tol * float((centers**2).sum() + 1e-12):
            break
    return centers.astype(np.float32)


def fit_prototypes(
    slides: Iterable[tuple[str, np.ndarray]],
    k: int = 16,
    *,
    samples_per_prototype: int = 100_000,
    per_slide_cap: int | None = None,
    per_slide: Literal["random", "first"] = "random",
    algorithm: Literal["minibatch", "lloyd"] = "minibatch",
    seed: int = 0,
    encoder: str | None = None,
    chunk_size: int = 8192,
    epochs: int = 5,
    workdir: str | Path | None = None,
) -> Prototypes:
    """Sample ``k × samples_per_prototype`` rows across the cohort and cluster them (PANTHER §1.6)."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    sample: CohortSample = sample_cohort(
        slides,
        budget=k * samples_per_prototype,
        per_slide_cap=per_slide_cap,
        per_slide=per_slide,
        seed=seed,
        workdir=workdir,
    )
    try:
        centers = kmeans_chunked(
            sample.features, k, algorithm=algorithm, seed=seed, chunk_size=chunk_size, epochs=epochs
        )
        provenance = {
            "encoder": encoder,
            "slide_ids": sample.slide_ids,
            "n_slides": len(sample.slide_ids),
            "n_sampled": sample.n,
            "n_seen": sample.n_seen,
            "seed": seed,
            "algorithm": algorithm,
            "per_slide": per_slide,
            "samples_per_prototype": samples_per_prototype,
        }
    finally:
        sample.close()
    return Prototypes(centers, provenance)
