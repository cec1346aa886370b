"""COBRA architecture, masking, inference and strict checkpoint loading."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from slidestream.errors import WeightsError
from slidestream.slide_encoders.cobra import Cobra, CobraConfig, cobra_ii_config, embed
from slidestream.slide_encoders.cobra_weights import load_cobra, save_cobra


def small_config(**kw) -> CobraConfig:
    base = dict(
        input_dims={"uni": 12, "conch": 20},
        embed_dim=32,
        num_heads=4,
        layers=2,
        att_dim=8,
        d_state=8,
        headdim=16,
        chunk_size=8,
    )
    return CobraConfig(**{**base, **kw})


@pytest.fixture
def model() -> Cobra:
    torch.manual_seed(0)
    return Cobra(small_config()).eval()


def test_forward_one_encoder(model):
    x = torch.randn(3, 17, 12)
    z = model({"uni": x})
    assert z.shape == (3, 12)  # pooled in the input features' own space
    weights, hidden = model.attention({"uni": x})
    assert weights.shape == (3, 17) and hidden.shape == (3, 17, 32)
    torch.testing.assert_close(weights.sum(1), torch.ones(3))
    torch.testing.assert_close(z, torch.einsum("bn,bnd->bd", weights, x))


def test_forward_two_encoders_averages_projections(model):
    a, b = torch.randn(2, 9, 12), torch.randn(2, 9, 20)
    z = model({"uni": a, "conch": b}, aggregate="conch")
    assert z.shape == (2, 20)
    both = model.project({"uni": a, "conch": b})
    torch.testing.assert_close(both, (model.embed["uni"](a) + model.embed["conch"](b)) / 2)
    assert not torch.allclose(
        model.attention({"uni": a})[0], model.attention({"uni": a, "conch": b})[0]
    )


def test_unknown_encoder_is_a_clear_error(model):
    with pytest.raises(KeyError, match="virchow"):
        model({"virchow": torch.randn(1, 4, 12)})


def test_heads_see_strided_channels(model):
    """Reference quirk: head i scores channels i, i+c, i+2c, ... of the hidden state."""
    hidden = torch.randn(1, 5, 32)
    seen = {}
    for i, head in enumerate(model.attn):
        head.register_forward_hook(lambda m, inp, out, i=i: seen.__setitem__(i, inp[0]))
    torch.manual_seed(1)
    model.mamba_enc.forward = lambda h: h  # isolate the split
    model.norm = torch.nn.Identity()
    model.attention_scores(hidden)
    torch.testing.assert_close(seen[1], hidden[..., 1::4])


def test_padding_with_mask_equals_separate_slides(model):
    long, short = torch.randn(1, 21, 12), torch.randn(1, 13, 12)
    padded = torch.cat([short, torch.randn(1, 8, 12) * 5], dim=1)
    batch = torch.cat([long, padded])
    mask = torch.ones(2, 21, dtype=torch.bool)
    mask[1, 13:] = False
    z = model({"uni": batch}, mask=mask)
    torch.testing.assert_close(z[0], model({"uni": long})[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(z[1], model({"uni": short})[0], atol=1e-5, rtol=1e-5)
    weights, _ = model.attention({"uni": batch}, mask)
    assert weights[1, 13:].abs().max() == 0


def test_embed_numpy_api_topk_and_hidden(model):
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(30, 12)).astype(np.float32)
    z, att = embed(model, {"uni": feats}, return_attention=True)
    assert z.shape == (12,) and z.dtype == np.float32 and att.shape == (30,)
    np.testing.assert_allclose(z, att @ feats, rtol=1e-4, atol=1e-5)
    top = np.argsort(-att)[:5]
    w = np.exp(att[top]) / np.exp(att[top]).sum()  # softmax of probabilities [code quirk]
    np.testing.assert_allclose(
        embed(model, {"uni": feats}, top_k=5), w @ feats[top], rtol=1e-4, atol=1e-5
    )
    assert embed(model, {"uni": feats}, pool="hidden").shape == (32,)
    with pytest.raises(ValueError, match="empty"):
        embed(model, {"uni": feats[:0]})


def test_checkpoint_round_trip_gives_identical_embeddings(model, tmp_path):
    feats = {"uni": np.random.default_rng(1).normal(size=(40, 12)).astype(np.float32)}
    path = save_cobra(model, tmp_path / "cobra.pt", extra={"note": "test"})
    loaded = load_cobra(path)
    assert loaded.config == model.config and not loaded.training
    np.testing.assert_array_equal(embed(loaded, feats), embed(model, feats))


def test_wrong_keys_give_a_weights_error_naming_them(model, tmp_path):
    state = model.state_dict()
    state["mamba_enc.layers.0.1.bogus"] = torch.zeros(1)
    del state["norm.weight"]
    path = tmp_path / "bad.pt"
    torch.save(state, path)
    with pytest.raises(WeightsError) as info:
        load_cobra(path, small_config())
    message = str(info.value)
    assert str(path) in message
    assert "missing keys: norm.weight" in message and "mamba_enc.layers.0.1.bogus" in message


def test_shape_mismatch_and_missing_config_and_corrupt_file(model, tmp_path):
    torch.save(model.state_dict(), tmp_path / "plain.pt")
    with pytest.raises(WeightsError, match=r"shape mismatch: embed\.uni"):
        load_cobra(tmp_path / "plain.pt", small_config(input_dims={"uni": 13, "conch": 20}))
    with pytest.raises(WeightsError, match="no config"):
        load_cobra(tmp_path / "plain.pt")
    (tmp_path / "junk.pt").write_bytes(b"\x00garbage")
    with pytest.raises(WeightsError, match="not a readable"):
        load_cobra(tmp_path / "junk.pt", small_config())
    with pytest.raises(WeightsError, match="does not exist"):
        load_cobra(tmp_path / "nope.pt", small_config())


def test_released_and_pretraining_layouts_load(model, tmp_path):
    """Released files key projections by dimension; MoCo files wrap the momentum encoder."""
    feats = {"conch": np.random.default_rng(2).normal(size=(25, 20)).astype(np.float32)}
    state = model.state_dict()
    by_dim = {
        k.replace("embed.uni.", "embed.12.").replace("embed.conch.", "embed.20."): v
        for k, v in state.items()
    }
    torch.save(by_dim, tmp_path / "released.bin")
    released = load_cobra(tmp_path / "released.bin", small_config())
    np.testing.assert_array_equal(embed(released, feats), embed(model, feats))

    moco = {f"module.momentum_enc.{k}": v for k, v in by_dim.items()}
    moco.update({f"module.base_enc.{k}": torch.zeros_like(v) for k, v in state.items()})
    moco["module.momentum_enc.proj.0.weight"] = torch.zeros(3)
    torch.save({"state_dict": moco, "epoch": 3}, tmp_path / "moco.pth.tar")
    pretrain = load_cobra(tmp_path / "moco.pth.tar", small_config())
    np.testing.assert_array_equal(embed(pretrain, feats), embed(model, feats))


def test_released_cobra_ii_key_set():
    """The state dict names of SLIDE_LEVEL §2.2, so released weights fit with strict loading."""
    keys = set(Cobra(cobra_ii_config({"1024": 1024})).state_dict())
    for key in [
        "embed.1024.head.0.weight",
        "embed.1024.head.1.bias",
        "embed.1024.head.4.weight",
        "norm.weight",
        "mamba_enc._fc1.0.weight",
        "mamba_enc.norm.bias",
        "mamba_enc.classifier.weight",
        "mamba_enc.layers.0.0.weight",
        "mamba_enc.layers.0.1.in_proj.weight",
        "mamba_enc.layers.0.1.A_log",
        "attn.3.attention_a.0.weight",
        "attn.3.attention_b.0.bias",
        "attn.3.attention_c.weight",
    ]:
        assert key in keys, key
    assert "mamba_enc.layers.1.0.weight" not in keys  # COBRA II has one Mamba layer
