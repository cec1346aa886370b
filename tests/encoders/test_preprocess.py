"""Batched torch preprocessing against the reference (PIL + torchvision) pipelines."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from slidestream.encoders import all_specs, get_spec, load_encoder
from slidestream.encoders.preprocess import preprocess, resized_size
from slidestream.encoders.spec import EncoderSpec
from tests.encoders._helpers import he_like_tile

# Off-native, sometimes non-square tiles, so that resizing and cropping really happen.
CASES = {
    "gigapath": (300, 260),  # Resize(256, bicubic) → CenterCrop(224)
    "resnet50-trunc": (256, 256),  # Resize(224, bilinear), no crop
    "pathdino": (600, 560),  # Resize(512) → CenterCrop(512)
    "conch-v1": (512, 512),  # Resize(448, bicubic) → CenterCrop(448)
    "hibou-b": (250, 250),  # Resize((224, 224), bicubic) → CenterCrop(224)
    "phikon": (256, 240),  # Resize((224, 224), bilinear), no crop
}


def _tile(shape: tuple[int, int]) -> np.ndarray:
    return he_like_tile(max(shape))[: shape[0], : shape[1]]


def _torchvision_ops(spec: EncoderSpec, pil: bool) -> list:
    interp = {"bilinear": v2.InterpolationMode.BILINEAR, "bicubic": v2.InterpolationMode.BICUBIC}
    r = spec.resize
    size = r.resize_to if r.mode == "shorter_side" else (r.resize_to, r.resize_to)
    ops = [v2.Resize(size, interpolation=interp[r.interpolation], antialias=True)]
    if not pil and r.interpolation == "bicubic":
        ops.append(v2.Lambda(lambda t: t.clamp(0, 1)))
    if r.crop is not None:
        ops.append(v2.CenterCrop(r.crop))
    return ops


@pytest.mark.parametrize("name", list(CASES))
def test_matches_the_pil_reference_pipeline(name: str) -> None:
    """The official transforms run on PIL images; allow the uint8 rounding they do (~1 level)."""
    spec = get_spec(name)
    tile = _tile(CASES[name])
    reference = v2.Compose(
        [
            *_torchvision_ops(spec, pil=True),
            v2.PILToTensor(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(spec.mean, spec.std),
        ]
    )(Image.fromarray(tile))
    ours = preprocess(tile, spec)[0]
    assert ours.shape == reference.shape == (3, spec.input_size, spec.input_size)
    diff = (ours - reference).abs()
    assert diff.max() < 0.03 and diff.mean() < 0.01


@pytest.mark.parametrize("name", list(CASES))
def test_matches_torchvision_tensor_semantics_exactly(name: str) -> None:
    spec = get_spec(name)
    tile = _tile(CASES[name])
    x = torch.from_numpy(tile).permute(2, 0, 1).float() / 255
    reference = v2.Compose([*_torchvision_ops(spec, pil=False), v2.Normalize(spec.mean, spec.std)])(
        x
    )
    torch.testing.assert_close(preprocess(tile, spec)[0], reference, rtol=0, atol=2e-5)


@pytest.mark.parametrize("spec", all_specs(), ids=lambda s: s.name)
def test_constant_tile_gives_the_spec_normalisation_in_rgb_order(spec: EncoderSpec) -> None:
    rgb = np.array([200, 120, 40], np.uint8)
    tile = np.broadcast_to(rgb, (1, spec.tile_size, spec.tile_size, 3))
    out = preprocess(tile, spec)
    assert out.shape == (1, 3, spec.input_size, spec.input_size) and out.dtype == torch.float32
    want = (rgb / 255.0 - np.array(spec.mean)) / np.array(spec.std)
    np.testing.assert_allclose(out[0].mean(dim=(1, 2)).numpy(), want, rtol=0, atol=1e-5)
    np.testing.assert_allclose(out.std(dim=(2, 3)).numpy(), 0, atol=1e-5)


def test_bicubic_overshoot_is_clamped_like_pil_uint8() -> None:
    """Hard black/white edges ring under bicubic; PIL's uint8 output saturates, so must we."""
    spec = get_spec("gigapath")
    tile = np.zeros((1, 300, 300, 3), np.uint8)
    tile[:, :, ::7] = 255  # thin white lines on black
    out = preprocess(tile, spec)
    lo = (0 - torch.tensor(spec.mean)) / torch.tensor(spec.std)
    hi = (1 - torch.tensor(spec.mean)) / torch.tensor(spec.std)
    per_channel = out.transpose(0, 1).flatten(1)
    assert torch.all(per_channel.min(1).values >= lo - 1e-6)
    assert torch.all(per_channel.max(1).values <= hi + 1e-6)
    # ... and the input really does ring without the clamp, so the bounds above are a real test.
    raw = torch.nn.functional.interpolate(
        torch.from_numpy(tile).permute(0, 3, 1, 2) / 255.0,
        size=(256, 256),
        mode="bicubic",
        antialias=True,
    )
    assert raw.min() < -0.01  # black between thin white lines undershoots


def test_native_tile_is_not_resampled() -> None:
    spec = get_spec("uni")
    tile = np.random.default_rng(0).integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
    want = (
        torch.from_numpy(tile).permute(0, 3, 1, 2) / 255.0
        - torch.tensor(spec.mean).view(1, 3, 1, 1)
    ) / torch.tensor(spec.std).view(1, 3, 1, 1)
    torch.testing.assert_close(preprocess(tile, spec), want.float(), rtol=0, atol=1e-6)


def test_imagenet_and_pathology_constants() -> None:
    assert get_spec("uni").mean == (0.485, 0.456, 0.406) and get_spec("uni").std == (
        0.229,
        0.224,
        0.225,
    )
    assert get_spec("h-optimus-0").mean == (0.707223, 0.578729, 0.703617)
    assert get_spec("hibou-l").std == (0.195, 0.2316, 0.1816)
    assert get_spec("conch-v1").mean == (0.48145466, 0.4578275, 0.40821073)


def test_shorter_side_sizing_follows_torchvision() -> None:
    r = get_spec("gigapath").resize
    assert resized_size(300, 260, r) == (295, 256)
    assert resized_size(260, 300, r) == (256, 295)
    assert resized_size(999, 999, get_spec("phikon").resize) == (224, 224)


def test_inputs_numpy_torch_and_single_tile_agree() -> None:
    spec = get_spec("resnet50-trunc")
    tile = _tile((256, 256))
    a = preprocess(tile[None], spec)
    torch.testing.assert_close(preprocess(torch.from_numpy(tile[None]), spec), a)
    torch.testing.assert_close(preprocess(tile, spec), a)
    assert preprocess(tile, spec, channels_last=True).is_contiguous(
        memory_format=torch.channels_last
    )


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.zeros((1, 224, 224, 3), np.float32), "uint8"),
        (np.zeros((1, 3, 224, 224), np.uint8), "shape"),
        ([[0, 0, 0]], "numpy array or torch tensor"),
    ],
)
def test_bad_inputs_are_rejected(bad: object, message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        preprocess(bad, get_spec("uni"))


def test_encoder_preprocess_runs_on_its_device_and_feeds_embed() -> None:
    enc = load_encoder("resnet50-trunc", random_init=True)
    x = enc.preprocess(_tile((256, 256)))
    assert x.device == enc.device and x.shape == (1, 3, 224, 224)
    assert enc.embed(x).shape == (1, 1024)
