"""A damaged store is never data: the corruption matrix.

One small real store is built once (CMU slide, ``handcrafted`` at 2 µm/px, 112 px tiles, a random
selection, tile scores and a slide embedding); every case damages a copy of it (a chunk deleted,
truncated or bit-flipped, or its ``zarr.json`` garbled) and asserts what a user sees: a one-line
``StoreError`` naming the store and the node from every reader, ``verify`` exiting 1 and naming
them, CLI commands failing without a traceback, and a rerun recomputing the node so its output
equals the clean run's, bit for bit.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import zarr

from slidestream.errors import StoreError
from slidestream.pipeline.manifest import read_manifest
from slidestream.store import SlideStore, load_features
from tests.conftest import CMU
from tests.faults.conftest import ENCODER, EXTRACT_ARGS, cli, copy

SLIDE_ID = "cmu"
TILE_ARGS = ["--mpp", "2.0", "--tile-size", "112"]
SELECT_ARGS = ["--select", "random", "--fraction", "0.5"]

ARRAYS = ["tiles/coords", "tiles/tissue_fraction", f"features/{ENCODER}", "selections/random", "tile_scores/qc",
          "slide_embeddings/mean", "tissue/wkb", "tissue/mask"]


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    """The run folder of a clean run: tiles + selection, features, tile scores, a slide embedding."""
    folder = tmp_path_factory.mktemp("integrity")
    slide = copy(CMU, folder / f"{SLIDE_ID}.svs")
    out = folder / "out"
    assert cli("tile", slide, "--out", out, *TILE_ARGS, *SELECT_ARGS).exit_code == 0
    result = cli("extract", slide, "--out", out, *EXTRACT_ARGS)
    assert result.exit_code == 0, result.output
    store = SlideStore.open(out / f"{SLIDE_ID}.zarr")
    features, _ = load_features(store, ENCODER)
    store.write_tile_scores("qc", store.read_tiles().tissue_fraction * 2, {"kind": "continuous"})
    store.write_slide_embedding("mean", features.mean(0), {"method": "mean", "encoder": ENCODER})
    assert len(features) > 4
    return out


@pytest.fixture
def damaged_copy(clean, tmp_path) -> Callable[[str, str], Path]:
    """``damage(node, kind)`` -> a run folder whose store has ``node`` damaged in the way ``kind`` says."""
    def damage(node: str, kind: str) -> Path:
        out = tmp_path / "out"
        shutil.copytree(clean, out)
        slide = tmp_path / f"{SLIDE_ID}.svs"
        if not slide.exists():
            slide.symlink_to(clean.parent / f"{SLIDE_ID}.svs")
        _rewrite_slide_path(out / f"{SLIDE_ID}.zarr", slide)
        DAMAGE[kind](out / f"{SLIDE_ID}.zarr" / node)
        return out
    return damage


def _rewrite_slide_path(store: Path, slide: Path) -> None:
    """The copy must point at its own slide link (repair reads the path the store records)."""
    root = zarr.open_group(store, mode="r+", zarr_format=3)
    root.attrs["slide"] = {**root.attrs["slide"], "path": str(slide)}


def _chunk(node: Path) -> Path:
    return sorted(p for p in (node / "c").rglob("*") if p.is_file())[0]


def _delete(node: Path) -> None:
    _chunk(node).unlink()


def _truncate(node: Path) -> None:
    chunk = _chunk(node)
    chunk.write_bytes(chunk.read_bytes()[: len(chunk.read_bytes()) // 2])


def _bitflip(node: Path) -> None:
    chunk = _chunk(node)
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0x10
    chunk.write_bytes(bytes(data))


def _garbage_meta(node: Path) -> None:
    (node / "zarr.json").write_bytes(b"\x00{not json" + bytes(range(20)))


def _altered_meta(node: Path) -> None:
    """Valid JSON, one value changed (as a bit flip in a digit would): only the digest sees it."""
    doc = json.loads((node / "zarr.json").read_text())
    doc["attributes"]["slidestream_version"] = "9.9.9"
    (node / "zarr.json").write_text(json.dumps(doc))


DAMAGE = {"delete": _delete, "truncate": _truncate, "bitflip": _bitflip, "garbage-meta": _garbage_meta,
          "altered-meta": _altered_meta}
CHUNK_KINDS = ["delete", "truncate", "bitflip", "garbage-meta"]


def _read(store: SlideStore, node: str):
    kind, _, name = node.partition("/")
    if kind == "tiles":
        return store.read_tiles()
    if kind == "features":
        return store.read_features(name)
    if kind == "selections":
        return store.read_selection(name)
    if kind == "tile_scores":
        return store.read_tile_scores(name)
    if kind == "slide_embeddings":
        return store.read_slide_embedding(name)
    if name == "mask":
        return store.read_tissue_mask()
    return store.read_tissue_geojson()


def _assert_names(message: str, out: Path, node: str) -> None:
    assert f"{SLIDE_ID}.zarr" in message and node in message, message
    assert "\n" not in message.strip(), message


# ---------------------------------------------------------------------------------- read API + verify
@pytest.mark.parametrize("kind", CHUNK_KINDS)
@pytest.mark.parametrize("node", ARRAYS)
def test_every_reader_and_verify_name_the_damage(damaged_copy, node, kind):
    out = damaged_copy(node, kind)
    store = SlideStore.open(out / f"{SLIDE_ID}.zarr")
    with pytest.raises(StoreError) as err:
        _read(store, node)
    _assert_names(str(err.value), out, node)
    if node.startswith(("tiles/", "features/")):  # the bag every downstream tool reads
        with pytest.raises(StoreError) as err:
            load_features(out / f"{SLIDE_ID}.zarr", ENCODER)
        _assert_names(str(err.value), out, node)
    result = cli("verify", out, "--json")
    assert result.exit_code == 1, result.output
    verdict = json.loads(result.stdout)
    assert verdict["damaged"] == 1
    problems = [i["problem"] for i in verdict["checks"][0]["issues"]]
    assert any(node in p for p in problems), problems
    assert "Traceback" not in result.output


@pytest.mark.parametrize("kind", ["garbage-meta", "altered-meta"])
def test_damaged_tissue_metadata_is_an_error_not_an_absence(damaged_copy, kind):
    out = damaged_copy("tissue", kind)
    with pytest.raises(StoreError, match=r"tissue: .*(unreadable metadata|altered)"):
        SlideStore.open(out / f"{SLIDE_ID}.zarr").read_tissue_geojson()
    result = cli("verify", out)
    assert result.exit_code == 1 and "tissue" in result.stderr


def test_altered_feature_attrs_fail_their_digest(damaged_copy):
    out = damaged_copy(f"features/{ENCODER}", "altered-meta")
    with pytest.raises(StoreError, match=f"features/{ENCODER}: metadata altered"):
        load_features(out / f"{SLIDE_ID}.zarr", ENCODER)


def test_a_clean_store_verifies_and_reads(clean):
    result = cli("verify", clean)
    assert result.exit_code == 0, result.output
    assert "1 intact, 0 damaged" in result.stderr


def test_a_node_recorded_but_removed_is_damage(damaged_copy):
    out = damaged_copy("tile_scores/qc", "delete")
    shutil.rmtree(out / f"{SLIDE_ID}.zarr" / "tile_scores" / "qc")
    result = cli("verify", out)
    assert result.exit_code == 1 and "tile_scores/qc" in result.stderr and "gone" in result.stderr


# ---------------------------------------------------------------------------------- CLI readers
@pytest.mark.parametrize("node", ["tiles/coords", f"features/{ENCODER}"])
@pytest.mark.parametrize("kind", ["delete", "bitflip"])
def test_export_h5_fails_the_slide_in_one_line(damaged_copy, tmp_path, node, kind):
    out = damaged_copy(node, kind)
    result = cli("export", "h5", out, "--encoder", ENCODER, "--dest", tmp_path / "h5")
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    line = next(ln for ln in result.stderr.splitlines() if ln.startswith("failed"))
    _assert_names(line, out, node)
    assert not (tmp_path / "h5" / f"{SLIDE_ID}.h5").exists()


def test_heatmap_of_damaged_scores_fails_without_traceback(damaged_copy, tmp_path):
    out = damaged_copy("tile_scores/qc", "bitflip")
    result = cli("heatmap", out, "--out", tmp_path / "maps", "--scores", "qc")
    assert result.exit_code != 0
    assert "Traceback" not in result.output and "tile_scores/qc" in result.stderr


@pytest.mark.slow  # a rerun of the stages (seconds each)
def test_slide_encode_of_damaged_features_fails_without_traceback(damaged_copy, tmp_path):
    out = damaged_copy(f"features/{ENCODER}", "delete")
    result = cli("slide-encode", "--method", "mean", "--stores", out, "--encoder", ENCODER,
                 "--table", tmp_path / "cohort.parquet")
    assert result.exit_code != 0
    assert "Traceback" not in result.output and f"features/{ENCODER}" in result.output


def test_report_marks_the_damaged_store(damaged_copy):
    out = damaged_copy(f"features/{ENCODER}", "delete")  # the report's quick check sees an absent chunk
    result = cli("report", out)
    assert result.exit_code == 0, result.output
    page = (out / "report" / "index.html").read_text()
    assert 'class="badge damaged"' in page and f"features/{ENCODER}: chunk c/0/0 is missing" in page


# ---------------------------------------------------------------------------------- reruns and repair
def _assert_equals_clean(out: Path, clean: Path) -> None:
    got, want = SlideStore.open(out / f"{SLIDE_ID}.zarr"), SlideStore.open(clean / f"{SLIDE_ID}.zarr")
    for a, b in zip(load_features(got, ENCODER), load_features(want, ENCODER), strict=True):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    np.testing.assert_array_equal(got.read_tiles().tissue_fraction, want.read_tiles().tissue_fraction)


@pytest.mark.slow  # a rerun of the stages (seconds each)
@pytest.mark.parametrize(("node", "kind"), [("tiles/coords", "delete"), ("tiles/tissue_fraction", "bitflip"),
                                            (f"features/{ENCODER}", "delete"), (f"features/{ENCODER}", "bitflip"),
                                            (f"features/{ENCODER}", "garbage-meta"), ("tiles/coords", "garbage-meta")])
def test_rerun_of_extract_recomputes_the_damaged_node(damaged_copy, clean, tmp_path, node, kind):
    out = damaged_copy(node, kind)
    result = cli("extract", tmp_path / f"{SLIDE_ID}.svs", "--out", out, *EXTRACT_ARGS)
    assert result.exit_code == 0, result.output
    assert "1 ok, 0 skipped" in result.stderr  # not "already extracted"
    _assert_equals_clean(out, clean)
    rows = read_manifest(out)
    row = rows[rows["stage"].eq(f"features/{ENCODER}")].iloc[-1]
    assert row["status"] == "ok" and "recomputed damaged" in row["reason"] and node.split("/")[0] in row["reason"]
    assert "removed what depended on it" in row["reason"]  # tile scores and the slide embedding went with it
    assert cli("verify", out).exit_code == 0
    again = cli("extract", tmp_path / f"{SLIDE_ID}.svs", "--out", out, *EXTRACT_ARGS)
    assert "0 ok, 1 skipped" in again.stderr


@pytest.mark.slow  # a rerun of the stages (seconds each)
@pytest.mark.parametrize(("node", "kind"), [("selections/random", "bitflip"), ("tissue", "garbage-meta")])
def test_rerun_of_tile_recomputes_selection_and_tissue(damaged_copy, clean, tmp_path, node, kind):
    out = damaged_copy(node, kind)
    result = cli("tile", tmp_path / f"{SLIDE_ID}.svs", "--out", out, *TILE_ARGS, *SELECT_ARGS)
    assert result.exit_code == 0, result.output
    got, want = SlideStore.open(out / f"{SLIDE_ID}.zarr"), SlideStore.open(clean / f"{SLIDE_ID}.zarr")
    np.testing.assert_array_equal(got.read_selection("random"), want.read_selection("random"))
    np.testing.assert_array_equal(got.read_tiles().coords, want.read_tiles().coords)
    assert got.read_tissue_geojson() == want.read_tissue_geojson()
    rows = read_manifest(out)
    assert "recomputed damaged" in rows[rows["stage"].eq("tiles")].iloc[-1]["reason"]


@pytest.mark.slow  # a rerun of the stages (seconds each)
def test_verify_repair_recomputes_tiles_and_features(damaged_copy, clean):
    out = damaged_copy("tiles/coords", "delete")
    _bitflip(out / f"{SLIDE_ID}.zarr" / "features" / ENCODER)
    result = cli("verify", out, "--repair")
    # tiles were redone, so tile_scores/qc and slide_embeddings/mean (from predict / slide-encode) are lost: said, exit 1
    assert result.exit_code == 1, result.output
    assert "tile_scores/qc was removed" in result.stderr and "slide-encode" in result.stderr
    _assert_equals_clean(out, clean)
    assert cli("verify", out).exit_code == 0


@pytest.mark.slow  # a rerun of the stages (seconds each)
def test_verify_repair_of_features_only_exits_0(damaged_copy, clean):
    out = damaged_copy(f"features/{ENCODER}", "truncate")
    shutil.rmtree(out / f"{SLIDE_ID}.zarr" / "tile_scores")   # computed from features: would be lost
    shutil.rmtree(out / f"{SLIDE_ID}.zarr" / "slide_embeddings")
    store = SlideStore.open(out / f"{SLIDE_ID}.zarr")
    store.delete("tile_scores/qc")
    store.delete("slide_embeddings/mean")
    result = cli("verify", out, "--repair")
    assert result.exit_code == 0, result.output
    assert "repaired" in result.stderr
    _assert_equals_clean(out, clean)


def test_verify_repair_without_the_slide_says_so(damaged_copy, tmp_path):
    out = damaged_copy(f"features/{ENCODER}", "delete")
    (tmp_path / f"{SLIDE_ID}.svs").unlink()
    result = cli("verify", out, "--repair")
    assert result.exit_code == 1
    assert "not repaired" in result.stderr and "is not there" in result.stderr and "Traceback" not in result.output


# ---------------------------------------------------------------------------------- stores before checksums
def test_a_store_written_before_checksums_reads_and_is_flagged_unverifiable(damaged_copy):
    out = damaged_copy("tile_scores/qc", "truncate")  # any copy; the damaged node is replaced below
    store = SlideStore.open(out / f"{SLIDE_ID}.zarr")
    store.delete("tile_scores/qc")
    features, _ = load_features(store, ENCODER)
    node = out / f"{SLIDE_ID}.zarr" / "features" / ENCODER
    attrs = {k: v for k, v in store.node_attrs(f"features/{ENCODER}").items() if k != "integrity"}
    shutil.rmtree(node)
    legacy = zarr.create_array(node, shape=features.shape, dtype="float32", chunks=features.shape, zarr_format=3)
    legacy[...] = features
    legacy.attrs.update(attrs)
    np.testing.assert_array_equal(load_features(store, ENCODER)[0], features)
    result = cli("verify", out)
    assert result.exit_code == 0, result.output
    assert f"features/{ENCODER}: written before checksums" in result.stderr
