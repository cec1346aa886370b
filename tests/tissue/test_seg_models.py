"""Deep segmenters: release file layouts load strictly, and our forward equals the official recipe's.

The release files are rebuilt here with random weights in each release's layout (HEST: a
Lightning checkpoint with ``model.`` keys and an aux head; GrandQC: plain state dicts), written by
the libraries' own constructors called with the official arguments, independently of our loader.
The references follow the official inference code (HEST ``segment_tissue_deep``, GrandQC
``wsi_tis_detect.py``, TRIDENT ``segmentation_models/load.py``): torchvision transforms on a PIL
image, smp's ``preprocess_input``, OpenCV's JPEG round trip, ``model.predict``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from slidestream.errors import WeightsError
from slidestream.io import open_slide
from slidestream.tissue.models import SPECS, decide_tissue, logits, preprocess
from slidestream.tissue.seg_weights import ENV_WEIGHTS, build_model, resolve, sha256_file
from tests.conftest import CMU

smp = pytest.importorskip("segmentation_models_pytorch")
tv_seg = pytest.importorskip("torchvision.models.segmentation")
transforms = pytest.importorskip("torchvision.transforms")


def _official_hest() -> torch.nn.Module:
    model = tv_seg.deeplabv3_resnet50(weights=None, weights_backbone=None)  # torch.hub v0.10: pretrained=False
    model.classifier[4] = torch.nn.Conv2d(in_channels=256, out_channels=2, kernel_size=1, stride=1)
    return model


def _official_grandqc(arch: str, classes: int) -> torch.nn.Module:
    return getattr(smp, arch)(encoder_name="timm-efficientnet-b0", encoder_weights=None, classes=classes, activation=None)


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple]:
    """Random-weights files in each release's layout, and the reference modules they came from."""
    folder = tmp_path_factory.mktemp("seg-weights")
    torch.manual_seed(1)
    out = {}
    hest = _official_hest().eval()
    sd = {f"model.{k}": v for k, v in hest.state_dict().items()}
    sd["model.aux_classifier.0.weight"] = torch.randn(256, 1024, 3, 3)  # the training-time aux head
    sd["model.aux_classifier.4.weight"] = torch.randn(2, 256, 1, 1)
    torch.save({"state_dict": sd, "epoch": 3, "global_step": 100}, folder / "deeplabv3_seg_v4.ckpt")
    out["hest"] = (folder / "deeplabv3_seg_v4.ckpt", hest)
    td = _official_grandqc("UnetPlusPlus", 2).eval()
    torch.save(td.state_dict(), folder / "Tissue_Detection_MPP10.pth")
    out["grandqc"] = (folder / "Tissue_Detection_MPP10.pth", td)
    art = _official_grandqc("Unet", 8).eval()
    torch.save(art.state_dict(), folder / "GrandQC_MPP1_state_dict.pth")
    out["grandqc_artifact"] = (folder / "GrandQC_MPP1_state_dict.pth", art)
    return out


@pytest.fixture(scope="module")
def tile() -> np.ndarray:
    """A real 128 px RGB tile of CMU-1 with tissue and glass, at 2 um/px (fully convolutional models
    accept any multiple of 32; 128 keeps the CPU forward short)."""
    with open_slide(CMU) as slide:
        return slide.read_at_mpp(300, 1200, 2.0, 128)


@pytest.mark.parametrize("name", ["hest", "grandqc", "grandqc_artifact"])
def test_release_layout_round_trips_strictly(releases, name) -> None:
    path, reference = releases[name]
    model, sha, loaded_from = build_model(SPECS[name], path)
    assert sha == sha256_file(path) and loaded_from == str(path)
    ours, ref = model.state_dict(), reference.state_dict()
    assert ours.keys() == ref.keys()
    assert all(torch.equal(ours[k], ref[k]) for k in ref)
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == {"hest": 39_633_986, "grandqc": 6_569_726, "grandqc_artifact": 6_252_484}[name]  # ZOO.md §1c


@pytest.mark.slow
def test_hest_logits_equal_the_official_recipe(releases, tile) -> None:
    path, _ = releases["hest"]
    ours, _, _ = build_model(SPECS["hest"], path)
    reference = _official_hest()
    checkpoint = torch.load(path, map_location="cpu")  # HEST: drop 'aux' keys, strip 'model.'
    reference.load_state_dict({k.replace("model.", ""): v for k, v in checkpoint["state_dict"].items() if "aux" not in k})
    reference.eval()
    from PIL import Image

    eval_transforms = transforms.Compose([transforms.ToTensor(),
                                          transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
    with torch.inference_mode():
        want = reference(eval_transforms(Image.fromarray(tile)).unsqueeze(0))["out"]
        got = logits(ours, torch.from_numpy(preprocess(tile[None], SPECS["hest"])), SPECS["hest"])
    assert got.shape == (1, 2, 128, 128)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    # TRIDENT's decision: softmax channel 1 > 0.5
    np.testing.assert_array_equal(decide_tissue(got, SPECS["hest"], 0.5).numpy(),
                                  (torch.softmax(want, 1)[:, 1] > 0.5).numpy())


@pytest.mark.slow
@pytest.mark.parametrize("name", ["grandqc", "grandqc_artifact"])
def test_grandqc_logits_equal_the_official_recipe(releases, tile, name) -> None:
    import cv2
    from segmentation_models_pytorch.encoders._preprocessing import preprocess_input

    path, _ = releases[name]
    spec = SPECS[name]
    ours, _, _ = build_model(spec, path)
    reference = _official_grandqc("UnetPlusPlus", 2) if name == "grandqc" else _official_grandqc("Unet", 8)
    reference.load_state_dict(torch.load(path, map_location="cpu"))
    image = tile
    if name == "grandqc":  # wsi_tis_detect.py: JPEG q80 through OpenCV before the preprocessing
        image = cv2.imdecode(cv2.imencode(".jpg", image, [int(cv2.IMWRITE_JPEG_QUALITY), 80])[1], 1)
    x = preprocess_input(np.array(image), mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225], input_range=[0, 1])
    want = reference.predict(torch.from_numpy(x.transpose(2, 0, 1).astype("float32")).unsqueeze(0))
    with torch.inference_mode():
        got = logits(ours.eval(), torch.from_numpy(preprocess(tile[None], spec)), spec)
    assert got.shape == (1, spec.n_classes, 128, 128)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    if name == "grandqc":  # TRIDENT: (max_prob >= 0.5) * (1 - argmax); the original: argmax == 0
        probs = torch.softmax(want, 1)
        top, cls = probs.max(1)
        trident = ((top >= 0.5) * (1 - cls)).bool()
        np.testing.assert_array_equal(decide_tissue(got, spec, 0.5).numpy(), trident.numpy())
        np.testing.assert_array_equal(trident.numpy(), (want.argmax(1) == 0).numpy())


def test_strict_load_names_the_mismatch(releases, tmp_path) -> None:
    path, _ = releases["grandqc"]
    sd = torch.load(path)
    del sd["segmentation_head.0.bias"]
    sd["decoder.extra.weight"] = torch.zeros(1)
    broken = tmp_path / "broken.pth"
    torch.save(sd, broken)
    with pytest.raises(WeightsError, match=r"1 missing: segmentation_head.0.bias; 1 unexpected: decoder.extra.weight"):
        build_model(SPECS["grandqc"], broken)
    with pytest.raises(WeightsError, match="wrong shape"):  # the artifact file is not the tissue model
        build_model(SPECS["grandqc"], releases["grandqc_artifact"][0])
    with pytest.raises(WeightsError, match="not a Lightning checkpoint"):
        build_model(SPECS["hest"], path)


def test_pickled_module_is_refused_with_the_conversion(tmp_path) -> None:
    """GrandQC's Zenodo files are whole pickled modules: reading them would run code."""
    pickled = tmp_path / "GrandQC_MPP1.pth"
    torch.save(_official_grandqc("Unet", 8), pickled)
    with pytest.raises(WeightsError, match=r"pickled module.*state_dict"):
        build_model(SPECS["grandqc_artifact"], pickled)


def test_weights_are_found_locally_or_the_error_says_where_to_get_them(releases, tmp_path, monkeypatch) -> None:
    monkeypatch.delenv(ENV_WEIGHTS, raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(WeightsError, match=r"no local weights \(deeplabv3_seg_v4.ckpt\).*huggingface.co/MahmoodLab/hest-tissue-seg"):
        resolve(SPECS["hest"])
    with pytest.raises(WeightsError, match="does not exist"):
        resolve(SPECS["hest"], tmp_path / "nope.ckpt")
    # the hub cache layout left by `huggingface-cli download MahmoodLab/hest-tissue-seg`
    snap = tmp_path / "hub" / "models--MahmoodLab--hest-tissue-seg" / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (snap / "Tissue_Detection_MPP10.pth").write_bytes(releases["grandqc"][0].read_bytes())
    assert resolve(SPECS["grandqc"]) == snap / "Tissue_Detection_MPP10.pth"
    # $SLIDESTREAM_WEIGHTS wins over the cache; a folder given to --weights is searched
    own = tmp_path / "weights" / "hest"
    own.mkdir(parents=True)
    (own / "deeplabv3_seg_v4.ckpt").write_bytes(b"x")
    monkeypatch.setenv(ENV_WEIGHTS, str(tmp_path / "weights"))
    assert resolve(SPECS["hest"]) == own / "deeplabv3_seg_v4.ckpt"
    assert resolve(SPECS["hest"], own) == own / "deeplabv3_seg_v4.ckpt"
    with pytest.raises(WeightsError, match="cannot read weights"):
        build_model(SPECS["hest"])
