"""Exports read by the consuming tools' own reader code: TRIDENT's rules, STAMP's BagDataset."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from slidestream.cli import app
from slidestream.store import SlideStore, load_features
from slidestream.store.h5export import trident_magnification
from tests.store.conftest import FOOTPRINT, MPP


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.mark.parametrize(("mpp", "objective", "expected"), [
    (0.2527, None, 40), (0.25, 20, 40), (0.499, 20, 20), (0.5, None, 20), (1.0, None, 10),
    (0.15, None, 80), (None, 20.0, 20), (None, None, None), (4.0, None, 2.5)])
def test_trident_magnification_follows_tridents_mpp_bins(mpp, objective, expected):
    assert trident_magnification(mpp, objective) == expected


def test_trident_export_states_the_tile_size_trident_rereads(stores, tmp_path):
    result = run("export", "h5", stores, "--encoder", "handcrafted", "--dest", tmp_path / "t")
    assert result.exit_code == 0, result.output
    with h5py.File(tmp_path / "t" / "slide-a.h5") as h5:
        attrs = dict(h5["coords"].attrs)
        assert attrs["level0_magnification"] == 40 and attrs["target_magnification"] == 20
        # TRIDENT's WSIPatcher re-reads round(patch_size * (10 / dst_mag) / (10 / src_mag)) level-0 px
        reread = round(attrs["patch_size"] * (10 / attrs["target_magnification"]) / (10 / attrs["level0_magnification"]))
        assert attrs["patch_size_level0"] == reread == 448
        assert list(h5.attrs["slidestream_level0_size"]) == [FOOTPRINT, FOOTPRINT]  # what we really read: 443


@pytest.mark.slow  # the clam layout imports torch (seconds on a busy machine)
def test_slides_without_tissue_are_skipped_with_a_reason_in_every_layout(stores, tmp_path):
    for layout in ("trident", "clam", "stamp"):
        dest = tmp_path / layout
        result = run("export", "h5", stores, "--encoder", "handcrafted", "--dest", dest, "--layout", layout, "--json")
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout)
        assert report["summary"] == {"ok": 2, "skipped": 1, "failed": 0, "busy": 0}
        blank = next(s for s in report["slides"] if s["slide"].endswith("blank.zarr"))
        assert blank["status"] == "skipped" and "no tiles" in blank["reason"]
        assert not list(dest.rglob("blank.*")), "an empty bag must not be written"
        assert "1 skipped" in result.stderr and "no tiles" in result.stderr


def test_stamp_export_loads_in_stamps_bag_dataset(stores, tmp_path):
    torch = pytest.importorskip("torch")
    from tests.store import _stamp_reader as stamp

    result = run("export", "h5", stores, "--encoder", "handcrafted", "--dest", tmp_path / "stamp", "--layout", "stamp")
    assert result.exit_code == 0, result.output
    paths = [tmp_path / "stamp" / "slide-a.h5", tmp_path / "stamp" / "slide-b.h5"]
    with h5py.File(paths[0]) as h5:
        assert h5["feats"].dtype == np.float16 and h5["coords"].dtype.kind == "f"
        assert h5.attrs["unit"] == "um" and h5.attrs["feat_type"] == "tile"
        assert h5.attrs["extractor"] == "slidestream-handcrafted"
        info = stamp.get_coords(h5)
    assert info.tile_size_um == pytest.approx(112.0) and info.tile_size_px == 224
    assert info.mpp == pytest.approx(0.5)  # STAMP's view of the tile resolution
    # one bag of two slides (a patient), read exactly as STAMP's training loop reads it
    ds = stamp.BagDataset(bags=[paths], bag_size=None, ground_truths=torch.zeros(1, 2), transform=None)
    feats, coords_um, n, _ = ds[0]
    expected = [load_features(stores / f"{p.stem}.zarr", "handcrafted") for p in paths]
    assert n == 29 and feats.dtype == torch.float32
    np.testing.assert_allclose(feats.numpy(), np.concatenate([f for f, _ in expected]), atol=2e-3, rtol=1e-3)
    np.testing.assert_allclose(coords_um.numpy(), np.concatenate([c for _, c in expected]) * MPP, rtol=1e-6)
    # fixed-size bags (STAMP's training default) sample from the same rows
    sampled, _, size, _ = stamp.BagDataset(bags=[paths[:1]], bag_size=8, ground_truths=torch.zeros(1, 2),
                                           transform=None, deterministic=True)[0]
    assert size == 8 and sampled.shape == (8, 8)


def test_stamp_refuses_nothing_it_can_read_and_we_claim_no_newer_stamp(stores, tmp_path, monkeypatch):
    """STAMP refuses files stamped newer than itself: we stamp the oldest release with this layout."""
    from tests.store import _stamp_reader as stamp

    path = tmp_path / "a.h5"
    from slidestream.store.stamp_export import export_stamp

    export_stamp(SlideStore.open(stores / "slide-a.zarr"), "handcrafted", path)
    for installed, ok in (("2.1.0", True), ("2.5.0", True), ("2.0.0", False)):
        monkeypatch.setattr(stamp.stamp, "__version__", installed)
        with h5py.File(path) as h5:
            if ok:
                assert stamp.get_coords(h5).coords_um.shape == (20, 2)
            else:
                with pytest.raises(RuntimeError, match="newer version of stamp"):
                    stamp.get_coords(h5)
