"""Every shared slide reads with the metadata its README documents."""

from __future__ import annotations

import pytest

from slidestream.errors import MissingMppError
from slidestream.io import open_slide
from tests.conftest import CMU, KIDNEY, PEN, TCGA_JP2K

# (path, backend chosen by auto, (w, h), downsamples, mpp, objective, vendor)
EXPECTED = [
    (CMU, "openslide", (2220, 2967), (1.0,), 0.499, 20.0, "aperio"),
    (TCGA_JP2K, "openslide", (4443, 3567), (1.0, 2.0005), None, None, "aperio"),
    (PEN, "openslide", (3236, 2638), (1.0, 2.0, 4.0015, 8.0141), None, None, "generic-tiff"),
    (KIDNEY, "tiffslide", (1493, 901), (1.0,), None, None, None),
]


@pytest.mark.parametrize(("path", "backend", "dims", "downs", "mpp", "objective", "vendor"), EXPECTED,
                         ids=[e[0].name for e in EXPECTED])
def test_metadata_matches_the_slides_readme(path, backend, dims, downs, mpp, objective, vendor):
    with open_slide(path) as slide:
        assert slide.backend_name == backend
        assert slide.dimensions == dims
        assert slide.level_count == len(downs)
        assert slide.level_downsamples == pytest.approx(downs, abs=1e-3)
        assert slide.objective_power == objective
        assert slide.vendor == vendor
        if mpp is None:
            assert slide.mpp_or_none is None
            with pytest.raises(MissingMppError, match=path.name):
                _ = slide.mpp
        else:
            assert slide.mpp == pytest.approx((mpp, mpp))


def test_mpp_override_is_recorded_as_such():
    with open_slide(TCGA_JP2K, mpp=0.25) as slide:
        assert slide.mpp == (0.25, 0.25)
        assert slide.info()["mpp_source"] == "override"
        assert slide.level_mpps() == pytest.approx([0.25, 0.25 * 2.0005], rel=1e-4)


def test_magnification_converts_through_objective_power():
    with open_slide(CMU) as slide:
        assert slide.mpp_for_magnification(20) == pytest.approx(0.499)
        assert slide.mpp_for_magnification(10) == pytest.approx(0.998)
    with open_slide(PEN, mpp=0.5) as slide, pytest.raises(MissingMppError, match="objective power"):
        slide.mpp_for_magnification(20)


def test_tiffslide_backend_reads_the_same_metadata():
    with open_slide(CMU, backend="tiffslide") as slide:
        assert slide.mpp == pytest.approx((0.499, 0.499))
        assert slide.objective_power == 20
        assert slide.vendor == "aperio"
