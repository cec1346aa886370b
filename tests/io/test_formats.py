"""DICOM WSI series, OME-TIFF and CZI written by their owners' tools (../shared/formats), read
as users expect: one slide, all levels, the file's mpp, pixels equal to the source slide."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from slidestream.errors import SlideOpenError
from slidestream.io import find_slide_entries, open_slide
from slidestream.io.discovery import slide_id_for
from slidestream.io.metadata import ome_resolution
from tests.conftest import PEN, SLIDES_DIR, TCGA_JP2K

FORMATS = SLIDES_DIR.parent / "formats"
DICOM = FORMATS / "tcga-cr-7395-dicom"
OME = FORMATS / "tcga-cr-7395.ome.tif"
CZI = FORMATS / "TCGA-XK-AAJU-pen-marks.czi"
MPP = 0.2527

pytestmark = pytest.mark.skipif(not FORMATS.exists(), reason="../shared/formats not found")


def _dcm_files(folder: Path = DICOM) -> list[Path]:
    return sorted(folder.glob("*.dcm"))


def _mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(float) - b.astype(float)).mean())


# ---------------------------------------------------------------------------------- DICOM
def test_a_dicom_series_is_one_slide_whatever_is_passed():
    files = _dcm_files()
    for inputs in ([DICOM], [files[1]], files, [FORMATS]):
        dicom = [e.path for e in find_slide_entries(inputs) if "dicom" in str(e.path)]
        assert dicom == [DICOM], inputs
    assert slide_id_for(DICOM) == slide_id_for(files[0]) == "tcga-cr-7395-dicom"


@pytest.mark.parametrize("backend", ["openslide", "wsidicom"])
def test_dicom_levels_mpp_and_associated_images(backend):
    with open_slide(DICOM, backend=backend) as slide:
        assert slide.backend_name == backend
        assert slide.level_dimensions == ((4443, 3567), (2221, 1783))
        assert slide.mpp == pytest.approx((MPP, MPP))
        assert "thumbnail" in slide.associated_images
        info = slide.info()
        assert info["dicom_series_uid"].startswith("1.2.826.0.1.3680043.8.498.")
        assert info["vendor"] == "dicom"


def test_dicom_pixels_equal_the_source_svs_within_jpeg_noise():
    regions = [(0, (1000, 1000), (300, 300)), (0, (3000, 2500), (256, 200)),
               (1, (2000, 1000), (300, 300)), (1, (1234, 567), (200, 150))]
    with open_slide(TCGA_JP2K) as source, open_slide(DICOM) as osl, open_slide(DICOM, backend="wsidicom") as wsi:
        for level, loc, size in regions:
            ref = source.read_region(loc, level, size)
            a, b = osl.read_region(loc, level, size), wsi.read_region(loc, level, size)
            assert _mean_abs_diff(a, ref) < 6, (level, loc)
            assert _mean_abs_diff(b, ref) < 6, (level, loc)
            assert _mean_abs_diff(a, b) < 0.5, (level, loc)  # the two readers: same pixels, same position


@pytest.fixture(scope="module")
def two_series(tmp_path_factory) -> Path:
    """A folder holding two series (a copy of the shared one under new UIDs, as a re-scan would be)."""
    import pydicom
    from pydicom.uid import generate_uid

    folder = tmp_path_factory.mktemp("two-series") / "scans"
    folder.mkdir()
    for f in _dcm_files():
        shutil.copy(f, folder / f.name)
    series_uid = generate_uid()
    for f in _dcm_files():
        ds = pydicom.dcmread(f)
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.SeriesNumber = 2
        ds.save_as(folder / f"{ds.SOPInstanceUID}.dcm")
    return folder


def test_a_folder_of_two_series_gives_two_slides_with_distinct_readable_ids(two_series):
    entries = find_slide_entries([two_series])
    assert len(entries) == 2
    ids = [slide_id_for(e.path) for e in entries]
    assert ids == ["scans-s1", "scans-s2"]
    # any file of a series names that series; each opens as the full slide
    files = sorted(two_series.glob("*.dcm"))
    assert len({e.path for e in find_slide_entries(files)}) == 2
    for entry in entries:
        with open_slide(entry.path) as slide:
            assert slide.level_count == 2 and "thumbnail" in slide.associated_images
    with pytest.raises(SlideOpenError, match="holds 2 DICOM series"):
        open_slide(two_series, backend="wsidicom")


def test_a_folder_without_dicom_is_a_clear_error(tmp_path):
    with pytest.raises(SlideOpenError, match="without DICOM"):
        open_slide(tmp_path)


# ---------------------------------------------------------------------------------- OME-TIFF
def test_ome_tiff_has_all_subifd_levels_and_its_ome_mpp():
    with open_slide(OME) as slide:
        assert slide.backend_name == "tiffslide"
        assert slide.level_count == 5
        assert slide.level_dimensions[0] == (4443, 3567) and slide.level_dimensions[4] == (278, 223)
        assert slide.mpp == pytest.approx((MPP, MPP))
        assert slide.resolution.source.startswith("ome.PhysicalSizeX")
        with open_slide(TCGA_JP2K) as source:
            for loc in [(1000, 1000), (2500, 3000)]:
                assert _mean_abs_diff(slide.read_region(loc, 0, (256, 256)), source.read_region(loc, 0, (256, 256))) < 6
            assert _mean_abs_diff(slide.read_region((2000, 1000), 1, (200, 200)), source.read_region((2000, 1000), 1, (200, 200))) < 8


@pytest.mark.parametrize(("size", "unit", "mpp"), [("252.7", "nm", 0.2527), ("0.2527", "µm", 0.2527),
                                                    ("0.2527", "μm", 0.2527), ("0.0002527", "mm", 0.2527),
                                                    ("0.00002527", "cm", 0.2527), ("0.5", None, 0.5)])
def test_ome_physical_size_units(size, unit, mpp):
    unit_attr = f' PhysicalSizeXUnit="{unit}" PhysicalSizeYUnit="{unit}"' if unit else ""
    xml = (f'<?xml version="1.0"?><OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06"><Image ID="Image:0">'
           f'<Pixels ID="Pixels:0" SizeX="10" SizeY="10" PhysicalSizeX="{size}" PhysicalSizeY="{size}"{unit_attr}/></Image></OME>')
    res = ome_resolution(xml)
    assert res is not None and res.mpp_x == pytest.approx(mpp) and res.mpp_y == pytest.approx(mpp)


def test_ome_without_physical_size_has_no_mpp():
    xml = '<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06"><Image><Pixels SizeX="1"/></Image></OME>'
    assert ome_resolution(xml) is None


# ---------------------------------------------------------------------------------- CZI
def test_czi_opens_with_its_mpp_and_the_exact_source_pixels():
    with open_slide(CZI) as slide, open_slide(PEN, backend="tiffslide") as source:
        assert slide.backend_name == "czi"
        assert slide.mpp == pytest.approx((2.0, 2.0))
        assert slide.dimensions == source.level_dimensions[1]
        np.testing.assert_array_equal(slide.read_region((0, 0), 0, slide.dimensions),
                                      source.read_region((0, 0), 1, source.level_dimensions[1]))


def test_a_damaged_czi_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.czi"
    bad.write_bytes(CZI.read_bytes()[:5000])
    with pytest.raises(SlideOpenError, match=r"bad\.czi"):
        open_slide(bad)


# ---------------------------------------------------------------------------------- backends
def test_every_backend_can_be_forced_and_reports_itself():
    for path, backend in [(TCGA_JP2K, "openslide"), (TCGA_JP2K, "tiffslide"), (DICOM, "wsidicom"),
                          (DICOM, "openslide"), (CZI, "czi"), (OME, "openslide")]:
        with open_slide(path, backend=backend) as slide:
            assert slide.backend_name == backend and slide.info()["backend"] == backend
    with pytest.raises(SlideOpenError, match="czi"):
        open_slide(TCGA_JP2K, backend="czi")


def test_fast_reader_reads_dicom_jpeg_frames_and_ome_subifds_like_the_backends():
    from slidestream.extraction import open_tile_reader

    coords = np.array([[x, y] for x in range(13, 4000, 797) for y in range(7, 3300, 901)])
    for path, backend, mpp in [(DICOM, "wsidicom", 0.5), (DICOM, "wsidicom", MPP), (OME, "tiffslide", 0.5)]:
        with open_slide(path, backend=backend) as slide:
            plan = slide.plan(mpp, 128)
            attrs = {"read_level": plan.level, "read_size": list(plan.read_size), "tile_size_px": 128, "target_mpp": mpp}
            fast = open_tile_reader(slide.spec, attrs, fast=True, workers=2)
            slow = open_tile_reader(slide.spec, attrs, fast=False, workers=2)
            try:
                assert fast.name == "jpeg" and slow.name == f"backend:{backend}"
                a, b = fast.read_batch(coords), slow.read_batch(coords)
            finally:
                fast.close()
                slow.close()
        # level 1 of both has a fractional downsample (2.0005, 1.9995): sub-pixel sampling in both
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 2, (path.name, mpp)


@pytest.mark.slow
def test_jpeg2000_dicom_frames_read_with_the_right_colours(tmp_path):
    """wsidicom re-encodes level 1 of the series as JPEG 2000 (the IDC's common transfer syntax);
    both readers decode it to the JPEG series' pixels (re-encoding noise only, colours intact)."""
    import wsidicom
    from wsidicom.codec import settings

    from slidestream.io.jpeg_tiles import JpegPyramid

    with wsidicom.WsiDicom.open(DICOM) as source:
        source.save(tmp_path, transcoding=settings.Jpeg2kSettings(), include_levels=[1], include_thumbnails=False)
    with open_slide(DICOM, backend="wsidicom") as ref:
        expected = ref.read_region((2001, 1000), 1, (300, 300)).astype(float)
    for backend in ("wsidicom", "openslide"):
        with open_slide(tmp_path, backend=backend) as slide:
            assert slide.level_dimensions == ((2221, 1783),)
            assert JpegPyramid.open(slide.path, list(slide.level_dimensions)) is None  # not JPEG: backend path
            got = slide.read_region((1000, 500), 0, (300, 300)).astype(float)
        assert np.abs(got - expected).mean() < 6, backend
        np.testing.assert_allclose(got.mean(axis=(0, 1)), expected.mean(axis=(0, 1)), atol=2)


def test_a_dicom_file_that_is_not_a_slide_is_a_clear_error(tmp_path):
    """A CT-like instance (not VL Whole Slide Microscopy) is not a slide: one line, naming it."""
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = CTImageStorage, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID, ds.SeriesInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID, generate_uid()
    path = tmp_path / "ct.dcm"
    ds.save_as(path, enforce_file_format=True)
    assert [e.path for e in find_slide_entries([path])] == [path]  # kept, to fail as a row
    assert find_slide_entries([tmp_path]) == []                     # a folder walk skips it
    with pytest.raises(SlideOpenError, match=r"ct\.dcm.*not a DICOM whole-slide image instance"):
        open_slide(path)
