"""The ``Encoder`` object: provenance, precision, pooling, options, and the house rules."""

from __future__ import annotations

import ast
import socket
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from safetensors.torch import save_file

import slidestream.encoders as encoders_pkg
from slidestream.encoders import get_spec, load_encoder
from slidestream.encoders.pooling import pool
from slidestream.errors import ConfigError
from tests.encoders._helpers import he_like_tile, random_tiles


def test_provenance_of_a_random_init_encoder() -> None:
    enc = load_encoder("pathdino", random_init=True)
    prov = enc.provenance()
    assert prov["name"] == "pathdino" and prov["weights_sha256"] == "random-init"
    assert prov["dim"] == 384 and prov["native_mpp"] == 0.5
    assert prov["input_size"] == 512 and prov["tile_size"] == 512
    assert prov["precision"] == "fp32" and prov["timm_version"] == timm.__version__
    assert prov["weights_path"] is None and prov["resize"]["interpolation"] == "bilinear"


def test_random_init_is_seeded_and_leaves_global_rng_alone() -> None:
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = load_encoder("pluto", random_init=True)
    after = torch.rand(1)
    b = load_encoder("pluto", random_init=True)
    assert torch.equal(before, after)
    tiles = random_tiles("pluto")
    assert np.array_equal(a(tiles), b(tiles))


def test_call_returns_float32_numpy_and_embed_is_inference_only() -> None:
    enc = load_encoder("resnet50-trunc", random_init=True)
    tiles = random_tiles("resnet50-trunc", n=2)
    out = enc(tiles)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32 and out.shape == (2, 1024)
    emb = enc.embed(enc.preprocess(torch.from_numpy(tiles)))
    assert emb.dtype == torch.float32 and not emb.requires_grad
    np.testing.assert_allclose(emb.numpy(), out, rtol=0, atol=1e-6)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_reduced_precision_stays_close_to_fp32(precision: str) -> None:
    tiles = np.stack([he_like_tile(seed=s) for s in range(2)])
    ref = load_encoder("pluto", random_init=True)(tiles)
    low_enc = load_encoder("pluto", random_init=True, precision=precision)
    low = low_enc(tiles)
    assert low.dtype == np.float32 and low_enc.provenance()["precision"] == precision
    cos = (ref * low).sum(1) / np.linalg.norm(ref, axis=1) / np.linalg.norm(low, axis=1)
    assert cos.min() > 0.99


def test_channels_last_gives_the_same_embeddings() -> None:
    tiles = random_tiles("resnet50-trunc")
    plain = load_encoder("resnet50-trunc", random_init=True)(tiles)
    cl = load_encoder("resnet50-trunc", random_init=True, channels_last=True)(tiles)
    np.testing.assert_allclose(cl, plain, rtol=1e-4, atol=1e-5)


def test_bad_options_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="precision"):
        load_encoder("pathdino", random_init=True, precision="int8")
    with pytest.raises(ConfigError, match="not both"):
        load_encoder("pathdino", tmp_path / "w.bin", random_init=True)
    with pytest.raises(ConfigError, match="has no weights"):
        load_encoder("handcrafted", weights=tmp_path)
    with pytest.raises(ConfigError, match="valid encoders"):
        load_encoder("not-an-encoder", random_init=True)


def test_cls_plus_mean_pooling_leaves_registers_out() -> None:
    spec = get_spec("virchow2")
    tokens = torch.zeros(1, 5 + 256, 1280)
    tokens[:, 0] = 1.0  # CLS
    tokens[:, 1:5] = 100.0  # registers: must not reach the mean
    tokens[:, 5:] = 2.0  # patches
    out = pool(tokens, spec)
    assert out.shape == (1, 2560)
    assert torch.all(out[:, :1280] == 1.0) and torch.all(out[:, 1280:] == 2.0)
    assert torch.all(pool(tokens, get_spec("virchow"))[:, 1280:] > 2.0)  # v1: 1 prefix token


def test_cls_pooling_takes_the_first_token_or_passes_a_pooled_vector() -> None:
    tokens = torch.arange(3 * 4, dtype=torch.float32).view(1, 3, 4)
    assert torch.equal(pool(tokens, get_spec("hibou-b")), tokens[:, 0])
    assert torch.equal(pool(tokens[:, 0], get_spec("uni")), tokens[:, 0])
    with pytest.raises(ValueError):
        pool(tokens, get_spec("kimianet"))


def test_no_network_is_touched_while_loading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access attempted")

    state = load_encoder("pathdino", random_init=True).model.state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "PathDino512.safetensors")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    for name in ("pathdino", "hibou-b", "conch-v1", "phikon", "resnet50-trunc", "handcrafted"):
        load_encoder(name, random_init=name != "handcrafted")
    load_encoder("pathdino", weights=tmp_path)


def test_encoders_import_no_slide_or_store_code() -> None:
    """House rule: encoders know no slides (DESIGN.md)."""
    package = Path(encoders_pkg.__file__).parent
    for source in package.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                assert not name.startswith(
                    (
                        "slidestream.io",
                        "slidestream.store",
                        "slidestream.extraction",
                        "slidestream.cli",
                    )
                ), f"{source.name} imports {name}"
