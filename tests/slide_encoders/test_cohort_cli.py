"""Store wiring and ``slidestream slide-encode``, with the two store functions faked."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

import slidestream.slide_encoders.cohort as cohort
import slidestream.store
from slidestream.cli import slide_encode  # noqa: F401  (registers the command)
from slidestream.cli._app import app
from slidestream.errors import StoreError
from slidestream.slide_encoders.cobra import Cobra, CobraConfig
from slidestream.slide_encoders.cobra_weights import save_cobra
from slidestream.slide_encoders.cohort import EncoderSpec, align_by_coords, load_bag
from slidestream.slide_encoders.panther import embedding_dim


@pytest.fixture
def fake_store(tmp_path, monkeypatch):
    """Stores are directories holding ``<encoder>.npz``; written embeddings are recorded."""
    written: dict[tuple[str, str], tuple[np.ndarray, dict]] = {}

    def load_features(store_path, encoder):
        path = Path(store_path) / f"{encoder}.npz"
        if not path.exists():
            raise StoreError(store_path, f"no features for encoder {encoder!r}")
        with np.load(path) as data:
            return data["features"], data["coords"]

    def write_slide_embedding(store_path, method, embedding, attrs):
        written[(Path(store_path).name, method)] = (np.asarray(embedding), dict(attrs))

    def write_tile_scores(store_path, name, values, attrs):
        written[(Path(store_path).name, f"tile_scores/{name}")] = (np.asarray(values), dict(attrs))

    monkeypatch.setattr(slidestream.store, "load_features", load_features, raising=False)
    monkeypatch.setattr(
        slidestream.store, "write_slide_embedding", write_slide_embedding, raising=False
    )
    monkeypatch.setattr(cohort, "write_tile_scores", write_tile_scores)

    rng = np.random.default_rng(0)
    out = tmp_path / "OUT"
    for i in range(4):
        store = out / f"slide{i}.zarr"
        store.mkdir(parents=True)
        n = 50 + 10 * i
        coords = np.stack([np.arange(n) * 256, np.full(n, 512 * i)], 1).astype(np.int64)
        np.savez(
            store / "uni.npz", features=rng.normal(i, 1, (n, 6)).astype(np.float32), coords=coords
        )
        if i < 3:  # the second encoder misses the first tile and has its rows shuffled
            perm = rng.permutation(np.arange(1, n))
            np.savez(
                store / "conch.npz",
                features=rng.normal(size=(n - 1, 4)).astype(np.float32),
                coords=coords[perm],
            )
    return out, written


def run(*args):
    result = CliRunner().invoke(app, ["slide-encode", *map(str, args)])
    return result


def test_panther_fit_then_embed(fake_store, tmp_path):
    out, written = fake_store
    protos, table = tmp_path / "protos.npz", tmp_path / "cohort.parquet"
    result = run(
        "--method",
        "panther",
        "--stores",
        out,
        "--encoder",
        "uni",
        "--fit",
        "--prototypes",
        protos,
        "--k",
        3,
        "--samples-per-prototype",
        40,
        "--table",
        table,
    )
    assert result.exit_code == 0, result.output
    assert protos.exists() and protos.with_suffix(".json").exists()
    df = pd.read_parquet(table)
    assert list(df["slide_id"]) == [f"slide{i}" for i in range(4)] and (df["status"] == "ok").all()
    emb = np.stack(df["embedding"].to_list())
    assert emb.shape == (4, embedding_dim(3, 6))
    vec, attrs = written[("slide2.zarr", "panther")]
    np.testing.assert_array_equal(vec, emb[2])
    assert (
        attrs["k"] == 3
        and attrs["tau"] == 0.001
        and attrs["em_iter"] == 1
        and attrs["n_tiles"] == 70
    )
    ids, score_attrs = written[("slide2.zarr", "tile_scores/panther_prototype")]
    assert ids.shape == (70,) and ids.dtype == np.int64 and ids.min() >= 0 and ids.max() < 3
    assert score_attrs["encoder"] == "uni" and score_attrs["kind"] == "categorical"
    assert np.bincount(ids, minlength=3).tolist() == attrs["prototype_counts"]
    again = run(
        "--method",
        "panther",
        "--stores",
        out,
        "--encoder",
        "uni",
        "--prototypes",
        protos,
        "--table",
        tmp_path / "again.parquet",
    )
    assert again.exit_code == 0, again.output
    np.testing.assert_array_equal(
        np.stack(pd.read_parquet(tmp_path / "again.parquet")["embedding"].to_list()), emb
    )


def test_mean_and_failed_slides_are_reported(fake_store, tmp_path):
    out, _ = fake_store
    result = run(
        "--method", "mean", "--stores", out, "--encoder", "conch", "--table", tmp_path / "t.parquet"
    )
    assert result.exit_code == 1
    df = pd.read_parquet(tmp_path / "t.parquet")
    assert list(df["status"]) == ["ok", "ok", "ok", "failed"]
    assert "conch" in df["error"].iloc[3] and df["embedding"].iloc[3] is None
    assert "3/4 slides" in result.output


def test_cobra_with_two_encoders(fake_store, tmp_path):
    out, written = fake_store
    torch.manual_seed(0)
    cfg = CobraConfig(
        {"uni": 6, "conch": 4},
        embed_dim=16,
        num_heads=2,
        layers=1,
        att_dim=8,
        d_state=4,
        headdim=8,
        chunk_size=8,
    )
    ckpt = save_cobra(Cobra(cfg), tmp_path / "c.pt")
    result = run(
        "--method",
        "cobra",
        "--stores",
        out,
        "--encoder",
        "uni",
        "--encoder",
        "conch",
        "--checkpoint",
        ckpt,
        "--table",
        tmp_path / "c.parquet",
    )
    assert result.exit_code == 1  # slide3 has no conch features
    vec, attrs = written[("slide0.zarr", "cobra")]
    assert vec.shape == (6,) and attrs["n_tiles"] == 49 and attrs["aggregate"] == "uni"


def test_config_errors_exit_2(fake_store, tmp_path):
    out, _ = fake_store
    r = run(
        "--method",
        "panther",
        "--stores",
        out,
        "--encoder",
        "uni",
        "--table",
        tmp_path / "x.parquet",
    )
    assert r.exit_code == 2 and "--prototypes" in r.output
    r = run(
        "--method",
        "cobra",
        "--stores",
        out,
        "--encoder",
        "uni",
        "--checkpoint",
        tmp_path / "missing.pt",
        "--table",
        tmp_path / "x.parquet",
    )
    assert r.exit_code == 2 and "does not exist" in r.output
    r = run(
        "--method",
        "mean",
        "--stores",
        tmp_path / "empty",
        "--encoder",
        "uni",
        "--table",
        tmp_path / "x.parquet",
    )
    assert r.exit_code == 2 and "no <slide_id>.zarr" in r.output


def test_align_by_coords_keeps_first_encoder_order():
    a = np.array([[5, 0], [1, 1], [3, 2], [9, 9]])
    b = np.array([[9, 9], [3, 2], [5, 0]])
    ia, ib = align_by_coords([a, b])
    np.testing.assert_array_equal(a[ia], b[ib])
    np.testing.assert_array_equal(ia, [0, 2, 3])


def test_load_bag_renames_for_the_model(fake_store):
    out, _ = fake_store
    bag = load_bag(
        out / "slide1.zarr", [EncoderSpec.parse("uni=uni_model"), EncoderSpec.parse("conch")]
    )
    assert set(bag) == {"uni_model", "conch"} and len(bag["uni_model"]) == len(bag["conch"]) == 59


def test_real_store_round_trip(tmp_path):
    """The same command against the lead's zarr store: embeddings land in slide_embeddings/."""
    from slidestream.store import SlideStore

    rng = np.random.default_rng(5)
    out = tmp_path / "OUT"
    for i in range(2):
        store = SlideStore.create(out, f"real{i}", {"mpp": 0.5})
        coords = np.stack([np.arange(30) * 224, np.zeros(30)], 1).astype(np.int64)
        store.write_tiles(coords, np.ones(30), {}, {})
        writer = store.feature_writer("uni", 30, 6, {"encoder": "uni"})
        writer.write(0, rng.normal(size=(30, 6)).astype(np.float32))
        writer.commit()
    table = tmp_path / "t.parquet"
    result = run("--method", "mean", "--stores", out, "--encoder", "uni", "--table", table)
    assert result.exit_code == 0, result.output
    vec, attrs = SlideStore.open(out / "real1.zarr").read_slide_embedding("mean")
    np.testing.assert_array_equal(vec, pd.read_parquet(table)["embedding"].iloc[1])
    assert attrs["method"] == "mean" and attrs["n_tiles"] == 30


def test_encode_cohort_is_the_same_from_python(fake_store, tmp_path):
    """The command is a wrapper: the API gives the same table, and its notes reach ``notify``."""
    from slidestream.slide_encoders.encode import PantherOptions, encode_cohort

    out, _ = fake_store
    assert run("--method", "panther", "--stores", out, "--encoder", "uni", "--fit", "--k", "3",
               "--prototypes", tmp_path / "p.npz", "--table", tmp_path / "cli.parquet").exit_code == 0
    notes: list[tuple[str, str]] = []
    table = encode_cohort(out, "panther", ["uni"], tmp_path / "api.parquet", fit=True,
                          prototypes=tmp_path / "p2.npz", panther=PantherOptions(k=3),
                          notify=lambda label, text: notes.append((label, text)))
    cli = pd.read_parquet(tmp_path / "cli.parquet")
    assert list(table["status"]) == ["ok"] * 4
    np.testing.assert_allclose(np.stack(table["embedding"]), np.stack(cli["embedding"]), atol=1e-6)
    assert any(text.startswith("prototypes: K=3") for label, text in notes)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"mean_mode": "max"}, "--mean-mode"),
    ({"panther": {"out_type": "bogus"}}, "--out-type"),
    ({"panther": {"tau": 0.0}}, "--tau"),
    ({"cobra": {"top_k": 0}}, "--top-k"),
])
def test_encode_cohort_refuses_bad_options_before_reading(tmp_path, kwargs, message):
    from slidestream.errors import ConfigError
    from slidestream.slide_encoders.encode import CobraOptions, PantherOptions, encode_cohort

    options = {"panther": PantherOptions(**kwargs.pop("panther", {})), "cobra": CobraOptions(**kwargs.pop("cobra", {}))}
    with pytest.raises(ConfigError, match=message):  # the folder does not exist: checked first
        encode_cohort(tmp_path / "missing", "mean", ["uni"], tmp_path / "t.parquet", **options, **kwargs)
    assert not (tmp_path / "t.parquet").exists()
