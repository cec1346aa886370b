"""Two real ``slidestream run`` processes on one output folder: no corruption, each slide's work once."""

from __future__ import annotations

import collections
import json
import subprocess

import pandas as pd
import pytest

from slidestream.store import SlideStore
from tests.workflows.helpers import (
    REFERENCE_SLIDES,
    assert_same_stores,
    leftovers,
    reference_run,
    subprocess_env,
    write_config,
)

IDS = [p.stem for p in REFERENCE_SLIDES]


@pytest.mark.slow
def test_two_processes_racing_on_one_folder(tmp_path_factory, tmp_path):
    out = tmp_path / "out"
    config = write_config(tmp_path, REFERENCE_SLIDES, out)
    procs = [subprocess.Popen(["slidestream", "run", str(config), "--no-progress", "--report", str(tmp_path / f"r{i}.json")],
                              env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i in range(2)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs

    reports = [json.loads((tmp_path / f"r{i}.json").read_text())["outcomes"] for i in range(2)]
    done = collections.Counter((r["stage"], r["slide_id"]) for rep in reports for r in rep if r["status"] == "ok")
    assert sorted(done) == sorted((s, i) for s in ("tissue", "tiles", "features") for i in IDS)
    assert set(done.values()) == {1}, done                      # every stage of every slide exactly once
    reasons = {r["reason"] for rep in reports for r in rep if r["status"] == "skipped"}
    assert all(r.startswith(("in progress elsewhere", "tissue already", "tiles already", "features already"))
               for r in reasons), reasons

    assert_same_stores(out, reference_run(tmp_path_factory), IDS)   # no corruption: equal to a lone run
    assert leftovers(out) == []
    for sid in IDS:
        assert SlideStore.open(out / f"{sid}.zarr").attrs["stages"].keys() == {"tissue", "tiles", "selections/mosaic",
                                                                               "features/handcrafted"}
    manifest = pd.read_csv(out / "manifest.csv", keep_default_na=False)
    assert len(manifest) == 3 * len(IDS) and set(manifest["status"]) <= {"ok", "skipped"}
    assert not manifest["reason"].str.startswith("in progress").any()   # the owner's row is never clobbered
