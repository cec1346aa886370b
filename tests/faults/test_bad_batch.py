"""A batch mixing good and broken slides: the good ones finish, every bad one is a manifest row
with its reason, and the exit code says something went wrong."""

from __future__ import annotations

import numpy as np
import pytest

from slidestream.encoders.encoder import Encoder
from slidestream.pipeline.manifest import read_manifest
from slidestream.store import SlideStore
from tests.conftest import CMU, PEN, TCGA_JP2K
from tests.faults.conftest import (
    ENCODER,
    EXTRACT_ARGS,
    PEN_MPP,
    assert_nothing_half_claimed,
    cli,
    copy,
    features_of,
    make_blank_slide,
    make_truncated,
    slide_list,
)

pytestmark = pytest.mark.filterwarnings("ignore::slidestream.errors.NoTissueWarning")


@pytest.fixture(scope="module")
def bad_batch(tmp_path_factory, reference):
    """Run ``slidestream extract`` over good and broken slides; ``vanish.svs`` is deleted while
    the first slide is being embedded, ``gone-midway.svs`` while it is itself being embedded."""
    tmp_path = tmp_path_factory.mktemp("bad-batch")
    folder = tmp_path / "in"
    folder.mkdir()
    good = copy(CMU, folder / "cmu.svs")
    vanish = copy(CMU, folder / "vanish.svs")
    midway = copy(CMU, folder / "gone-midway.svs")
    rows = [
        (good, None),
        (vanish, None),                                          # disappears before its turn
        (make_truncated(CMU, folder / "truncated.svs"), None),   # cut at 60 %
        ((folder / "empty.svs"), None),                          # zero bytes
        (copy(TCGA_JP2K, folder / "no-mpp.svs"), None),          # no resolution anywhere
        (make_blank_slide(folder / "blank.tif"), None),          # glass only, mpp in its tags
        (midway, None),                                          # disappears while it is read
        (copy(PEN, folder / "pen.tif"), PEN_MPP),                # good, mpp from the list
    ]
    (folder / "empty.svs").touch()

    real_call = Encoder.__call__
    calls: dict[str, int] = {"n": 0}

    def call_and_delete(self, tiles):
        calls["n"] += 1
        if calls["n"] == 1 and vanish.exists():
            vanish.unlink()                 # while cmu.svs is being embedded
        if midway_started() and midway.exists():
            midway.unlink()                 # its own first batch is already read
        return real_call(self, tiles)

    out = tmp_path / "out"

    def midway_started() -> bool:
        return (out / "gone-midway.zarr" / "features").exists()

    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setattr(Encoder, "__call__", call_and_delete)
        # batches of 4: the slide deleted during its own run still has batches to read at that point
        result = cli("extract", slide_list(folder, rows), "--out", out, *EXTRACT_ARGS, "--batch-size", "4")
    manifest = read_manifest(out).set_index("slide_id")
    return result, manifest, out


def test_exit_code_is_non_zero_and_the_summary_counts_every_slide(bad_batch):
    result, manifest, _ = bad_batch
    assert result.exit_code == 1, result.output
    assert len(manifest) == 8
    assert set(manifest["stage"]) == {f"features/{ENCODER}"}


@pytest.mark.parametrize(("slide_id", "reason"), [
    ("vanish", "file does not exist"),
    ("truncated", "truncated"),
    ("empty", "file is empty"),
    ("no-mpp", "no microns-per-pixel"),
])
def test_each_bad_slide_fails_with_its_reason(bad_batch, slide_id, reason):
    _, manifest, out = bad_batch
    row = manifest.loc[slide_id]
    assert row["status"] == "failed"
    assert reason in row["reason"], row["reason"]
    assert row["error_type"]                      # typed, e.g. SlideOpenError / MissingMppError
    assert "\n" not in row["reason"]
    store = out / f"{slide_id}.zarr"
    assert not store.exists() or not SlideStore.open(store).has(f"features/{ENCODER}")


def test_a_slide_without_tissue_is_reported_not_hidden(bad_batch):
    _, manifest, out = bad_batch
    row = manifest.loc["blank"]
    assert row["status"] in ("ok", "skipped")     # not an error: the slide is read fine
    assert "no tissue" in row["reason"], row["reason"]
    assert len(features_of(out, "blank")) == 0    # an empty, complete feature array


def test_the_good_slides_finish_with_the_features_of_a_clean_run(bad_batch, reference):
    _, manifest, out = bad_batch
    for slide_id, ref in (("cmu", "cmu.svs"), ("pen", "pen.tif")):
        assert manifest.loc[slide_id, "status"] == "ok"
        np.testing.assert_array_equal(features_of(out, slide_id), reference[ref])


def test_a_slide_deleted_while_it_is_read_is_either_whole_or_failed(bad_batch, reference):
    """Open handles keep a deleted file readable on POSIX; either way nothing half-done is claimed."""
    _, manifest, out = bad_batch
    row = manifest.loc["gone-midway"]
    if row["status"] == "ok":
        np.testing.assert_array_equal(features_of(out, "gone-midway"), reference["cmu.svs"])
    else:
        assert row["status"] == "failed" and row["reason"]
        assert not SlideStore.open(out / "gone-midway.zarr").has(f"features/{ENCODER}")


def test_no_store_claims_more_than_it_holds(bad_batch):
    _, _, out = bad_batch
    assert_nothing_half_claimed(out)
