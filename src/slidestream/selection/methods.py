"""Subsets of a tile grid for when speed matters more than coverage.

All methods return sorted int64 indices into the tile list, deterministic for a given seed.
"""

from __future__ import annotations

import math

import numpy as np

from slidestream.selection.colour import tile_colour_features


def _target_count(n: int, fraction: float | None, count: int | None) -> int:
    if count is not None:
        return max(0, min(n, int(count)))
    if fraction is None:
        raise ValueError("give fraction or count")
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    return min(n, max(1, math.ceil(n * fraction))) if n else 0


def select_random(n_tiles: int, *, fraction: float | None = None, count: int | None = None, seed: int = 0) -> np.ndarray:
    k = _target_count(n_tiles, fraction, count)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_tiles, size=k, replace=False)).astype(np.int64)


def select_grid(coords: np.ndarray, *, fraction: float | None = None, count: int | None = None) -> np.ndarray:
    """Every s-th grid column and row (s from the target), then thinned evenly to the exact count."""
    coords = np.asarray(coords)
    n = len(coords)
    k = _target_count(n, fraction, count)
    if k == 0:
        return np.zeros(0, np.int64)
    _, ix = np.unique(coords[:, 0], return_inverse=True)
    _, iy = np.unique(coords[:, 1], return_inverse=True)
    step = max(1, math.isqrt(n // k))
    while True:  # the coarsest lattice step that still leaves at least k tiles
        lattice = np.flatnonzero((ix % step == 0) & (iy % step == 0))
        if len(lattice) >= k or step == 1:
            break
        step -= 1
    picks = lattice[np.linspace(0, len(lattice) - 1, k).round().astype(np.int64)] if len(lattice) > k else lattice
    return np.sort(picks).astype(np.int64)


def select_mosaic(
    coords: np.ndarray, extent0: tuple[int, int], image: np.ndarray, level0_size: tuple[int, int], *,
    fraction: float | None = 0.1, count: int | None = None, n_colour_clusters: int = 9, seed: int = 0,
) -> np.ndarray:
    """Yottixel-style mosaic: colour clusters, then spatially spread picks within each cluster.

    Tiles are grouped by colour (k-means on per-tile RGB mean/std from the low-resolution image);
    each cluster contributes in proportion to its size, its picks being the tiles nearest to the
    centres of a spatial k-means on that cluster's coordinates: every colour "phenotype" is
    represented, and spread over the slide rather than bunched.
    """
    coords = np.asarray(coords)
    n = len(coords)
    k_total = _target_count(n, fraction, count)
    if k_total == 0:
        return np.zeros(0, np.int64)
    if k_total >= n:
        return np.arange(n, dtype=np.int64)
    from sklearn.cluster import KMeans  # sklearn is slow to import; only mosaic needs it

    feats = tile_colour_features(image, level0_size, coords, extent0)
    feats = (feats - feats.mean(0)) / (feats.std(0) + 1e-6)
    n_clusters = max(1, min(n_colour_clusters, k_total, n))
    labels = KMeans(n_clusters=n_clusters, n_init=4, random_state=seed).fit_predict(feats) if n_clusters > 1 else np.zeros(n, int)
    sizes = np.bincount(labels, minlength=n_clusters)
    quota = _apportion(sizes, k_total)
    chosen: set[int] = set()
    for cluster in range(n_clusters):
        members = np.flatnonzero(labels == cluster)
        q = int(quota[cluster])
        if q == 0:
            continue
        if q >= len(members):
            chosen.update(members.tolist())
            continue
        xy = coords[members].astype(np.float64)
        km = KMeans(n_clusters=q, n_init=1, random_state=seed).fit(xy)
        for centre in km.cluster_centers_:
            order = np.argsort(((xy - centre) ** 2).sum(1))
            chosen.add(next(int(members[i]) for i in order if int(members[i]) not in chosen))
    return np.sort(np.fromiter(chosen, dtype=np.int64, count=len(chosen)))


def _apportion(sizes: np.ndarray, total: int) -> np.ndarray:
    """Split ``total`` picks across clusters proportionally (largest remainder), each >= 1 if possible."""
    share = sizes / sizes.sum() * total
    quota = np.floor(share).astype(int)
    quota[(quota == 0) & (sizes > 0)] = 1 if total >= (sizes > 0).sum() else 0
    while quota.sum() > total:
        quota[np.argmax(quota)] -= 1
    remainder = share - quota
    while quota.sum() < total:
        i = int(np.argmax(np.where(quota < sizes, remainder, -np.inf)))
        quota[i] += 1
        remainder[i] = -np.inf
    return quota


def select_fps(
    coords: np.ndarray, extent0: tuple[int, int], tissue_fraction: np.ndarray, *,
    fraction: float | None = None, count: int | None = 30, min_tissue: float = 0.7,
    min_distance_tiles: float = 2.0, seed: int = 0,
) -> np.ndarray:
    """Fast patch selection as in PathDino: dense tissue, spatially thinned, then sampled.

    Candidates need ``min_tissue`` coverage (FPS works on tissue-rich patches); a greedy scan in
    row-major order keeps tiles at least ``min_distance_tiles`` tile sizes from every kept one;
    the survivors are sampled uniformly down to the target. The original samples new points
    from a KDE over the survivors; we sample survivors themselves so that every pick is a real
    tile on tissue.
    """
    coords = np.asarray(coords)
    n = len(coords)
    if n == 0:
        return np.zeros(0, np.int64)
    k = _target_count(n, fraction, count)
    candidates = np.flatnonzero(np.asarray(tissue_fraction) >= min_tissue)
    if len(candidates) < k:  # too little dense tissue: fall back to the best-covered tiles
        candidates = np.argsort(-np.asarray(tissue_fraction), kind="stable")[: max(k, len(candidates))]
    candidates = candidates[np.lexsort((coords[candidates, 0], coords[candidates, 1]))]
    radius = min_distance_tiles * max(extent0)
    kept = _greedy_thin(coords[candidates].astype(np.float64), radius)
    survivors = candidates[kept]
    if len(survivors) < k:  # thinning was too strict for this target: top up with the rest
        rest = np.setdiff1d(candidates, survivors)
        rng = np.random.default_rng(seed)
        survivors = np.concatenate([survivors, rng.choice(rest, size=min(len(rest), k - len(survivors)), replace=False)])
    rng = np.random.default_rng(seed)
    picks = survivors if len(survivors) <= k else rng.choice(survivors, size=k, replace=False)
    return np.sort(picks).astype(np.int64)


def _greedy_thin(xy: np.ndarray, radius: float) -> np.ndarray:
    """Indices of points kept by a greedy scan that drops points within ``radius`` of a kept one."""
    cells: dict[tuple[int, int], list[int]] = {}
    kept: list[int] = []
    r2 = radius * radius
    for i, (x, y) in enumerate(xy):
        cx, cy = int(x // radius), int(y // radius)
        near = False
        for dx in (-1, 0, 1):
            for dy in (-1, 0, 1):
                for j in cells.get((cx + dx, cy + dy), ()):
                    if (xy[j, 0] - x) ** 2 + (xy[j, 1] - y) ** 2 < r2:
                        near = True
                        break
                if near:
                    break
            if near:
                break
        if not near:
            kept.append(i)
            cells.setdefault((cx, cy), []).append(i)
    return np.asarray(kept, dtype=np.int64)
