"""The GPU feeding path (pinned staging, async copies, one-batch-late results) on the CPU.

What a user cares about: turning the path on changes nothing in the features. On the CPU every
step is synchronous, so the features must equal ``encoder(batch)`` exactly, for the weight-free
handcrafted encoder and for a ViT whose preprocessing resizes (bicubic) and centre-crops.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import timm
import torch

from slidestream.encoders import get_spec, load_encoder
from slidestream.encoders.encoder import Encoder
from slidestream.extraction import ExtractOptions, extract_store
from slidestream.extraction.device_feed import DeviceFeeder, use_device_feed
from slidestream.pipeline.stages import SlideSource, run_extract
from slidestream.store import SlideStore, load_features
from slidestream.tiling.params import TilingParams
from tests.conftest import CMU


def tiny_vit() -> Encoder:
    """A 2-block random-init ViT/16 with GigaPath's preprocessing (Resize 256 bicubic → CenterCrop 224)."""
    spec = get_spec("gigapath")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = timm.models.VisionTransformer(img_size=224, patch_size=16, embed_dim=64, depth=2, num_heads=2,
                                              num_classes=0).eval()
    spec = replace(spec, name="tiny-vit", embed_dim=64, builder=lambda: model)
    return Encoder(spec, model, device=torch.device("cpu"), precision="fp32", weights_path=None,
                   weights_sha256="random-init")


@pytest.fixture(scope="module", params=["handcrafted", "tiny-vit"])
def encoder(request):
    return load_encoder("handcrafted") if request.param == "handcrafted" else tiny_vit()


def batches(size: int, sizes=(2, 2, 1), seed: int = 0):
    rng = np.random.default_rng(seed)
    row, out = 0, []
    for n in sizes:
        out.append((row, rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)))
        row += n
    return out


@pytest.mark.parametrize("stage", [False, True])
def test_feeder_features_equal_the_plain_call(encoder, stage):
    """Full and partial batches of tiles that need resizing, staged through 2 reused buffers or not."""
    given = batches(300)
    fed = list(DeviceFeeder(encoder, buffers=2, stage=stage).run(iter(given)))
    assert [row for row, _ in fed] == [row for row, _ in given]
    for (_, tiles), (_, features) in zip(given, fed, strict=True):
        assert features.dtype == np.float32 and features.shape == (len(tiles), encoder.embed_dim)
        np.testing.assert_array_equal(features, encoder(tiles))


def test_staging_buffers_are_reused_and_grow_for_a_larger_batch(encoder):
    feeder = DeviceFeeder(encoder, buffers=2, stage=True)
    sizes = (1, 2, 2, 1, 2)   # the first batch is small: its buffer must grow when reused
    given = batches(224, sizes, seed=1)
    fed = list(feeder.run(iter(given)))
    for (_, tiles), (_, features) in zip(given, fed, strict=True):
        np.testing.assert_array_equal(features, encoder(tiles))
    assert len(feeder._buffers) == 2 and all(b is not None and b.shape[0] == 2 for b in feeder._buffers)


def test_feeder_rejects_tiles_that_are_not_uint8_rgb():
    feeder = DeviceFeeder(load_encoder("handcrafted"), stage=True)
    with pytest.raises(ValueError, match="uint8"):
        feeder.upload(np.zeros((2, 224, 224, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(B, H, W, 3\)"):
        feeder.upload(np.zeros((2, 224, 224), np.uint8))


def test_the_feeder_is_on_by_default_only_for_cuda():
    class OnDevice:
        def __init__(self, device):
            self.device = torch.device(device)

    assert use_device_feed(OnDevice("cuda:1"), None) is True
    assert use_device_feed(OnDevice("cpu"), None) is False
    assert use_device_feed(OnDevice("cuda"), False) is False
    assert use_device_feed(OnDevice("cpu"), True) is True
    assert use_device_feed(object(), None) is False   # a plain callable has no device


def test_extraction_through_the_feeder_gives_identical_features(tmp_path):
    """The runner hook end to end on a real slide: the same stored features, row for row."""
    encoder = tiny_vit()
    tiling = TilingParams(mpp=2.0, tile_size=112)   # 112 px tiles are resized to the ViT's 256 then cropped
    source = SlideSource(CMU)
    plain = ExtractOptions(batch_size=7, chunk_rows=16, workers=2, device_feed=False)
    run_extract(source, tmp_path, encoder, plain, tiling=tiling, write_images=False)
    store = SlideStore.open(tmp_path / f"{CMU.stem}.zarr")
    reference, _ = load_features(store.path, "tiny-vit")
    assert len(reference) > 7 and len(reference) % 7 != 0   # a partial last batch is in there
    fed = ExtractOptions(batch_size=7, chunk_rows=16, workers=2, device_feed=True)
    extract_store(source.open().spec, store, encoder, fed, overwrite=True)
    again, _ = load_features(store.path, "tiny-vit")
    np.testing.assert_array_equal(again, reference)
