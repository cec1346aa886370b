"""Two processes writing to the same output folder: each slide is processed once, no store is
corrupted, and the stores equal those of a single uninterrupted run.

Relies on the per-slide locks (``store/lock.py``): a slide another live process holds is skipped
by the second one (reported "in progress elsewhere"), and one it finds finished is skipped as done.
"""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest

from slidestream.pipeline.manifest import read_manifest
from slidestream.store import SlideStore
from slidestream.store.lock import LOCK_DIR
from tests.conftest import CMU, PEN, REPO, TCGA_JP2K
from tests.faults.conftest import (
    ENCODER,
    EXTRACT_ARGS,
    PEN_MPP,
    assert_nothing_half_claimed,
    copy,
    features_of,
    slide_list,
    subprocess_env,
    summary_counts,
)


@pytest.mark.slow
def test_two_processes_on_one_folder_process_each_slide_once(tmp_path, reference):
    folder = tmp_path / "in"
    folder.mkdir()
    rows = [(copy(CMU, folder / "cmu.svs"), None), (copy(CMU, folder / "cmu-copy.svs"), None),
            (copy(PEN, folder / "pen.tif"), PEN_MPP), (copy(TCGA_JP2K, folder / "jp2k.svs"), 0.5)]
    slides = slide_list(folder, rows)
    out = tmp_path / "out"
    # the same list for both: they walk it in the same order and meet on the slides.
    # Writing each slide's features is slowed down (1.5 s) and waits until both runs are up, so
    # that the two runs really overlap whatever the machine's load.
    command = [sys.executable, "-m", "tests.faults._killable", "slow", str(tmp_path / "peers"), "--",
               str(slides), "--out", str(out), *EXTRACT_ARGS]
    def start() -> subprocess.Popen:
        return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                                env=subprocess_env())

    first = start()
    # the second starts once the first holds a slide, so they are certain to overlap
    deadline = time.monotonic() + 120
    while not list((out / LOCK_DIR).glob("*.lock")) and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    procs = [first, start()]
    results = [p.communicate(timeout=600) for p in procs]
    for proc, (_, stderr) in zip(procs, results, strict=True):
        assert proc.returncode == 0, stderr[-3000:]
        assert "Traceback" not in stderr

    counts = [summary_counts(stderr) for _, stderr in results]
    assert sum(c[0] for c in counts) == len(rows), counts       # every slide embedded exactly once
    assert all(c[2] == 0 for c in counts), counts
    assert all(c[0] + c[1] == len(rows) for c in counts), counts  # the rest were skipped, not lost
    both = results[0][1] + results[1][1]
    assert "in progress elsewhere" in both, "the two runs never met on a slide"

    expected = {"cmu": "cmu.svs", "cmu-copy": "cmu.svs", "pen": "pen.tif", "jp2k": "jp2k.svs"}
    for sid, ref in expected.items():
        store = SlideStore.open(out / f"{sid}.zarr")
        assert store.has(f"features/{ENCODER}")
        np.testing.assert_array_equal(features_of(out, sid), reference[ref])
    manifest = read_manifest(out)
    assert sorted(manifest["slide_id"]) == sorted(expected)      # one row per slide, none lost
    assert set(manifest["status"]) == {"ok"}, manifest[["slide_id", "status", "reason"]]
    assert not list((out / LOCK_DIR).rglob("*.lock"))           # every lock released
    assert not list(out.rglob("_partial-*")) and not list(out.glob(".*.partial"))
    assert_nothing_half_claimed(out)
