"""Run-folder reports: ``metrics.json`` (machine-readable) and ``summary.md`` (for people)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from slidestream.atomic import atomic_write_text
from slidestream.mil.metrics import SUMMARY_KEYS


def json_ready(value: Any) -> Any:
    """NaN/inf become ``null`` (strict JSON has no NaN), numpy scalars become Python numbers."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_metrics(path: Path, metrics: dict) -> None:
    atomic_write_text(path, json.dumps(json_ready(metrics), indent=2, allow_nan=False) + "\n")


def write_summary(path: Path, metrics: dict) -> None:
    """A Markdown page: run facts, one row per fold, mean ± std, pooled out-of-fold metrics."""
    kind = "survival" if metrics["task"] == "survival" else "classification"
    keys = SUMMARY_KEYS[kind]
    lines = [
        f"# MIL cross-validation: {metrics['model']} ({metrics['task']})",
        "",
        f"- encoder: {metrics.get('encoder') or 'n/a'}",
        f"- folds: {len(metrics['folds'])}, slides: {metrics['n_slides']}, "
        f"patients: {metrics['n_patients']}, seed: {metrics['seed']}",
        "",
        "| fold | n test | best epoch | " + " | ".join(keys) + " |",
        "|---|---|---|" + "---|" * len(keys),
    ]
    for fm in metrics["folds"]:
        cells = " | ".join(_num(fm.get(k)) for k in keys)
        lines.append(f"| {fm['fold']} | {fm['n']} | {fm['best_epoch']} | {cells} |")
    summary = metrics["summary"]
    cells = " | ".join(f"{_num(summary[k]['mean'])} ± {_num(summary[k]['std'])}" for k in keys)
    lines += [f"| **mean ± std** | | | {cells} |", ""]
    per_class = [k for k in summary if k.startswith("auroc[")]
    if per_class:
        lines += ["Per-class AUROC (mean ± std over folds):", ""]
        lines += [
            f"- {k[6:-1]}: {_num(summary[k]['mean'])} ± {_num(summary[k]['std'])}"
            for k in per_class
        ]
        lines.append("")
    pooled = metrics["pooled"]
    lines += ["Pooled out-of-fold: " + ", ".join(f"{k} {_num(pooled.get(k))}" for k in keys), ""]
    if "confusion_matrix" in pooled:
        classes = metrics["classes"]
        lines += [
            "Pooled confusion matrix (rows: true, columns: predicted):",
            "",
            "| | " + " | ".join(classes) + " |",
            "|---|" + "---|" * len(classes),
        ]
        for c, row in zip(classes, pooled["confusion_matrix"], strict=True):
            lines.append(f"| **{c}** | " + " | ".join(str(v) for v in row) + " |")
        lines.append("")
    atomic_write_text(path, "\n".join(lines))


def _num(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.3f}"
