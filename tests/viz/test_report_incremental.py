"""The report after a batch reads only the stores that changed, and says what a full rebuild says
(issue 15 §4): a store written, damaged, repaired, removed or added since the last report, and a
slide that failed, all show up exactly as when every store is read again."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from slidestream.store import SlideStore
from slidestream.viz import report as report_module
from slidestream.viz.report import SLIDE_CACHE, collect_run, store_signature, write_report
from tests.viz.synthetic_store import make_store

STAMP = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} [+-]\d{4}")


def page(out: Path, *, incremental: bool) -> str:
    return STAMP.sub("<time>", write_report(out, incremental=incremental).read_text())


def assert_incremental_equals_full(out: Path) -> str:
    incremental = page(out, incremental=True)
    full = page(out, incremental=False)
    assert incremental == full
    return full


@pytest.fixture
def run_folder(tmp_path) -> Path:
    out = tmp_path / "out"
    for i, sid in enumerate(("a", "b", "c")):
        make_store(out, sid, seed=i)
    write_report(out)
    return out


def reads_of(monkeypatch) -> list[str]:
    """Slide ids whose store the next report reads (rather than taking from the cache)."""
    read: list[str] = []
    original = report_module._fill_from_store

    def spy(report, store):
        read.append(report.slide_id)
        return original(report, store)

    monkeypatch.setattr(report_module, "_fill_from_store", spy)
    return read


def test_an_unchanged_folder_reads_no_store(run_folder, monkeypatch):
    read = reads_of(monkeypatch)
    write_report(run_folder)
    assert read == []
    cached = json.loads((run_folder / "report" / SLIDE_CACHE).read_text())["slides"]
    assert set(cached) == {"a", "b", "c"}


def test_changes_read_only_the_changed_stores_and_match_a_full_rebuild(run_folder, monkeypatch):
    b = SlideStore.open(run_folder / "b.zarr")
    b.write_tile_scores("attention", np.linspace(0, 1, len(b.read_tiles()), dtype=np.float32), {"kind": "attention"})
    shutil.rmtree(run_folder / "c.zarr")                   # removed
    make_store(run_folder, "d", seed=3)                    # added
    read = reads_of(monkeypatch)
    html = assert_incremental_equals_full(run_folder)
    assert read[:2] == ["b", "d"]                          # the incremental pass read only these two
    assert "Tile scores attention" in html and 'data-slide-id="d"' in html and 'data-slide-id="c"' not in html


def test_a_damaged_then_repaired_store_is_seen_both_times(run_folder):
    chunk = next(p for p in (run_folder / "a.zarr" / "features").rglob("c/*/*") if p.is_file())
    saved = chunk.read_bytes()
    chunk.unlink()                                         # a lost chunk: only its folder's stat changes
    html = assert_incremental_equals_full(run_folder)
    assert "damaged store" in html
    chunk.write_bytes(saved)                               # put back, as a repair rewrites it
    html = assert_incremental_equals_full(run_folder)
    assert "damaged store" not in html


def test_a_failed_slide_in_the_manifest_shows_without_touching_the_stores(run_folder, monkeypatch):
    import pandas as pd

    from slidestream.pipeline.manifest import COLUMNS

    rows = [dict.fromkeys(COLUMNS, "") | {"slide_id": "b", "slide": "/x/b.svs", "stage": "features", "status": "failed",
                                           "reason": "the encoder ran out of memory", "seconds": "1.0"}]
    pd.DataFrame(rows, columns=COLUMNS).to_csv(run_folder / "manifest.csv", index=False)
    read = reads_of(monkeypatch)
    html = assert_incremental_equals_full(run_folder)
    assert read == ["a", "b", "c"]                         # the incremental pass read none; the full one all
    assert "the encoder ran out of memory" in html


def test_the_signature_changes_with_any_file_and_not_without(tmp_path):
    store = make_store(tmp_path, "s")
    first = store_signature(store.path)
    assert store_signature(store.path) == first
    store.update_slide_info({**store.slide_info, "mpp_x": 0.25})
    assert store_signature(store.path) != first


def test_a_damaged_cache_file_means_a_full_read(run_folder, monkeypatch):
    (run_folder / "report" / SLIDE_CACHE).write_text("{broken")
    read = reads_of(monkeypatch)
    write_report(run_folder)
    assert read == ["a", "b", "c"]
    cache = json.loads((run_folder / "report" / SLIDE_CACHE).read_text())
    cache["slides"]["a"]["data"].pop("tiles")              # an entry missing a field is not trusted
    (run_folder / "report" / SLIDE_CACHE).write_text(json.dumps(cache))
    read.clear()
    run = collect_run(run_folder, cache=cache["slides"])
    assert read == ["a"] and run.slides[0].tiles is not None
