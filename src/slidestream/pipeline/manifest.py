"""The run manifest: one row per (slide, stage), kept up to date across runs in ``OUT/manifest.csv``.

A batch prints a summary and forgets; the manifest remembers what happened to every slide
(ok / skipped / failed, the reason, seconds, counts), so a report, a rerun or a person can find
the failures of a 10,000-slide run without reading logs.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pandas as pd

from slidestream.atomic import atomic_path
from slidestream.errors import StoreError
from slidestream.pipeline.batch import BatchResult

MANIFEST_NAME = "manifest.csv"
COLUMNS = ["slide_id", "slide", "stage", "status", "reason", "error_type", "seconds", "finished", "run_id", "details"]


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]


def read_manifest(out: str | Path) -> pd.DataFrame:
    path = Path(out) / MANIFEST_NAME
    if not path.exists():
        return pd.DataFrame(columns=COLUMNS)
    return pd.read_csv(path, dtype={"reason": str, "error_type": str, "details": str}, keep_default_na=False)


def update_manifest(out: str | Path, result: BatchResult, stage: str, run_id: str | None = None) -> Path:
    """Upsert this batch's outcomes (keyed by slide path and stage) and write atomically."""
    from slidestream.pipeline.stages import slide_id_for  # stages imports heavy modules

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    run_id = run_id or new_run_id()
    finished = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    rows = []
    for o in result.outcomes:
        details = {k: v for k, v in o.details.items() if k not in ("traceback", "error_type")}
        rows.append({
            "slide_id": slide_id_for(o.path), "slide": str(Path(o.path).resolve()), "stage": stage, "status": o.status,
            "reason": o.reason, "error_type": o.details.get("error_type", ""), "seconds": round(o.seconds, 3),
            "finished": finished, "run_id": run_id, "details": json.dumps(details, default=str),
        })
    new = pd.DataFrame(rows, columns=COLUMNS)
    old = read_manifest(out)
    if len(old):
        old_key = old.set_index(["slide", "stage"]).index
        new_key = new.set_index(["slide", "stage"]).index
        # "skipped" means "already done": the row of the run that did the work stays, with its
        # timings and counts, instead of being replaced by a near-zero skip.
        done_before = set(old_key[old["status"].eq("ok").to_numpy()])
        redundant = new["status"].eq("skipped").to_numpy() & new_key.isin(done_before)
        new, new_key = new[~redundant], new_key[~redundant]
        keep = ~old_key.isin(new_key)
        new = pd.concat([old[keep], new], ignore_index=True)
    path = out / MANIFEST_NAME
    try:
        with atomic_path(path) as tmp:  # removes its temporary on failure
            new.to_csv(tmp, index=False)
    except OSError as exc:  # e.g. a full disk: say so; the temporary is already gone
        raise StoreError(path, f"cannot write the run manifest ({exc.strerror or exc}); "
                               "the previous manifest, if any, is unchanged") from exc
    return path
