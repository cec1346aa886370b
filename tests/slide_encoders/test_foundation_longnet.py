"""Prov-GigaPath in plain torch: LongNet dilated attention and positions against the formulas."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from slidestream.slide_encoders.foundation import embed_slide, get_slide_spec, load_slide_encoder
from slidestream.slide_encoders.foundation.gigapath import GigaPathSlide, sincos_rows
from slidestream.slide_encoders.foundation.longnet import attention_with_lse, dilated_attention
from tests.slide_encoders import foundation_refs as ref


@pytest.mark.parametrize(
    ("length", "segments", "ratios"),
    [
        (37, (8, 16, 64), (1, 2, 4)),  # several segments, padded tail, one branch clipped to L
        (13, (4, 8, 16, 32), (1, 2, 4, 4)),  # L not a multiple of r: zero keys inside the softmax
        (24, (24, 24), (1, 2)),
    ],
)
def test_dilated_attention_matches_the_torchscale_formula(length, segments, ratios):
    rng = np.random.default_rng(length)
    q, k, v = (rng.normal(size=(length, 4, 6)) for _ in range(3))
    expected = ref.dilated_reference(q, k, v, segments, ratios)
    got = dilated_attention(*(torch.from_numpy(t)[None].float() for t in (q, k, v)), segments, ratios)
    assert np.abs(got[0].reshape(length, 4, 6).numpy() - expected).max() < 1e-5


def test_attention_with_lse_is_blockwise_exact():
    q, k, v = torch.randn(2, 3, 50, 8), torch.randn(2, 3, 40, 8), torch.randn(2, 3, 40, 8)
    out, lse = attention_with_lse(q, k, v, block=7)
    logits = q @ k.transpose(-1, -2) / 8**0.5
    assert torch.allclose(lse, torch.logsumexp(logits, -1), atol=1e-5)
    assert torch.allclose(out, torch.softmax(logits, -1) @ v, atol=1e-5)


def test_positions_are_rows_of_the_mae_sincos_table_with_the_row_wrap():
    table = ref.mae_sincos_table(768, 30)
    rows = torch.arange(len(table))
    assert np.abs(sincos_rows(rows, 768, 30).numpy() - table).max() < 1e-6
    model = GigaPathSlide(depth=1)
    model.slide_ngrids = 30
    coords = torch.tensor([[0, 0], [512, 256], [256, 30 * 256]])  # y index 30 wraps to row x+1
    assert model.positions(coords, 256).tolist() == [1, 2 * 30 + 1 + 1, 30 + 30 + 1]
    with pytest.raises(ValueError, match="position table"):
        model.positions(torch.tensor([[30 * 256, 0]]), 256)


def test_gigapath_reduced_depth_round_trip_and_forward(tmp_path):
    model = GigaPathSlide(depth=2, segment_lengths=(16, 32), dilated_ratios=(1, 2)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    torch.save({"model": model.state_dict()}, tmp_path / "slide_encoder.pth")
    spec = get_slide_spec("gigapath")
    import dataclasses

    reduced = dataclasses.replace(
        spec, builder=lambda **c: GigaPathSlide(depth=2, segment_lengths=(16, 32),
                                                dilated_ratios=(1, 2), layer=2)
    )
    loaded, _ = load_slide_encoder(reduced, tmp_path)
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(40, 1536)).astype(np.float32)
    coords = rng.integers(0, 50, size=(40, 2)) * 512
    z = embed_slide(loaded, feats, coords, 512.0)
    # the mean over tile tokens of layer 2 (before the final LayerNorm), then `norm`
    with torch.no_grad():
        _, states = loaded.hidden_states(torch.from_numpy(feats), torch.from_numpy(coords), 512.0)
        expected = loaded.norm(states[2][0, 1:].mean(0))
    assert z.shape == (768,) and np.allclose(z, expected.numpy(), atol=1e-6)
    # tile order matters (segments follow the sequence), unlike TITAN or the ABMILs
    perm = rng.permutation(40)
    assert not np.allclose(embed_slide(loaded, feats[perm], coords[perm], 512.0), z, atol=1e-4)


def test_a_slide_beyond_the_position_table_is_a_failed_slide_not_a_crash():
    from slidestream.errors import StoreError
    from slidestream.slide_encoders.foundation import foundation_slide_fn

    model = GigaPathSlide(depth=1, segment_lengths=(8,), dilated_ratios=(1,)).eval()
    run = foundation_slide_fn(get_slide_spec("gigapath"), model)
    bag = {"features": np.zeros((2, 1536), np.float32),
           "coords": np.array([[0, 0], [1000 * 256, 0]]), "patch_size_level0": np.array([256.0])}
    with pytest.raises(StoreError, match="gigapath: tile grid exceeds"):
        run(bag)
