"""Real forwards, weight round trips, and the released checkpoint layouts.

Every encoder up to ~320M parameters runs a real CPU forward at its native tile size, then its
random weights go through a safetensors file and ``load_encoder(weights=...)`` and must give the
same embeddings. For Hibou-L and Phikon-v2 the file round trip is skipped to keep the suite short:
they are the same classes as Hibou-B / Phikon at another size (round-tripped here), and their key
names and shapes are pinned on the meta device in ``test_specs.py``; UNI keeps a ViT-L round trip.
The 0.6-0.7B models (UNI2-h, Virchow, Virchow2) run one tile and a full-size round trip; only the
>1B models (H-optimus, GigaPath) stay on the meta device.

The layout tests write checkpoints the way the original projects publish them (DataParallel
wrappers, CoCa ``visual.``/``text.`` trees, ``vit.`` prefixes, full ResNets) and check that they
load strictly into the same numbers. The semantics tests compare the plain-torch Hugging Face
layouts against timm's ViT on converted weights, so the forward maths is checked by an
independent implementation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from safetensors.torch import save_file
from timm.layers import SwiGLUPacked
from torch import nn
from torchvision.models import densenet121

from slidestream.encoders import all_specs, get_spec, load_encoder
from slidestream.encoders.conch import AttentionalPooler
from slidestream.encoders.hf_layout import HFVisionTransformer
from tests.encoders._helpers import random_tiles

# The ViT-L encoders of issue 16 have reduced-depth layout tests in test_zoo.py; their full-size
# forward and round trip run with the large ones, under the slow mark.
ZOO_VIT_L = {"kaiko-vitl14", "gpfm", "mstar", "conch-v1.5"}
MEDIUM = [
    s.name for s in all_specs() if s.expected_params <= 320_000_000 and s.name not in ZOO_VIT_L
]
# Below 1B parameters a CPU forward is affordable (~25 s each with the 2.7 GB round trip).
LARGE = [
    s.name
    for s in all_specs()
    if 320_000_000 < s.expected_params < 1_000_000_000 or s.name in ZOO_VIT_L
]
# Same weights as an encoder that is round-tripped (another embedding rule or size).
FORWARD_ONLY = {"hibou-l", "phikon-v2", "h0-mini-cls-mean"}


@pytest.fixture(scope="module")
def conch():
    """One random-init CONCH for all CONCH tests (building and running it is the slow part)."""
    return load_encoder("conch-v1", random_init=True)


def _same_model_output(a: nn.Module, b: nn.Module, size: int) -> None:
    """Equal outputs on a small random input (the layout tests need equality, not realism)."""
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        torch.testing.assert_close(a(x), b(x), rtol=0, atol=1e-6)


def _save(model: nn.Module, path: Path) -> Path:
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path)
    return path


@pytest.mark.parametrize("name", MEDIUM)
def test_forward_and_safetensors_round_trip(name: str, tmp_path: Path) -> None:
    spec = get_spec(name)
    cheap = spec.expected_params < 100_000_000 and spec.input_size <= 512
    tiles = random_tiles(name, n=2 if cheap else 1)
    enc = load_encoder(name, random_init=True)
    first = enc(tiles)
    assert first.shape == (len(tiles), spec.embed_dim) and first.dtype == np.float32
    assert np.isfinite(first).all()
    assert np.ptp(first) > 0
    if len(tiles) == 2:  # different tiles, different vectors
        assert not np.allclose(first[0], first[1])
    if not spec.requires_weights or name in FORWARD_ONLY:
        return
    path = _save(enc.model, tmp_path / "random.safetensors")
    again = load_encoder(name, weights=path)
    assert again.weights_sha256 != "random-init" and len(again.weights_sha256) == 64
    np.testing.assert_allclose(again(tiles), first, rtol=0, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("name", LARGE)
def test_large_encoders_forward_and_round_trip(name: str, tmp_path: Path) -> None:
    spec = get_spec(name)
    tiles = random_tiles(name, n=1)
    enc = load_encoder(name, random_init=True)
    first = enc(tiles)
    assert first.shape == (1, spec.embed_dim) and np.isfinite(first).all() and np.ptp(first) > 0
    path = _save(enc.model, tmp_path / "random.safetensors")
    del enc
    again = load_encoder(name, weights=path)
    np.testing.assert_allclose(again(tiles), first, rtol=0, atol=1e-6)


# --- released checkpoint layouts -------------------------------------------------------


def test_kimianet_dataparallel_wrapper_layout(tmp_path: Path) -> None:
    """``nn.DataParallel(fully_connected(Sequential(features, pool), fc_4))`` as published."""
    enc = load_encoder("kimianet", random_init=True)
    published = {f"module.{k}": v for k, v in enc.model.state_dict().items()}
    published["module.fc_4.weight"] = torch.randn(30, 1024)
    published["module.fc_4.bias"] = torch.randn(30)
    assert "module.model.0.denseblock1.denselayer1.norm1.weight" in published
    torch.save(published, tmp_path / "KimiaNetPyTorchWeights.pth")
    loaded = load_encoder("kimianet", weights=tmp_path)
    _same_model_output(loaded.model, enc.model, 128)  # fully convolutional: any size will do


def test_kimianet_legacy_torchvision_key_spelling(tmp_path: Path) -> None:
    state = load_encoder("kimianet", random_init=True).model.state_dict()
    legacy = {
        f"module.{k}".replace(".norm1.", ".norm.1.").replace(".conv2.", ".conv.2."): v
        for k, v in state.items()
    }
    assert any(".norm.1." in k for k in legacy)
    torch.save(legacy, tmp_path / "old.pth")
    load_encoder("kimianet", weights=tmp_path / "old.pth")


def test_kimianet_is_densenet_features_average_pooled_without_final_relu() -> None:
    enc = load_encoder("kimianet", random_init=True)
    reference = densenet121(weights=None).eval()
    reference.features.load_state_dict(enc.model.model[0].state_dict())
    x = torch.randn(1, 3, 96, 96)
    with torch.inference_mode():
        features = reference.features(x)
        want = features.mean(dim=(2, 3))
        with_relu = torch.relu(features).mean(dim=(2, 3))
        got = enc.model(x)
    torch.testing.assert_close(got, want)
    assert not torch.allclose(got, with_relu)


def test_conch_released_coca_layout_loads_visual_only(conch, tmp_path: Path) -> None:
    released = {f"visual.{k}": v for k, v in conch.model.state_dict().items()}
    released["text.token_embedding.weight"] = torch.zeros(32007, 8)
    released["text.transformer.resblocks.0.attn.in_proj_weight"] = torch.zeros(24, 8)
    released["logit_scale"] = torch.tensor(4.6)
    torch.save(released, tmp_path / "pytorch_model.bin")
    loaded = load_encoder("conch-v1", weights=tmp_path)
    _same_model_output(loaded.model, conch.model, 224)  # dynamic_img_size trunk


def test_conch_position_embedding_saved_at_224_is_resampled(conch, tmp_path: Path) -> None:
    """CONCH's loader resamples a foreign grid bilinearly (no antialias), keeping the CLS slot."""
    state = {f"module.visual.{k}": v for k, v in conch.model.state_dict().items()}
    small = torch.randn(1, 197, 768)  # CLS + a 14x14 grid
    state["module.visual.trunk.pos_embed"] = small
    torch.save(state, tmp_path / "pytorch_model.bin")
    pos = load_encoder("conch-v1", weights=tmp_path).model.trunk.pos_embed
    grid = small[:, 1:].reshape(1, 14, 14, 768).permute(0, 3, 1, 2)
    want = torch.nn.functional.interpolate(
        grid, size=(28, 28), mode="bilinear", align_corners=False
    )
    torch.testing.assert_close(pos[:, 0], small[:, 0])
    torch.testing.assert_close(pos[:, 1:], want.permute(0, 2, 3, 1).reshape(1, 784, 768))


def test_conch_pooler_matches_sequence_first_multihead_attention() -> None:
    """CONCH calls ``nn.MultiheadAttention`` sequence-first; batch-first here must be identical."""
    torch.manual_seed(0)
    pooler = AttentionalPooler(512, 768, n_head=8, n_queries=1).eval()
    original = nn.MultiheadAttention(512, 8, kdim=768, vdim=768).eval()  # batch_first=False
    original.load_state_dict(pooler.attn.state_dict())
    tokens = torch.randn(2, 50, 768)
    kv = pooler.ln_k(tokens).permute(1, 0, 2)
    q = pooler.ln_q(pooler.query).unsqueeze(1).repeat(1, 2, 1)
    with torch.inference_mode():
        want = original(q, kv, kv, need_weights=False)[0].permute(1, 0, 2)
        got = pooler(tokens)
    torch.testing.assert_close(got, want)


def test_conch_embedding_is_the_unprojected_pooled_query(conch) -> None:
    enc = conch
    x = enc.preprocess(random_tiles("conch-v1", size=224))  # 224 → resized to the native 448
    tower = enc.model
    with torch.inference_mode():
        tokens = tower.trunk.forward_features(x)
        want = tower.ln_contrast(tower.attn_pool_contrast(tokens)[:, 0])
        got = enc.embed(x)
        projected = tower.project(got)
    torch.testing.assert_close(got, want)
    assert not torch.allclose(projected, got)


def test_phikon_hub_layout_with_vit_prefix_and_pooler(tmp_path: Path) -> None:
    enc = load_encoder("phikon", random_init=True)
    hub = {f"vit.{k}": v for k, v in enc.model.state_dict().items()}
    hub["vit.pooler.dense.weight"] = torch.zeros(768, 768)
    hub["vit.pooler.dense.bias"] = torch.zeros(768)
    save_file(hub, tmp_path / "model.safetensors")
    loaded = load_encoder("phikon", weights=tmp_path)
    tiles = random_tiles("phikon")
    np.testing.assert_allclose(loaded(tiles), enc(tiles), rtol=0, atol=1e-6)


def test_resnet_trunc_from_a_full_resnet50_checkpoint(tmp_path: Path) -> None:
    """The timm/torchvision file has layer4 and fc too; they are dropped by name, nothing else."""
    torch.manual_seed(0)
    full = timm.create_model("resnet50", pretrained=False).eval()
    save_file(
        {k: v.contiguous() for k, v in full.state_dict().items()}, tmp_path / "model.safetensors"
    )
    enc = load_encoder("resnet50-trunc", weights=tmp_path)
    x = enc.preprocess(random_tiles("resnet50-trunc"))
    with torch.inference_mode():
        h = full.maxpool(full.act1(full.bn1(full.conv1(x))))
        want = full.layer3(full.layer2(full.layer1(h))).mean(dim=(2, 3))
        got = enc.embed(x)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


# --- HF layouts against timm's ViT ----------------------------------------------------


def _hf_to_timm(sd: dict[str, torch.Tensor], dinov2: bool) -> dict[str, torch.Tensor]:
    """Rename a Hugging Face ViT/Dinov2 state dict to timm's ``VisionTransformer`` names."""
    pos = sd["embeddings.position_embeddings"]
    out = {
        "patch_embed.proj.weight": sd["embeddings.patch_embeddings.projection.weight"],
        "patch_embed.proj.bias": sd["embeddings.patch_embeddings.projection.bias"],
        "norm.weight": sd["layernorm.weight"],
        "norm.bias": sd["layernorm.bias"],
    }
    if dinov2:  # timm with no_embed_class: fold the CLS position into the CLS token
        out["cls_token"] = sd["embeddings.cls_token"] + pos[:, :1]
        out["pos_embed"] = pos[:, 1:]
        if "embeddings.register_tokens" in sd:
            out["reg_token"] = sd["embeddings.register_tokens"]
    else:
        out["cls_token"] = sd["embeddings.cls_token"]
        out["pos_embed"] = pos
    depth = 1 + max(int(k.split(".")[2]) for k in sd if k.startswith("encoder.layer."))
    for i in range(depth):
        s, d = f"encoder.layer.{i}.", f"blocks.{i}."
        att = s + "attention.attention."
        for p in ("weight", "bias"):
            out[d + f"attn.qkv.{p}"] = torch.cat(
                [sd[att + f"{n}.{p}"] for n in ("query", "key", "value")]
            )
            out[d + f"attn.proj.{p}"] = sd[s + f"attention.output.dense.{p}"]
            if dinov2:
                out[d + f"norm1.{p}"] = sd[s + f"norm1.{p}"]
                out[d + f"norm2.{p}"] = sd[s + f"norm2.{p}"]
                fc1, fc2 = (
                    ("weights_in", "weights_out")
                    if s + f"mlp.weights_in.{p}" in sd
                    else ("fc1", "fc2")
                )
                out[d + f"mlp.fc1.{p}"] = sd[s + f"mlp.{fc1}.{p}"]
                out[d + f"mlp.fc2.{p}"] = sd[s + f"mlp.{fc2}.{p}"]
            else:
                out[d + f"norm1.{p}"] = sd[s + f"layernorm_before.{p}"]
                out[d + f"norm2.{p}"] = sd[s + f"layernorm_after.{p}"]
                out[d + f"mlp.fc1.{p}"] = sd[s + f"intermediate.dense.{p}"]
                out[d + f"mlp.fc2.{p}"] = sd[s + f"output.dense.{p}"]
        if dinov2:
            out[d + "ls1.gamma"] = sd[s + "layer_scale1.lambda1"]
            out[d + "ls2.gamma"] = sd[s + "layer_scale2.lambda1"]
    return out


def _randomise(model: nn.Module) -> None:
    """Non-trivial values everywhere (LayerScale and norms included) so nothing hides."""
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.05 + (1.0 if p.ndim == 1 and "weight" in str(p) else 0))


def test_hibou_layout_computes_dinov2_with_registers_like_timm() -> None:
    model = get_spec("hibou-b").build().eval()
    assert isinstance(model, HFVisionTransformer)
    _randomise(model)
    hidden = model.config.swiglu_hidden
    reference = timm.models.vision_transformer.VisionTransformer(
        img_size=224,
        patch_size=14,
        embed_dim=768,
        depth=12,
        num_heads=12,
        mlp_ratio=(2 * hidden + 0.5) / 768,
        mlp_layer=SwiGLUPacked,
        act_layer=nn.SiLU,
        init_values=1.0,
        reg_tokens=4,
        no_embed_class=True,
        num_classes=0,
        global_pool="",
    ).eval()
    reference.load_state_dict(_hf_to_timm(model.state_dict(), dinov2=True), strict=True)
    x = torch.randn(1, 3, 224, 224)
    with torch.inference_mode():
        torch.testing.assert_close(model(x), reference.forward_features(x), rtol=1e-4, atol=1e-4)


def test_phikon_layout_computes_a_standard_vit_like_timm() -> None:
    model = get_spec("phikon").build().eval()
    _randomise(model)
    reference = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=0).eval()
    reference.load_state_dict(_hf_to_timm(model.state_dict(), dinov2=False), strict=True)
    x = torch.randn(1, 3, 224, 224)
    with torch.inference_mode():
        torch.testing.assert_close(model(x), reference.forward_features(x), rtol=1e-4, atol=1e-4)


def test_hf_layouts_refuse_a_non_native_grid() -> None:
    model = get_spec("hibou-b").build()
    with pytest.raises(ValueError, match="native 224"):
        model(torch.zeros(1, 3, 448, 448))
