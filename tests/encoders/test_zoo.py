"""The issue-16 patch encoders: official file layouts, loading quirks and embedding rules.

Parameter counts, meta-device forwards and (up to ~100M parameters) real forwards with a
safetensors round trip are covered for every encoder by ``test_specs.py`` / ``test_forward.py``.
This file writes checkpoints the way the original projects publish them and loads them strictly
through ``build_with_weights``, on reduced-depth builds where the model is large (same code, fewer
blocks), so each test takes a second or two. Numerical agreement with the official code on the
same random weights is checked by ``benchmarks/fidelity/zoo_patch.py`` (it needs the fetched
official sources, so it is not a unit test).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from slidestream.encoders import get_spec, load_encoder, resolve_weights
from slidestream.encoders.conch_v15 import dino_interpolate
from slidestream.encoders.pooling import pool
from slidestream.encoders.spec import EncoderSpec
from slidestream.encoders.weights import build_with_weights
from slidestream.errors import WeightsError
from tests.encoders._helpers import random_tiles


def reduced(name: str, **overrides: object) -> EncoderSpec:
    spec = get_spec(name)
    return replace(spec, builder=lambda: spec.builder(**overrides))


def randomised(spec: EncoderSpec, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = spec.build().eval()
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.is_floating_point() and t.dtype != torch.bfloat16:
                t.add_(torch.randn_like(t) * 0.02)
    return model


def run(model: torch.nn.Module, spec: EncoderSpec, size: int | None = None) -> torch.Tensor:
    x = torch.randn(
        2,
        3,
        size or spec.input_size,
        size or spec.input_size,
        generator=torch.Generator().manual_seed(1),
    )
    with torch.inference_mode():
        return pool(model.eval()(x), spec)


ZOO_SHAPES: dict[str, dict[str, tuple[int, ...]]] = {
    "kaiko-vits16": {"pos_embed": (1, 197, 384)},
    "kaiko-vits8": {"pos_embed": (1, 785, 384)},
    "kaiko-vitb16": {"pos_embed": (1, 197, 768)},
    "kaiko-vitb8": {"pos_embed": (1, 785, 768)},
    "kaiko-vitl14": {
        "pos_embed": (1, 1369, 1024),
        "reg_token": (1, 4, 1024),
        "blocks.0.ls1.gamma": (1024,),
    },
    "lunit-dino-vits8": {"pos_embed": (1, 785, 384), "patch_embed.proj.weight": (384, 3, 8, 8)},
    "gpfm": {
        "pos_embed": (1, 257, 1024),
        "blocks.23.ls1.gamma": (1024,),
        "blocks.0.mlp.fc1.weight": (4096, 1024),
    },
    "mstar": {"pos_embed": (1, 197, 1024), "blocks.0.ls2.gamma": (1024,)},
    "h0-mini-cls": {
        "reg_token": (1, 4, 768),
        "pos_embed": (1, 256, 768),
        "blocks.0.mlp.fc1.weight": (4096, 768),
        "blocks.0.mlp.fc2.weight": (768, 2048),
    },
    "midnight-12k-cls": {
        "embeddings.position_embeddings": (1, 257, 1536),
        "embeddings.mask_token": (1, 1536),
        "encoder.layer.39.mlp.weights_in.weight": (8192, 1536),
        "encoder.layer.0.mlp.weights_out.weight": (1536, 4096),
    },
    "openmidnight": {
        "reg_token": (1, 4, 1536),
        "pos_embed": (1, 256, 1536),
        "blocks.39.mlp.fc1.weight": (8192, 1536),
    },
    "genbio-pathfm": {
        "patch_embed.proj.weight": (1536, 1, 16, 16),
        "rope_embed.periods": (16,),
        "storage_tokens": (1, 4, 1536),
        "blocks.0.attn.qkv.weight": (4608, 1536),
        "blocks.0.mlp.w1.weight": (4096, 1536),
        "blocks.0.mlp.w3.weight": (1536, 4096),
    },
    "conch-v1.5": {
        "trunk.pos_embed": (1, 197, 1024),
        "trunk.blocks.0.ls1.gamma": (1024,),
        "attn_pool_contrast.query": (1, 768),
        "attn_pool_contrast.ln_k.weight": (1024,),
        "attn_pool_contrast.to_kv.weight": (1536, 1024),
        "attn_pool_contrast.to_out.weight": (768, 768),
        "ln_contrast.weight": (768,),
    },
    # ZOO.md §2: the stem is built with embed_dim 96 (ENCODERS.md's 768-wide stem is wrong).
    "ctranspath": {
        "patch_embed.proj.0.weight": (12, 3, 3, 3),
        "patch_embed.proj.3.weight": (24, 12, 3, 3),
        "patch_embed.proj.6.weight": (96, 24, 1, 1),
        "patch_embed.norm.weight": (96,),
        "layers.1.downsample.reduction.weight": (192, 384),
        "norm.weight": (768,),
    },
}


@pytest.mark.parametrize("name", list(ZOO_SHAPES))
def test_zoo_key_shapes(name: str) -> None:
    with torch.device("meta"):
        sd = get_spec(name).build().state_dict()
    for key, shape in ZOO_SHAPES[name].items():
        assert key in sd, key
        assert tuple(sd[key].shape) == shape, key


def test_no_bias_where_the_reference_has_none() -> None:
    with torch.device("meta"):
        genbio = get_spec("genbio-pathfm").build().state_dict()
        conch = get_spec("conch-v1.5").build().state_dict()
    assert "blocks.0.attn.qkv.bias" not in genbio and "blocks.0.attn.proj.bias" in genbio
    assert genbio["rope_embed.periods"].dtype == torch.bfloat16
    assert not [k for k in conch if k.startswith("attn_pool_contrast.to_") and k.endswith("bias")]


# --- strict round trips of the released layouts ---------------------------------------


def test_ctranspath_timm_05_release_layout(tmp_path: Path) -> None:
    """{'model': state} with downsample at the end of stages 0-2 and the 0.5.4 buffers."""
    spec = get_spec("ctranspath")
    model = randomised(spec)
    old: dict[str, torch.Tensor] = {}
    for key, t in model.state_dict().items():
        if ".downsample." in key:  # timm 1.x: start of stage i+1; timm 0.5.4: end of stage i
            stage = int(key.split(".")[1])
            key = key.replace(f"layers.{stage}.", f"layers.{stage - 1}.", 1)
        old[key] = t
    for s, depth in ((0, 2), (1, 2), (2, 6), (3, 2)):
        for b in range(depth):
            old[f"layers.{s}.blocks.{b}.attn.relative_position_index"] = torch.zeros(
                49, 49, dtype=torch.long
            )
            if b % 2 and s < 3:
                old[f"layers.{s}.blocks.{b}.attn_mask"] = torch.zeros((64, 16, 4)[s], 49, 49)
    assert (
        "layers.0.downsample.reduction.weight" in old
        and "layers.3.downsample.norm.weight" not in old
    )
    torch.save({"model": old, "epoch": 100}, tmp_path / "ctranspath.pth")
    loaded = build_with_weights(spec, tmp_path / "ctranspath.pth")
    torch.testing.assert_close(run(loaded, spec), run(model, spec), rtol=0, atol=0)
    with pytest.raises(ValueError, match="224 px only"):
        run(loaded, spec, size=256)


def test_ctranspath_refuses_the_768_wide_stem(tmp_path: Path) -> None:
    spec = get_spec("ctranspath")
    state = randomised(spec).state_dict()
    state["patch_embed.proj.0.weight"] = torch.zeros(96, 3, 3, 3)  # ENCODERS.md's stem
    torch.save({"model": state}, tmp_path / "bad.pth")
    with pytest.raises(WeightsError, match=r"patch_embed\.proj\.0\.weight \(file \(96, 3, 3, 3\)"):
        build_with_weights(spec, tmp_path / "bad.pth")


def test_openmidnight_dinov2_teacher_layout(tmp_path: Path) -> None:
    """DINOv2 names, CLS inside pos_embed, registers outside it, mask token; a 518-px table."""
    spec = reduced("openmidnight", depth=2)
    model = randomised(spec)
    sd = model.state_dict()
    grid = sd["pos_embed"].reshape(1, 16, 16, -1).permute(0, 3, 1, 2)
    cls_pos = torch.randn(1, 1, 1536) * 0.02
    dinov2 = {
        "cls_token": sd["cls_token"] - cls_pos,
        "pos_embed": torch.cat((cls_pos, sd["pos_embed"]), 1),
        "register_tokens": sd["reg_token"],
        "mask_token": torch.zeros(1, 1536),
    }
    for key, t in sd.items():
        if key.startswith(("blocks.", "patch_embed.", "norm.")):
            dinov2[key.replace("mlp.fc1", "mlp.w12").replace("mlp.fc2", "mlp.w3")] = t
    torch.save(dinov2, tmp_path / "teacher_checkpoint_load.pt")
    loaded = build_with_weights(spec, tmp_path / "teacher_checkpoint_load.pt")
    torch.testing.assert_close(run(loaded, spec), run(model, spec), rtol=1e-5, atol=1e-5)

    # A table on the 37x37 grid is resampled as DINOv2 does at 224 px: bicubic, antialias, size.
    big = F.interpolate(grid, size=(37, 37), mode="bicubic", align_corners=False)
    dinov2["pos_embed"] = torch.cat((cls_pos, big.permute(0, 2, 3, 1).reshape(1, 1369, -1)), 1)
    torch.save(dinov2, tmp_path / "t518.pt")
    pos = build_with_weights(spec, tmp_path / "t518.pt").pos_embed
    want = F.interpolate(big, size=(16, 16), mode="bicubic", antialias=True, align_corners=False)
    torch.testing.assert_close(pos, want.permute(0, 2, 3, 1).reshape(1, 256, -1))


def test_midnight_transformers_layout_with_a_518_table(tmp_path: Path) -> None:
    spec = reduced("midnight-12k-cls-mean", num_layers=2)
    model = randomised(spec)
    sd = dict(model.state_dict())
    table = torch.randn(1, 1370, 1536) * 0.02
    sd["embeddings.position_embeddings"] = table
    save_file({k: v.contiguous() for k, v in sd.items()}, tmp_path / "model.safetensors")
    loaded = build_with_weights(spec, tmp_path / "model.safetensors")
    grid = table[:, 1:].reshape(1, 37, 37, -1).permute(0, 3, 1, 2)
    want = F.interpolate(grid, size=(16, 16), mode="bicubic", align_corners=False, antialias=False)
    pos = loaded.embeddings.position_embeddings
    torch.testing.assert_close(pos[:, :1], table[:, :1])
    torch.testing.assert_close(pos[:, 1:], want.permute(0, 2, 3, 1).reshape(1, 256, -1))
    out = run(loaded, spec)
    assert out.shape == (2, 3072)
    cls_spec = reduced("midnight-12k-cls", num_layers=2)
    torch.testing.assert_close(run(loaded, cls_spec), out[:, :1536])


def test_kaiko_vitl14_file_with_a_224_table_is_upsampled_at_load(tmp_path: Path) -> None:
    spec = reduced("kaiko-vitl14", depth=2)
    state = dict(randomised(spec).state_dict())
    state["pos_embed"] = torch.randn(1, 256, 1024) * 0.02
    torch.save(state, tmp_path / "vitl14.pth")
    loaded = build_with_weights(spec, tmp_path / "vitl14.pth")
    assert loaded.pos_embed.shape == (1, 1369, 1024)
    assert run(loaded, spec).shape == (2, 1024)


def test_conch_v15_release_layout_and_dino_interpolation(tmp_path: Path) -> None:
    spec = reduced("conch-v1.5", depth=2)
    model = randomised(spec)
    torch.save(model.state_dict(), tmp_path / "pytorch_model_vision.bin")
    loaded = build_with_weights(spec, tmp_path / "pytorch_model_vision.bin")
    out = run(loaded, spec)
    torch.testing.assert_close(run(loaded, spec), run(model, spec), rtol=0, atol=0)
    assert out.shape == (2, 768)
    # DINO-v1 interpolation (scale factor 28.1/14) is not the exact-size resample timm would do.
    pos = model.trunk.pos_embed.detach()
    dino = dino_interpolate(pos, 28, 28)
    grid = pos[:, 1:].reshape(1, 14, 14, -1).permute(0, 3, 1, 2)
    exact = F.interpolate(grid, size=(28, 28), mode="bicubic", align_corners=False)
    assert dino.shape == (1, 785, 1024) and torch.equal(dino[:, 0], pos[:, 0])
    assert not torch.allclose(dino[:, 1:], exact.permute(0, 2, 3, 1).reshape(1, 784, -1))
    assert dino_interpolate(pos, 14, 14) is pos


def test_genbio_channels_are_encoded_separately(tmp_path: Path) -> None:
    spec = reduced("genbio-pathfm", depth=2)
    model = randomised(spec)
    torch.save(model.state_dict(), tmp_path / "model.pth")
    loaded = build_with_weights(spec, tmp_path / "model.pth")
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        out = loaded(x)
        per_channel = [loaded.encode(x[:, c : c + 1])[:, 0] for c in range(3)]
        sin, cos = loaded.rope_embed(14, 14)
    assert out.shape == (2, 4608)
    torch.testing.assert_close(out, torch.cat(per_channel, dim=-1))
    torch.testing.assert_close(run(loaded, spec), run(model, spec), rtol=0, atol=0)
    assert sin.dtype == cos.dtype == torch.bfloat16  # the reference's bf16 RoPE


def test_lunit_release_file_suffix_is_found(tmp_path: Path) -> None:
    spec = get_spec("lunit-dino-vits8")
    model = randomised(spec)
    torch.save(model.state_dict(), tmp_path / "dino_vit_small_patch8_ep200.torch")
    assert resolve_weights(spec, tmp_path) == tmp_path / "dino_vit_small_patch8_ep200.torch"
    enc = load_encoder("lunit-dino-vits8", weights=tmp_path)
    tiles = random_tiles("lunit-dino-vits8")
    with torch.inference_mode():
        want = model(enc.preprocess(tiles)).numpy()
    np.testing.assert_allclose(enc(tiles), want, rtol=1e-5, atol=1e-5)


def test_both_h0_mini_embeddings_from_one_file(tmp_path: Path) -> None:
    model = randomised(get_spec("h0-mini-cls"))
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()}, tmp_path / "model.safetensors"
    )
    tiles = random_tiles("h0-mini-cls")
    cls = load_encoder("h0-mini-cls", weights=tmp_path)(tiles)
    both = load_encoder("h0-mini-cls-mean", weights=tmp_path)(tiles)
    assert cls.shape == (1, 768) and both.shape == (1, 1536)
    np.testing.assert_allclose(both[:, :768], cls, rtol=1e-6, atol=1e-6)
    with torch.inference_mode():
        tokens = model(load_encoder("h0-mini-cls", weights=tmp_path).preprocess(tiles))
    np.testing.assert_allclose(both[:, 768:], tokens[:, 5:].mean(1).numpy(), rtol=1e-5, atol=1e-5)
