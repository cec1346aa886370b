"""The run manifest keeps one row per (slide, stage), and the row of the run that did the work."""

from __future__ import annotations

from pathlib import Path

from slidestream.pipeline.batch import BatchResult, SlideOutcome
from slidestream.pipeline.manifest import read_manifest, update_manifest


def test_upsert_keeps_work_rows_over_later_skips(tmp_path):
    a, b = Path("/data/a.svs"), Path("/data/b.svs")
    update_manifest(tmp_path, BatchResult([SlideOutcome(a, "ok", seconds=12.0, details={"tiles": 50}),
                                           SlideOutcome(b, "failed", "truncated")]), "tiles")
    update_manifest(tmp_path, BatchResult([SlideOutcome(a, "skipped", "tiles already made", seconds=0.01),
                                           SlideOutcome(b, "ok", seconds=3.0)]), "tiles")
    rows = read_manifest(tmp_path).set_index("slide_id")
    assert len(rows) == 2
    assert rows.loc["a", "status"] == "ok" and rows.loc["a", "seconds"] == 12.0
    assert rows.loc["b", "status"] == "ok" and rows.loc["b", "reason"] == ""
    update_manifest(tmp_path, BatchResult([SlideOutcome(a, "failed", "file vanished")]), "tiles")
    assert read_manifest(tmp_path).set_index("slide_id").loc["a", "status"] == "failed"
