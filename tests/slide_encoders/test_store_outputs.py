"""PANTHER on real zarr stores: prototype ids per tile, prototype maps, unreadable stores; probes."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from slidestream.cli import slide_encode  # noqa: F401  (registers the commands)
from slidestream.cli._app import app
from slidestream.errors import ConfigError
from slidestream.mil.labels import labels_from_frame
from slidestream.mil.splits import patient_folds
from slidestream.slide_encoders.cohort import fit_cohort_prototypes
from slidestream.slide_encoders.probe import embedding_matrix, probe_cohort
from slidestream.store import SlideStore
from tests.viz.synthetic_store import make_store


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture
def stores(tmp_path):
    out = tmp_path / "OUT"
    for i in range(4):
        make_store(out, f"s{i}", seed=i)
    return out


def _damage(out):
    """s1 lacks the encoder; s2's feature chunk is garbage."""
    shutil.rmtree(out / "s1.zarr" / "features" / "uni")
    chunk = next(
        p
        for p in (out / "s2.zarr" / "features" / "uni").rglob("*")
        if p.is_file() and p.name != "zarr.json"
    )
    chunk.write_bytes(b"not a zstd frame at all")


def test_panther_stores_prototype_ids_and_draws_maps(stores, tmp_path):
    table, maps = tmp_path / "p.parquet", tmp_path / "maps"
    result = run(
        "slide-encode",
        "--method",
        "panther",
        "--stores",
        stores,
        "--encoder",
        "uni",
        "--fit",
        "--prototypes",
        tmp_path / "protos.npz",
        "--k",
        3,
        "--samples-per-prototype",
        20,
        "--table",
        table,
        "--maps",
        maps,
    )
    assert result.exit_code == 0, result.output
    for i in range(4):
        store = SlideStore.open(stores / f"s{i}.zarr")
        ids, attrs = store.read_tile_scores("panther_prototype")
        _, emb_attrs = store.read_slide_embedding("panther")
        assert ids.dtype == np.int64 and ids.shape == (30,) and ids.max() < 3
        assert (
            attrs["rows"] == "features/uni" and attrs["kind"] == "categorical" and attrs["k"] == 3
        )
        assert np.bincount(ids, minlength=3).tolist() == emb_attrs["prototype_counts"]
        assert (maps / f"s{i}.panther_prototype.png").stat().st_size > 1000
        fc = json.loads((maps / f"s{i}.panther_prototype.geojson").read_text())
        assert [
            f["properties"]["measurements"]["prototype"] for f in fc["features"]
        ] == ids.tolist()


def test_prototype_fitting_skips_unreadable_stores(stores, tmp_path):
    _damage(stores)
    protos = fit_cohort_prototypes(
        sorted(stores.glob("*.zarr")), "uni", 3, samples_per_prototype=20
    )
    assert protos.provenance["slide_ids"] == ["s0", "s3"]
    assert set(protos.provenance["skipped"]) == {"s1", "s2"}
    assert "no complete features for encoder 'uni'" in protos.provenance["skipped"]["s1"]
    assert "features/uni: chunk c/0/0 fails its crc32c checksum" in protos.provenance["skipped"]["s2"]
    result = run(
        "slide-encode",
        "--method",
        "panther",
        "--stores",
        stores,
        "--encoder",
        "uni",
        "--fit",
        "--prototypes",
        tmp_path / "protos.npz",
        "--k",
        3,
        "--samples-per-prototype",
        20,
        "--table",
        tmp_path / "p.parquet",
    )
    assert (
        result.exit_code == 1
    )  # the two bad slides cannot be embedded either: reported, not raised
    assert "skipped for prototypes" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)  # no traceback
    sidecar = json.loads((tmp_path / "protos.json").read_text())
    assert set(sidecar["skipped"]) == {"s1", "s2"}
    df = pd.read_parquet(tmp_path / "p.parquet")
    assert df.set_index("slide_id")["status"].to_dict() == {
        "s0": "ok",
        "s1": "failed",
        "s2": "failed",
        "s3": "ok",
    }


def test_no_readable_store_is_a_clear_error(stores):
    for i in range(4):
        shutil.rmtree(stores / f"s{i}.zarr" / "features" / "uni")
    with pytest.raises(ConfigError, match="4 store\\(s\\) unreadable"):
        fit_cohort_prototypes(sorted(stores.glob("*.zarr")), "uni", 3)


def _cohort_and_labels(n=24, dim=5, seed=0):
    rng = np.random.default_rng(seed)
    ids = [f"s{i:02d}" for i in range(n)]
    label = np.array([(i // 2) % 2 for i in range(n)])
    emb = rng.normal(size=(n, dim)) + 2.5 * label[:, None]
    cohort = pd.DataFrame(
        {"slide_id": ids, "status": "ok", "embedding": list(emb.astype(np.float32))}
    )
    labels = labels_from_frame(
        pd.DataFrame(
            {"slide_id": ids, "patient_id": [f"p{i // 2}" for i in range(n)], "label": label}
        ),
        "classification",
    )
    return cohort, labels


def test_probe_uses_the_mil_patient_folds():
    cohort, labels = _cohort_and_labels()
    result = probe_cohort(cohort.iloc[::-1], labels, n_folds=3, seed=1)  # row order does not matter
    assert len(result.per_fold) == 3 and result.summary["auroc"][0] > 0.9
    same = probe_cohort(cohort, labels, folds=patient_folds(labels, 3, 1))
    pd.testing.assert_frame_equal(result.per_fold, same.per_fold)
    broken = cohort.copy()
    broken.loc[3, "status"] = "failed"
    with pytest.raises(ConfigError, match="1 labelled slide\\(s\\) have no embedding: s03"):
        embedding_matrix(broken, labels.slide_ids)


def test_probe_command(tmp_path):
    cohort, labels = _cohort_and_labels()
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(
        pa.table(
            {
                "slide_id": cohort["slide_id"],
                "status": cohort["status"],
                "embedding": pa.array([e for e in cohort["embedding"]], pa.list_(pa.float32())),
            }
        ),
        tmp_path / "c.parquet",
    )
    labels.table.to_csv(tmp_path / "labels.csv", index=False)
    result = run(
        "probe",
        "--table",
        tmp_path / "c.parquet",
        "--labels",
        tmp_path / "labels.csv",
        "--folds",
        3,
        "--out",
        tmp_path / "probe.csv",
    )
    assert result.exit_code == 0, result.output
    assert "auroc" in result.output and len(pd.read_csv(tmp_path / "probe.csv")) == 3
    bad = run("probe", "--table", tmp_path / "missing.parquet", "--labels", tmp_path / "labels.csv")
    assert bad.exit_code == 1 and "cohort table not found" in bad.output


def test_cobra_pretrains_from_the_command_line_then_embeds_reproducibly(stores, tmp_path):
    ckpt, first, second = tmp_path / "cobra.pt", tmp_path / "a.parquet", tmp_path / "b.parquet"
    common = ("--method", "cobra", "--stores", stores, "--encoder", "uni", "--checkpoint", ckpt)
    fitted = run("slide-encode", *common, "--fit", "--epochs", "2", "--table", first)
    assert fitted.exit_code == 0, fitted.output
    assert ckpt.exists() and "pre-trained 2 epochs on 4 slides" in fitted.output
    again = run("slide-encode", *common, "--table", second)  # inference from the saved file
    assert again.exit_code == 0, again.output
    a, b = pd.read_parquet(first), pd.read_parquet(second)
    assert (a["status"] == "ok").all() and len(a) == 4
    np.testing.assert_allclose(np.stack(a["embedding"]), np.stack(b["embedding"]), atol=1e-6)
    vec, attrs = SlideStore.open(stores / "s0.zarr").read_slide_embedding("cobra")
    assert attrs["checkpoint"] == str(ckpt) and np.isfinite(vec).all()


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [("--out-type", "bogus", "--out-type"), ("--mean-mode", "bogus", "--mean-mode"),
     ("--tau", "0", "--tau"), ("--em-iter", "0", "--em-iter"), ("--top-k", "0", "--top-k")],
)
def test_bad_slide_encode_options_fail_before_any_work(stores, tmp_path, option, value, message):
    result = run("slide-encode", "--method", "mean", "--stores", stores, "--encoder", "uni",
                 "--table", tmp_path / "t.parquet", option, value)
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "t.parquet").exists()
