"""The run manifest: one row per (slide, stage), kept up to date across runs in ``OUT/manifest.csv``.

A batch prints a summary and forgets; the manifest remembers what happened to every slide
(ok / skipped / failed, the reason, seconds, counts), so a report, a rerun or a person can find
the failures of a 10,000-slide run without reading logs.

Rows are written as each slide finishes (:class:`ManifestRecorder`), each time as an atomic
rewrite of the file under the folder's manifest lock, so a batch killed halfway keeps the rows of
the slides it finished and a reader never sees half a file. A write that fails (full or read-only
disk, no permission) is remembered and reported once, as a run-level error; the slides' own
results are not touched by it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from slidestream.atomic import atomic_path
from slidestream.errors import ConfigError, StoreError
from slidestream.io.remote import remote_url
from slidestream.pipeline.batch import BatchResult, SlideOutcome
from slidestream.store.lock import hold

if TYPE_CHECKING:  # pandas (~0.4 s) loads when the first row is written: after a job's first batch, not before
    import pandas as pd

MANIFEST_NAME = "manifest.csv"
COLUMNS = ["slide_id", "slide", "stage", "status", "reason", "error_type", "seconds", "finished", "run_id", "details"]


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]


def read_manifest(out: str | Path) -> pd.DataFrame:
    import pandas as pd

    path = Path(out) / MANIFEST_NAME
    if not path.exists():
        return pd.DataFrame(columns=COLUMNS)
    return pd.read_csv(path, dtype={"reason": str, "error_type": str, "details": str}, keep_default_na=False)


def update_manifest(out: str | Path, result: BatchResult, stage: str, run_id: str | None = None) -> Path:
    """Upsert this batch's outcomes (keyed by slide path and stage) and write atomically.

    The key is the absolute path as given, not the resolved file: two links to one file are two
    slides (two ids, two stores), so they keep two rows."""
    import pandas as pd

    from slidestream.pipeline.stages import slide_id_for  # stages imports heavy modules

    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(out / MANIFEST_NAME, f"cannot write the run manifest ({exc.strerror or exc})") from None
    run_id = run_id or new_run_id()
    finished = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    rows = []
    for o in result.outcomes:
        details = {k: v for k, v in o.details.items() if k not in ("traceback", "error_type")}
        rows.append({
            "slide_id": slide_id_for(o.path), "slide": remote_url(o.path) or os.path.abspath(o.path), "stage": stage, "status": o.status,
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
        with atomic_path(path) as tmp:   # a full disk leaves the old manifest and no temporary
            new.to_csv(tmp, index=False)
    except OSError as exc:
        raise StoreError(path, f"cannot write the run manifest ({exc.strerror or exc}); "
                               "the previous manifest, if any, is unchanged") from exc
    return path


MANIFEST_LOCK = "cohort/manifest"   # lock names ``cohort/<x>`` can never clash with a slide id


def record_manifest(out: Path, result: BatchResult, stage: str, run_id: str | None = None) -> Path | None:
    """``update_manifest`` under the folder's manifest lock, leaving out slides busy elsewhere.

    Their owner writes their row; ours ("in progress elsewhere") would overwrite its "ok". Any
    failure to write (including the lock's) is a :class:`StoreError` naming the manifest.
    """
    kept = [o for o in result.outcomes if o.status != "busy"]
    if not kept:
        return None
    try:
        with hold(out, MANIFEST_LOCK, wait_s=300.0, stale_after_s=120.0):
            return update_manifest(out, BatchResult(kept), stage, run_id)
    except StoreError as exc:
        if MANIFEST_NAME in str(exc.path):
            raise
        raise StoreError(Path(out) / MANIFEST_NAME, f"cannot write the run manifest ({exc.reason})") from None


class ManifestRecorder:
    """``on_outcome`` for :func:`~slidestream.pipeline.batch.run_batch`: one row per finished slide.

    A failed write does not stop the batch (the slides are fine); the first error is kept in
    ``error`` and :meth:`raise_if_failed` turns it into the run-level error at the end.
    """

    def __init__(self, out: Path, stage: str, run_id: str | None = None) -> None:
        self.out, self.stage, self.run_id = Path(out), stage, run_id or new_run_id()
        self.error: StoreError | None = None

    def __call__(self, outcome: SlideOutcome) -> None:
        self.record([outcome])

    def record(self, outcomes: list[SlideOutcome]) -> None:
        try:
            record_manifest(self.out, BatchResult(outcomes), self.stage, self.run_id)
        except StoreError as exc:
            self.error = self.error or exc

    def raise_if_failed(self) -> None:
        if self.error is not None:
            raise self.error


def check_output_folder(out: str | Path) -> Path:
    """Create ``out`` and prove it writable before any slide is touched; else a ``ConfigError``
    saying what is wrong (a file, under a file, read-only, no permission, full)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(out, "output folder is a file, not a folder; choose another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            probe.write_bytes(b"ok")
        finally:
            with contextlib.suppress(OSError):
                probe.unlink()
    except OSError as exc:
        if exc.errno in (errno.ENOTDIR, errno.EEXIST):
            what = "is under a file, not a folder"
        else:
            what = f"is not writable ({exc.strerror or exc})"
        raise ConfigError(out, f"output folder {what}; choose another --out") from None
    return out

