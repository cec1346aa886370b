"""Deep methods over a real slide: tiling, stitching, decisions, combination and artifacts.

The stitching is checked with a "model" whose answer is known (a brightness threshold written as
logits), so a misplaced or mis-scaled tile would show as disagreement with the same threshold
applied to the working image. Real architectures run with weights whose head is forced to one
class, so the expected polygons are known exactly (the whole slide, or nothing).
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from slidestream.errors import NoTissueWarning
from slidestream.io import open_slide
from slidestream.pipeline.stages import SlideSource, run_tissue
from slidestream.store import SlideStore
from slidestream.tissue import TissueParams, detect_tissue, segment_tissue
from slidestream.tissue.deep import Canvas, RunOptions, segment_tissue_canvas
from slidestream.tissue.models import SPECS
from slidestream.tissue.seg_weights import sha256_file
from slidestream.tissue.segment import mask_iou
from tests.conftest import CMU

pytest.importorskip("segmentation_models_pytorch")


def _brightness_model(x: torch.Tensor) -> dict[str, torch.Tensor]:
    """HEST-shaped output: tissue (class 1) where the normalised RGB mean is below 1.0."""
    m = x.mean(1)
    return {"out": torch.stack([m - 1.0, 1.0 - m], 1)}


def _dark(image: np.ndarray) -> np.ndarray:
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    return (((image / 255.0 - mean) / std).mean(-1)) < 1.0


@pytest.mark.parametrize(("model_mpp", "min_iou"), [(1.0, 0.85), (2.0, 0.999), (7.0, 0.7)])
def test_tiles_land_where_they_belong(model_mpp, min_iou) -> None:
    with open_slide(CMU) as slide:
        image, mpp = slide.read_whole(2.0)
        canvas = Canvas(image.shape[:2], mpp)
        mask = segment_tissue_canvas(slide, SPECS["hest"], _brightness_model, canvas, RunOptions(batch_size=4),
                                     mpp=model_mpp)
    expected = _dark(image)
    assert mask.shape == expected.shape
    assert 0.05 < expected.mean() < 0.9
    # At the canvas's own resolution the stitched mask is the threshold itself; finer or coarser
    # models differ on texture (nuclei) only, and no 1 px shift of the mask agrees better.
    assert mask_iou(mask, expected) > min_iou
    if model_mpp <= 2:
        shifted = [mask_iou(np.roll(mask, (dy, dx), (0, 1)), expected) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
        assert int(np.argmax(shifted)) == 4


def _forced(name: str, winner: int, path) -> str:
    """A release-layout file of ``name`` whose head always answers class ``winner``."""
    spec = SPECS[name]
    torch.manual_seed(0)
    model = spec.build()
    head = model.classifier[4] if name == "hest" else model.segmentation_head[0]
    with torch.no_grad():
        head.weight.zero_()
        head.bias.fill_(-10.0)
        head.bias[winner] = 10.0
    torch.save(spec.to_release_keys(model.state_dict()), path)
    return str(path)


@pytest.fixture(scope="module")
def forced(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("forced")
    return {"grandqc_tissue": _forced("grandqc", 0, folder / "td_tissue.pth"),
            "grandqc_glass": _forced("grandqc", 1, folder / "td_glass.pth"),
            "fold": _forced("grandqc_artifact", 2, folder / "art_fold.pth"),
            "normal": _forced("grandqc_artifact", 1, folder / "art_normal.pth")}


@pytest.mark.slow
def test_grandqc_all_tissue_covers_the_slide(forced) -> None:
    with open_slide(CMU) as slide:
        result = segment_tissue(slide, TissueParams(method="grandqc", weights=forced["grandqc_tissue"]))
        slide_area = slide.width * slide.height
    assert result.mask.all() and len(result.gdf) == 1
    assert result.geometry.is_valid
    assert result.geometry.area == pytest.approx(slide_area, rel=0.01)
    model = result.provenance["tissue_model"]
    assert model["weights_sha256"] == sha256_file(forced["grandqc_tissue"]) and model["model_mpp"] == 10.0
    assert result.summary()["method"] == "grandqc"


@pytest.mark.slow
def test_grandqc_all_glass_is_no_tissue(forced) -> None:
    with open_slide(CMU) as slide, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = segment_tissue(slide, TissueParams(method="grandqc", weights=forced["grandqc_glass"]))
    assert result.is_empty and any(issubclass(w.category, NoTissueWarning) for w in caught)


@pytest.mark.slow
def test_combined_modes_record_agreement(forced) -> None:
    with open_slide(CMU) as slide:
        classical = detect_tissue(slide)
        inter = segment_tissue(slide, TissueParams(method="grandqc", weights=forced["grandqc_tissue"], combine="intersect"))
        union = segment_tissue(slide, TissueParams(method="grandqc", weights=forced["grandqc_tissue"], combine="union"))
    np.testing.assert_array_equal(inter.mask, classical.mask)  # deep says all: the intersection is the classical
    assert union.mask.all()
    # IoU(classical, everything) is the classical share of the image
    assert inter.agreement_iou == pytest.approx(classical.mask.mean(), abs=1e-6)
    assert inter.summary()["agreement_iou"] == round(inter.agreement_iou, 4)
    assert inter.provenance["combine"] == "intersect"


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::slidestream.errors.NoTissueWarning")
def test_artifacts_are_classified_inside_the_tissue_and_can_be_cut(forced, tmp_path) -> None:
    params = TissueParams(artifact_weights=forced["fold"], artifact_mpp=4.0, artifacts=True)
    with open_slide(CMU) as slide:
        classical = detect_tissue(slide)
        result = segment_tissue(slide, params)
        assert result.geometry.equals(classical.geometry)  # only listed classes are cut
        assert result.artifacts["fold"].symmetric_difference(classical.geometry).area < 0.01 * classical.geometry.area
        assert all(g.is_empty for k, g in result.artifacts.items() if k != "fold")
        normal = segment_tissue(slide, params.model_copy(update={"artifact_weights": forced["normal"]}))
        assert all(g.is_empty for g in normal.artifacts.values())
    # through the stage: the store and GeoJSON carry QuPath-classified folds; excluding them leaves no tissue
    source = SlideSource(CMU)
    summary = run_tissue(source, tmp_path, params.model_copy(update={"exclude_artifacts": ("fold",)}))
    assert summary["tissue_pieces"] == 0 and summary["fold_area_mm2"] > 0.3
    collection = json.loads((tmp_path / f"{source.slide_id}.artifacts.geojson").read_text())
    assert {f["properties"]["classification"]["name"] for f in collection["features"]} == {"Fold"}
    node = SlideStore.open(tmp_path / f"{source.slide_id}.zarr").node_attrs("tissue")
    assert node["artifacts_geojson"] == collection
    assert node["provenance"]["artifact_model"]["weights_sha256"] == sha256_file(forced["fold"])
    assert node["provenance"]["excluded_artifacts"] == ["fold"]


@pytest.mark.slow
def test_hest_runs_over_a_real_slide(tmp_path) -> None:
    path = _forced("hest", 1, tmp_path / "deeplabv3_seg_v4.ckpt")
    with open_slide(CMU) as slide:
        result = segment_tissue(slide, TissueParams(method="hest", weights=path, model_mpp=4.0))
        assert result.mask.all() and result.geometry.area == pytest.approx(slide.width * slide.height, rel=0.01)
    assert result.provenance["tissue_model"]["model"] == "hest"


@pytest.mark.slow
def test_a_rerun_with_other_weights_is_refused(forced, tmp_path) -> None:
    from slidestream.errors import StoreError
    from slidestream.pipeline.batch import Skip

    source = SlideSource(CMU)
    first = TissueParams(method="grandqc", weights=forced["grandqc_tissue"])
    run_tissue(source, tmp_path, first)
    with pytest.raises(Skip):
        run_tissue(source, tmp_path, first.model_copy(update={"batch_size": 3}))
    with pytest.raises(StoreError, match="other grandqc weights"):
        run_tissue(source, tmp_path, first.model_copy(update={"weights": forced["grandqc_glass"]}))
