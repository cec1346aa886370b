"""Checkpoints of the original MIL implementations load strictly and predict like the originals.

The state dicts are written here with the official key names and shapes (CLAM's
``model_clam.py``, TransMIL's ``TransMIL.py`` + lucidrains' ``nystrom-attention``, DSMIL's
``dsmil.py``, MIL-Lab's ``abmil.py``) and random values; the forward passes are compared with
plain re-implementations of the official forwards. The comparison with the official modules
themselves (which CI cannot fetch) is ``benchmarks/mil_foreign_check.py``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from slidestream.errors import ConfigError
from slidestream.mil import InMemoryBagSource, predict
from slidestream.mil.checkpoint import load_checkpoint
from slidestream.mil.foreign_checkpoints import detect

D = 48  # feature dimension of the bags


def rand(*shape: int) -> torch.Tensor:
    return torch.randn(*shape) * 0.2


def linear(state: dict, key: str, out_dim: int, in_dim: int) -> None:
    state[f"{key}.weight"], state[f"{key}.bias"] = rand(out_dim, in_dim), rand(out_dim)


def lin(state: dict, key: str, x: torch.Tensor) -> torch.Tensor:
    return F.linear(x, state[f"{key}.weight"], state[f"{key}.bias"])


def clam_state(n_classes: int, mb: bool, attn_index: int = 3, attn_dim: int = 256, dim: int = D) -> dict:
    s: dict = {}
    linear(s, "attention_net.0", 512, dim)
    linear(s, f"attention_net.{attn_index}.attention_a.0", attn_dim, 512)
    linear(s, f"attention_net.{attn_index}.attention_b.0", attn_dim, 512)
    linear(s, f"attention_net.{attn_index}.attention_c", n_classes if mb else 1, attn_dim)
    for c in range(n_classes):
        linear(s, f"instance_classifiers.{c}", 2, 512)
        if mb:
            linear(s, f"classifiers.{c}", 1, 512)
    if not mb:
        linear(s, "classifiers", n_classes, 512)
    s["instance_loss_fn.labels"] = torch.arange(2)  # a loss buffer CLAM's eval drops
    return s


def clam_forward(s: dict, x: torch.Tensor, mb: bool, attn_index: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    h = torch.relu(lin(s, "attention_net.0", x))
    p = f"attention_net.{attn_index}"
    a = torch.tanh(lin(s, f"{p}.attention_a.0", h)) * torch.sigmoid(lin(s, f"{p}.attention_b.0", h))
    attn = torch.softmax(lin(s, f"{p}.attention_c", a).T, dim=1)  # K x N
    m = attn @ h
    if mb:
        logits = torch.stack([lin(s, f"classifiers.{c}", m[c])[0] for c in range(m.shape[0])])[None]
        return logits, attn[logits.argmax()]
    return lin(s, "classifiers", m), attn[0]


def dsmil_state(n_classes: int) -> dict:
    s: dict = {}
    linear(s, "i_classifier.fc.0", n_classes, D)
    linear(s, "b_classifier.q.0", 128, D)
    linear(s, "b_classifier.q.2", 128, 128)
    s["b_classifier.fcc.weight"], s["b_classifier.fcc.bias"] = rand(n_classes, n_classes, D), rand(n_classes)
    return s


def dsmil_forward(s: dict, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    c = lin(s, "i_classifier.fc.0", x)  # N x C
    def q(v):
        return torch.tanh(lin(s, "b_classifier.q.2", torch.relu(lin(s, "b_classifier.q.0", v))))
    crit = x[c.argmax(dim=0)]  # C x D: each class's top instance
    a = torch.softmax(q(x) @ q(crit).T / math.sqrt(128), dim=0)  # N x C
    b = (a.T @ x)[None]  # 1 x C x D
    return F.conv1d(b, s["b_classifier.fcc.weight"], s["b_classifier.fcc.bias"]).view(1, -1), a


def mil_lab_state(n_classes: int, gate: bool) -> dict:
    s: dict = {}
    linear(s, "patch_embed.0", 64, D)
    if gate:
        linear(s, "global_attn.attention_a.0", 32, 64)
        linear(s, "global_attn.attention_b.0", 32, 64)
        linear(s, "global_attn.attention_c", 1, 32)
    else:
        linear(s, "global_attn.module.0", 32, 64)
        linear(s, "global_attn.module.3", 1, 32)
    linear(s, "classifier", n_classes, 64)
    return s


def mil_lab_forward(s: dict, x: torch.Tensor, gate: bool) -> torch.Tensor:
    h = torch.relu(lin(s, "patch_embed.0", x))
    if gate:
        a = torch.tanh(lin(s, "global_attn.attention_a.0", h)) * torch.sigmoid(lin(s, "global_attn.attention_b.0", h))
        raw = lin(s, "global_attn.attention_c", a)
    else:
        raw = lin(s, "global_attn.module.3", torch.tanh(lin(s, "global_attn.module.0", h)))
    return lin(s, "classifier", torch.softmax(raw.T, dim=1) @ h)


def transmil_state(n_classes: int, dim: int = 64, heads: int = 8) -> dict:
    s: dict = {"cls_token": rand(1, 1, dim)}
    linear(s, "_fc1.0", dim, D)
    for layer in ("layer1", "layer2"):
        s[f"{layer}.norm.weight"], s[f"{layer}.norm.bias"] = 1 + rand(dim), rand(dim)
        s[f"{layer}.attn.to_qkv.weight"] = rand(3 * dim, dim)
        linear(s, f"{layer}.attn.to_out.0", dim, dim)
        s[f"{layer}.attn.res_conv.weight"] = rand(heads, 1, 33, 1)
    for name, k in (("proj", 7), ("proj1", 5), ("proj2", 3)):
        s[f"pos_layer.{name}.weight"], s[f"pos_layer.{name}.bias"] = rand(dim, 1, k, k), rand(dim)
    s["norm.weight"], s["norm.bias"] = 1 + rand(dim), rand(dim)
    linear(s, "_fc2", n_classes, dim)
    return s


# Our names for TransMIL, written out by hand (not through the module's rules).
TRANSMIL_OURS = {"_fc1.0": "embed.0", "pos_layer.proj": "ppeg.convs.0", "pos_layer.proj1": "ppeg.convs.1",
                 "pos_layer.proj2": "ppeg.convs.2", "_fc2": "classifier"}


def save(tmp_path, state: dict, name: str = "official.pt"):
    path = tmp_path / name
    torch.save(state, path)
    return path


@pytest.mark.parametrize(("n_classes", "mb", "attn_index"), [(2, False, 3), (3, False, 2), (3, True, 3)])
def test_clam_checkpoints_load_strictly_and_match_the_official_forward(tmp_path, n_classes, mb, attn_index):
    state = clam_state(n_classes, mb, attn_index)
    assert detect(state) == ("clam_mb" if mb else "clam_sb")
    loaded = load_checkpoint(save(tmp_path, state))
    assert loaded.meta["model_name"] == ("clam_mb" if mb else "clam_sb") and loaded.in_dim == D
    for n in (1, 23):
        x = torch.randn(n, D)
        with torch.no_grad():
            out = loaded.model(x[None])
            logits, scores = clam_forward(state, x, mb, attn_index)
        torch.testing.assert_close(out.logits, logits, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(out.scores[0], scores, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("n_classes", [1, 3])
def test_dsmil_checkpoints_match_the_official_streams(tmp_path, n_classes):
    state = dsmil_state(n_classes)
    loaded = load_checkpoint(save(tmp_path, state))
    x = torch.randn(31, D)
    with torch.no_grad():
        out = loaded.model(x[None])
        bag, attn = dsmil_forward(state, x)
    if n_classes == 1:  # BCE model: two classes with logits [0, z]; softmax gives the official sigmoid
        assert out.logits.shape == (1, 2)
        torch.testing.assert_close(torch.softmax(out.logits, 1)[0, 1], torch.sigmoid(bag[0, 0]), atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(out.scores[0], attn[:, 0], atol=1e-6, rtol=1e-5)
    else:
        torch.testing.assert_close(out.logits, bag, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out.extra["attention"][0], attn.T, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("gate", [True, False])
def test_mil_lab_abmil_checkpoints_match(tmp_path, gate):
    state = mil_lab_state(4, gate)
    loaded = load_checkpoint(save(tmp_path, state))
    assert loaded.meta["model_name"] == ("abmil_gated" if gate else "abmil")
    x = torch.randn(17, D)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x[None]).logits, mil_lab_forward(state, x, gate), atol=1e-6, rtol=1e-5)


def test_transmil_lightning_checkpoint_maps_every_tensor(tmp_path):
    """TransMIL trains with Lightning: ``{"state_dict": {"model.<key>": ...}}``."""
    state = transmil_state(3)
    loaded = load_checkpoint(save(tmp_path, {"state_dict": {f"model.{k}": v for k, v in state.items()}}, "x.ckpt"))
    ours = loaded.model.state_dict()
    for key, value in state.items():
        head = next((k for k in TRANSMIL_OURS if key.startswith(k + ".")), None)
        mine = TRANSMIL_OURS[head] + key[len(head):] if head else key
        assert torch.equal(ours[mine], value), key
    assert len(ours) == len(state)
    with torch.no_grad():  # runs on a bag that needs square padding
        assert torch.isfinite(loaded.model(torch.randn(1, 11, D)).logits).all()


def test_a_wrong_or_unknown_layout_is_one_clear_error(tmp_path):
    state = clam_state(2, mb=False)
    state["attention_net.3.attention_c.extra"] = torch.zeros(1)
    with pytest.raises(ConfigError, match=r"unexpected key 'attention_net\.3\.attention_c\.extra'"):
        load_checkpoint(save(tmp_path, state))
    bad = clam_state(2, mb=False)
    bad["classifiers.weight"] = torch.zeros(2, 100)
    with pytest.raises(ConfigError, match="do not fit clam_sb"):
        load_checkpoint(save(tmp_path, bad, "bad.pt"))
    with pytest.raises(ConfigError, match="nor a state dict of"):
        load_checkpoint(save(tmp_path, {"foo.weight": torch.zeros(2)}, "foo.pt"))


def test_predict_and_the_cli_accept_an_official_checkpoint(tmp_path):
    state = clam_state(2, mb=False)
    ckpt = save(tmp_path, state, "s_0_checkpoint.pt")
    rng = np.random.default_rng(0)
    bags = {f"s{i}": (rng.normal(size=(9 + i, D)).astype(np.float32), np.zeros((9 + i, 2), np.int64)) for i in range(3)}
    result = predict(ckpt, InMemoryBagSource(bags))
    assert list(result.table["slide_id"]) == ["s0", "s1", "s2"]
    with torch.no_grad():
        expected = torch.softmax(clam_forward(state, torch.from_numpy(bags["s1"][0]), mb=False)[0], 1)[0, 1].item()
    assert result.table.loc[1, "prob_1"] == pytest.approx(expected, abs=1e-6)
    assert len(result.scores["s2"]) == 11
