"""Labels-table validation and patient-level splits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from slidestream.errors import ConfigError
from slidestream.mil import check_slides, labels_from_frame, patient_folds, read_labels
from slidestream.mil.splits import validation_split
from tests.mil.mil_synthetic import make_bags


def _write(tmp_path, df, name="labels.csv"):
    path = tmp_path / name
    if name.endswith(".parquet"):
        df.to_parquet(path)
    else:
        df.to_csv(path, index=False)
    return path


def test_missing_column_names_file_and_column(tmp_path):
    path = _write(tmp_path, pd.DataFrame({"slide_id": ["a"], "label": [1]}))
    with pytest.raises(ConfigError, match="patient_id") as err:
        read_labels(path, "classification")
    assert err.value.path == path and "missing column" in str(err.value)
    with pytest.raises(ConfigError, match=r"'time', 'event'\]"):
        read_labels(path, "survival")


def test_unknown_slides_are_listed(tmp_path):
    df = pd.DataFrame(
        {"slide_id": ["a", "b", "c"], "patient_id": ["1", "2", "3"], "label": [0, 1, 1]}
    )
    labels = read_labels(_write(tmp_path, df), "classification")
    with pytest.raises(
        ConfigError, match=r"2 labelled slide\(s\) have no feature store in OUT: b, c"
    ):
        check_slides(labels, ["a"], "OUT")


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        ({"slide_id": ["a", "a"], "patient_id": ["1", "2"], "label": [0, 1]}, "more than once: a"),
        (
            {"slide_id": ["a", "b"], "patient_id": ["1", None], "label": [0, 1]},
            "'patient_id' is empty",
        ),
        ({"slide_id": ["a", "b"], "patient_id": ["1", "2"], "label": [1, 1]}, "single class"),
    ],
)
def test_classification_table_errors(tmp_path, frame, message):
    with pytest.raises(ConfigError, match=message):
        read_labels(_write(tmp_path, pd.DataFrame(frame)), "classification")


@pytest.mark.parametrize(
    ("time", "event", "message"),
    [
        ([1.0, -2.0], [1, 0], "'time' must be a number >= 0"),
        ([1.0, 2.0], [1, 2], "'event' must be 0/1"),
        ([1.0, 2.0], [0, 0], "no events"),
    ],
)
def test_survival_table_errors(tmp_path, time, event, message):
    df = pd.DataFrame(
        {"slide_id": ["a", "b"], "patient_id": ["1", "2"], "time": time, "event": event}
    )
    with pytest.raises(ConfigError, match=message):
        read_labels(_write(tmp_path, df), "survival")


def test_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        read_labels(tmp_path / "nope.csv", "classification")
    (tmp_path / "labels.xlsx").write_text("x")
    with pytest.raises(ConfigError, match=r"csv, \.tsv or \.parquet"):
        read_labels(tmp_path / "labels.xlsx", "classification")


def test_parquet_and_class_order(tmp_path):
    df = pd.DataFrame(
        {
            "slide_id": ["a", "b", "c"],
            "patient_id": ["1", "1", "2"],
            "label": [10, 2, 2],
            "extra": [0, 0, 0],
        }
    )
    labels = read_labels(_write(tmp_path, df, "labels.parquet"), "classification")
    assert labels.classes == ["2", "10"]  # numeric labels sort numerically
    assert list(labels.table.columns) == ["slide_id", "patient_id", "label"]
    surv = labels_from_frame(
        pd.DataFrame({"slide_id": ["a"], "patient_id": ["1"], "time": [3], "event": ["True"]}),
        "survival",
    )
    assert surv.table["event"].tolist() == [1]


@pytest.fixture(scope="module")
def grouped():
    # 3 slides per patient, 40 patients, classes alternate by patient
    return labels_from_frame(make_bags(120, slides_per_patient=3).table, "classification")


def test_folds_never_split_a_patient_and_are_stratified(grouped):
    folds = patient_folds(grouped, 5, seed=0)
    table = grouped.table.assign(fold=folds)
    assert (folds >= 0).all()
    assert (table.groupby("patient_id")["fold"].nunique() == 1).all()
    share = table.groupby("fold")["label"].apply(lambda s: (s == "1").mean())
    assert share.between(0.3, 0.7).all(), share  # 50 % overall
    assert (table.groupby("fold").size() == 24).all()


def test_folds_are_seeded(grouped):
    a, b = patient_folds(grouped, 5, seed=0), patient_folds(grouped, 5, seed=0)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, patient_folds(grouped, 5, seed=1))


def test_validation_split_is_grouped(grouped):
    train, val = validation_split(grouped, 0.2, seed=0)
    patients = grouped.table.set_index("slide_id")["patient_id"]
    assert set(patients[train]).isdisjoint(patients[val])
    assert len(val) == pytest.approx(0.2 * len(grouped.table), abs=6)
    assert set(grouped.table.set_index("slide_id").loc[val, "label"]) == {"0", "1"}


def test_too_few_patients_per_class_is_a_clear_error():
    df = pd.DataFrame(
        {"slide_id": list("abcdef"), "patient_id": list("112345"), "label": [1, 1, 0, 0, 0, 0]}
    )
    labels = labels_from_frame(df, "classification", "L.csv")
    with pytest.raises(
        ConfigError, match="class '1' has 1 patient\\(s\\); 3 folds need at least 3"
    ):
        patient_folds(labels, 3, seed=0)


def test_a_damaged_feature_chunk_is_a_store_error_naming_the_store(tmp_path):
    from slidestream.errors import StoreError
    from slidestream.mil import StoreBagSource
    from tests.viz.synthetic_store import make_store

    make_store(tmp_path, "s0")
    chunk = next(p for p in (tmp_path / "s0.zarr" / "features" / "uni").rglob("*")
                 if p.is_file() and p.name != "zarr.json")
    chunk.write_bytes(b"not a zstd frame at all")
    with pytest.raises(StoreError, match=r"s0\.zarr.*features/uni: chunk c/0/0 fails its crc32c checksum"):
        StoreBagSource.from_folder(tmp_path, "uni").load("s0")
