"""The labels table: one row per slide, read from CSV/TSV/Parquet and validated up front.

Columns: ``slide_id, patient_id`` plus ``label`` (classification) or ``time, event`` (survival).
Every problem is reported as a :class:`ConfigError` naming the file and the column or slides at
fault, before any training starts: a typo in a label file should cost seconds, not a fold.
Labels are kept as strings (``"0"``, ``"LUAD"``) so classes look the same in every output file.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from slidestream.errors import ConfigError

Task = Literal["classification", "survival"]
ID_COLUMNS = ("slide_id", "patient_id")
TARGET_COLUMNS: dict[str, tuple[str, ...]] = {
    "classification": ("label",),
    "survival": ("time", "event"),
}


@dataclass(frozen=True)
class LabelsTable:
    """A validated labels table. ``classes`` is empty for survival."""

    table: pd.DataFrame
    task: Task
    path: Path | None = None
    classes: list[str] = field(default_factory=list)

    @property
    def slide_ids(self) -> list[str]:
        return self.table["slide_id"].tolist()

    def subset(self, slide_ids: Iterable[str]) -> LabelsTable:
        """The rows of ``slide_ids``, in that order (classes are kept)."""
        rows = self.table.set_index("slide_id").loc[list(slide_ids)].reset_index()
        return LabelsTable(rows, self.task, self.path, self.classes)


def read_labels(path: str | Path, task: Task) -> LabelsTable:
    """Read and validate a labels file (``.csv``, ``.tsv`` or ``.parquet``)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(path, "labels file not found")
    suffix = path.suffix.lower()
    id_types = dict.fromkeys(ID_COLUMNS, str)
    try:
        if suffix == ".csv":
            df = pd.read_csv(path, dtype=id_types)
        elif suffix == ".tsv":
            df = pd.read_csv(path, sep="\t", dtype=id_types)
        elif suffix in (".parquet", ".pq"):
            df = pd.read_parquet(path)
        else:
            raise ConfigError(path, "labels must be a .csv, .tsv or .parquet file")
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise ConfigError(path, f"cannot read the labels table: {exc}") from None
    return labels_from_frame(df, task, path)


def labels_from_frame(df: pd.DataFrame, task: Task, path: str | Path | None = None) -> LabelsTable:
    """Validate an in-memory table; ``path`` only serves the error messages."""
    if task not in TARGET_COLUMNS:
        raise ConfigError(path, f"unknown task {task!r}; choose one of {list(TARGET_COLUMNS)}")
    required = (*ID_COLUMNS, *TARGET_COLUMNS[task])
    missing = [c for c in required if c not in df.columns]
    if missing:
        hint = ""
        if "patient_id" in missing:
            hint = " (use the slide_id as patient_id if every patient has one slide)"
        raise ConfigError(
            path,
            f"missing column(s) {missing} for a {task} task; found {list(df.columns)}{hint}",
        )
    df = df[list(required)].copy()
    if df.empty:
        raise ConfigError(path, "the labels table has no rows")
    for col in required:
        empty = df[col].isna()
        if empty.any():
            raise ConfigError(path, f"column {col!r} is empty in {_rows(df, empty)}")
    for col in ID_COLUMNS:
        df[col] = df[col].astype(str).str.strip()
    dup = df["slide_id"].duplicated(keep=False)
    if dup.any():
        raise ConfigError(path, f"slide_id appears more than once: {_few(df.loc[dup, 'slide_id'])}")
    df = df.reset_index(drop=True)
    if task == "classification":
        return _classification(df, path)
    return _survival(df, path)


def _classification(df: pd.DataFrame, path) -> LabelsTable:
    df["label"] = df["label"].map(_label_str)
    classes = _sorted_classes(df["label"].unique())
    if len(classes) < 2:
        raise ConfigError(path, f"column 'label' has a single class {classes}; need at least two")
    return LabelsTable(df, "classification", _path(path), classes)


def _survival(df: pd.DataFrame, path) -> LabelsTable:
    time = pd.to_numeric(df["time"], errors="coerce")
    bad = time.isna() | (time < 0)
    if bad.any():
        raise ConfigError(path, f"column 'time' must be a number >= 0; bad {_rows(df, bad)}")
    event = df["event"].map(_event_value)
    bad = event.isna()
    if bad.any():
        raise ConfigError(path, f"column 'event' must be 0/1 (or true/false); bad {_rows(df, bad)}")
    if event.sum() == 0:
        raise ConfigError(path, "no events (event == 1) in the table: survival cannot be fitted")
    df["time"] = time.astype(np.float64)
    df["event"] = event.astype(np.int64)
    return LabelsTable(df, "survival", _path(path))


def check_slides(labels: LabelsTable, available: Iterable[str], where: str | Path | None) -> None:
    """Fail if the labels name slides that have no bag (``where`` = the stores, for the message)."""
    have = set(available)
    unknown = [s for s in labels.slide_ids if s not in have]
    if unknown:
        raise ConfigError(
            labels.path,
            f"{len(unknown)} labelled slide(s) have no feature store in {where}: {_few(unknown)}",
        )


def _label_str(value) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def _sorted_classes(values: Iterable[str]) -> list[str]:
    values = list(values)
    try:
        return sorted(values, key=int)
    except ValueError:
        return sorted(values)


def _event_value(value) -> float:
    text = str(value).strip().lower()
    table = {"1": 1, "1.0": 1, "true": 1, "0": 0, "0.0": 0, "false": 0}
    return table.get(text, np.nan)


def _rows(df: pd.DataFrame, bad: pd.Series) -> str:
    return f"{int(bad.sum())} row(s), slides {_few(df.loc[bad, 'slide_id'].astype(str))}"


def _few(items: Iterable, n: int = 5) -> str:
    items = list(items)
    shown = ", ".join(map(str, items[:n]))
    return shown + (f", ... ({len(items)} in all)" if len(items) > n else "")


def _path(path) -> Path | None:
    return None if path is None else Path(path)
