"""Cohort sampling and chunked K-means for PANTHER prototypes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans

from slidestream.errors import ConfigError
from slidestream.slide_encoders.prototypes import (
    Prototypes,
    fit_prototypes,
    kmeans_chunked,
    load_prototypes,
)
from slidestream.slide_encoders.sampling import sample_cohort


def matched_distance(a: np.ndarray, b: np.ndarray) -> float:
    cost = np.sqrt(((a[:, None] - b[None]) ** 2).sum(-1))
    rows, cols = linear_sum_assignment(cost)
    return float(cost[rows, cols].max())


@pytest.fixture
def clusters(gaussian_mixture):
    rng = np.random.default_rng(0)
    centers = rng.normal(0.0, 6.0, size=(6, 10))
    x, _ = gaussian_mixture(12_000, centers, np.full(6, 1 / 6), np.ones((6, 10)), seed=1)
    return centers, x


def test_minibatch_on_chunks_is_close_to_full_kmeans(clusters):
    centers, x = clusters
    full = KMeans(6, n_init=3, random_state=0).fit(x).cluster_centers_
    mini = kmeans_chunked(x, 6, algorithm="minibatch", chunk_size=1024, epochs=3, seed=0)
    assert matched_distance(mini, full) < 0.15
    assert matched_distance(mini, centers) < 0.2
    # a pointless "clustering" is far away: the tolerance above means something
    assert matched_distance(x[:6], full) > 1.0


def test_chunked_lloyd_matches_full_kmeans(clusters):
    _, x = clusters
    full = KMeans(6, n_init=3, random_state=0).fit(x).cluster_centers_
    lloyd = kmeans_chunked(x, 6, algorithm="lloyd", chunk_size=1000, seed=0)
    assert matched_distance(lloyd, full) < 1e-3


def slides_of(x: np.ndarray, sizes: list[int]):
    out, start = [], 0
    for i, n in enumerate(sizes):
        out.append((f"slide{i}", x[start : start + n]))
        start += n
    return out


def test_sampling_respects_budget_and_cap_and_is_seeded(clusters):
    _, x = clusters
    slides = slides_of(x, [5000, 100, 3000, 900])
    capped = sample_cohort(slides, budget=2000, seed=3)
    assert capped.n == capped.n_seen == 500 + 100 + 500 + 500  # cap = ceil(2000 / 4) = 500
    a = sample_cohort(slides, budget=2000, per_slide_cap=800, seed=3)
    assert a.n == 2000 and a.n_seen == 800 + 100 + 800 + 800  # the reservoir bounds the rest
    b = sample_cohort(slides, budget=2000, per_slide_cap=800, seed=3)
    np.testing.assert_array_equal(a.features, b.features)
    c = sample_cohort(slides, budget=2000, per_slide_cap=800, seed=4)
    assert not np.array_equal(a.features, c.features)
    first = sample_cohort(slides, budget=2000, per_slide="first")
    np.testing.assert_array_equal(first.features[:500], x[:500])


def test_reservoir_is_uniform_over_rows():
    """Every row of a stream has the same chance to survive (checked on row means)."""
    rows = np.arange(10_000, dtype=np.float32)[:, None]
    kept = np.concatenate(
        [sample_cohort(iter([("s", rows)]), budget=500, seed=s).features[:, 0] for s in range(20)]
    )
    hist = np.histogram(kept, bins=10, range=(0, 10_000))[0]
    assert hist.min() > 0.8 * hist.mean() and hist.max() < 1.2 * hist.mean()


def test_memmapped_sample_gives_the_same_prototypes(clusters, tmp_path):
    _, x = clusters
    slides = slides_of(x, [4000, 4000, 4000])
    in_ram = fit_prototypes(slides, 6, samples_per_prototype=1000, seed=0, chunk_size=1024)
    sample = sample_cohort(slides, budget=6000, memmap_bytes=1, workdir=tmp_path)
    assert isinstance(sample.features, np.memmap)
    sample.close()
    assert not any(tmp_path.iterdir())  # spill file removed
    spilled = fit_prototypes(
        slides, 6, samples_per_prototype=1000, seed=0, chunk_size=1024, workdir=tmp_path
    )
    np.testing.assert_array_equal(in_ram.centers, spilled.centers)


def test_fit_save_load_round_trip(clusters, tmp_path):
    centers, x = clusters
    protos = fit_prototypes(
        slides_of(x, [6000, 6000]), 6, samples_per_prototype=800, seed=0, encoder="uni"
    )
    assert protos.centers.shape == (6, 10) and protos.centers.dtype == np.float32
    assert matched_distance(protos.centers, centers) < 0.3
    path = protos.save(tmp_path / "protos")
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["encoder"] == "uni" and meta["slide_ids"] == ["slide0", "slide1"]
    assert meta["k"] == 6 and meta["n_sampled"] == 4800 and meta["seed"] == 0
    loaded = load_prototypes(path)
    np.testing.assert_array_equal(loaded.centers, protos.centers)
    assert loaded.provenance["encoder"] == "uni"


def test_load_panther_style_npy_and_errors(tmp_path):
    np.save(tmp_path / "p.npy", np.ones((1, 3, 4), np.float32))
    assert load_prototypes(tmp_path / "p.npy").centers.shape == (3, 4)
    with pytest.raises(ConfigError, match="does not exist"):
        load_prototypes(tmp_path / "missing.npz")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ConfigError):
        load_prototypes(tmp_path / "bad.npz")


def test_prototypes_dataclass_properties():
    p = Prototypes(np.zeros((4, 7), np.float32))
    assert p.k == 4 and p.dim == 7
