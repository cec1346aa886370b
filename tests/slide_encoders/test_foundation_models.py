"""Slide foundation encoders: architecture facts, strict loading of official-layout checkpoints,
and agreement with references written independently of the project's modules."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from slidestream.errors import WeightsError
from slidestream.slide_encoders.foundation import (
    all_slide_specs,
    embed_slide,
    get_slide_spec,
    load_slide_encoder,
)
from slidestream.slide_encoders.foundation.chief import Chief
from slidestream.slide_encoders.foundation.feather import FeatherABMIL
from slidestream.slide_encoders.foundation.madeleine import Madeleine
from slidestream.slide_encoders.foundation.prism import PrismResampler
from slidestream.slide_encoders.foundation.spec import count_params
from slidestream.slide_encoders.foundation.titan import TitanVision, alibi_slopes
from tests.slide_encoders import foundation_refs as ref

# parameters and state-dict entries of the official architectures, from ZOO.md [computed]
OFFICIAL = {
    "titan": (48_539_904, 96),
    "prism": (99_037_440, 573),  # shared modules listed under every alias
    "gigapath": (86_330_880, 247),
    "gigapath-trident": (86_330_880, 247),
    "chief": (1_185_032, 21),
    "madeleine": (4_996_740, 40),
    "feather": (788_097, 8),
    "feather-uni2": (1_181_313, 8),
    "feather-uni": (919_169, 8),
}


def _randomise(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Every tensor random (default inits leave LayerNorms at 1 and biases at 0)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in (*model.parameters(), *model.buffers()):
            t.copy_(0.1 * torch.randn(t.shape, generator=gen))
    return model.eval()


def _sd(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name", list(OFFICIAL))
def test_architecture_matches_the_official_parameter_and_key_counts(name):
    spec = get_slide_spec(name)
    with torch.device("meta"):
        model = spec.build()
    assert (count_params(model), len(model.state_dict())) == OFFICIAL[name]
    assert spec.expected_params == OFFICIAL[name][0]
    if spec.published_params and name not in ("madeleine", "feather", "feather-uni2", "feather-uni"):
        assert abs(spec.published_params - spec.expected_params) / spec.expected_params < 0.02


def test_every_slide_encoder_is_listed_with_its_input_contract():
    names = [s.name for s in all_slide_specs()]
    assert set(names) == set(OFFICIAL)
    assert get_slide_spec("TITAN").requirement.describe() == (
        "conch-v1.5 features (768-d) of 512-px tiles at 20x (0.5 um/px) with their coordinates"
    )
    assert get_slide_spec("chief").requirement.accepts("CHIEF_CTransPath")
    assert not get_slide_spec("chief").requirement.accepts("uni")


def test_alibi_slopes_follow_the_alibi_rule_for_12_heads():
    assert np.allclose(alibi_slopes(12), ref.TITAN_SLOPES, atol=1e-7)
    assert alibi_slopes(8) == [2.0 ** -(i + 1) for i in range(8)]


# --- strict round trips in the official file layouts, through the real loader ---------------


def _reduced(name: str, **cfg):
    spec = get_slide_spec(name)
    builder = spec.builder
    return dataclasses.replace(spec, builder=lambda **c: builder(**{**cfg, **c}))


def _roundtrip(spec, path, model, *inputs):
    loaded, prov = load_slide_encoder(spec, path)
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    assert prov["weights_sha256"] and prov["slide_encoder"] == spec.name
    z = embed_slide(loaded, *inputs)
    assert np.allclose(z, embed_slide(model, *inputs), rtol=0, atol=1e-6)
    return loaded, z


def test_feather_loads_the_hf_safetensors_and_leaves_the_classifier_out(tmp_path):
    model = _randomise(FeatherABMIL(in_dim=768))
    sd = _sd(model)  # keys already carry the ABMILModel wrapper's "model." prefix
    sd["model.classifier.weight"], sd["model.classifier.bias"] = torch.randn(108, 512), torch.randn(108)
    save_file(sd, tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text(json.dumps({"in_dim": 768, "num_classes": 108}))
    x = np.random.default_rng(0).normal(size=(50, 768)).astype(np.float32)
    _, z = _roundtrip(get_slide_spec("feather"), tmp_path, model, x)  # the folder is enough
    h = torch.relu(torch.from_numpy(x) @ sd["model.patch_embed.0.weight"].T + sd["model.patch_embed.0.bias"])
    a = torch.softmax(ref.gated_scores(h, sd, "model.global_attn"), 0)
    assert np.allclose(z, (a @ h).numpy(), atol=1e-5) and z.shape == (512,)


def test_feather_refuses_a_checkpoint_with_a_missing_tensor(tmp_path):
    sd = {k: v for k, v in _sd(FeatherABMIL()).items() if "attention_c" not in k}
    save_file(sd, tmp_path / "model.safetensors")
    with pytest.raises(WeightsError, match=r"missing: model\.global_attn\.attention_c"):
        load_slide_encoder(get_slide_spec("feather"), tmp_path / "model.safetensors")


def test_chief_loads_from_a_clone_of_the_repository(tmp_path):
    model = _randomise(Chief())
    (tmp_path / "model_weight").mkdir()
    torch.save(_sd(model), tmp_path / "model_weight" / "CHIEF_pretraining.pth")
    x = np.random.default_rng(1).normal(size=(40, 768)).astype(np.float32)
    _, z = _roundtrip(get_slide_spec("chief"), tmp_path, model, x)
    sd = _sd(model)
    h = torch.relu(torch.from_numpy(x) @ sd["attention_net.0.weight"].T + sd["attention_net.0.bias"])
    a = torch.softmax(ref.gated_scores(h, sd, "attention_net.3"), 0)
    assert np.allclose(z, (a @ torch.from_numpy(x)).numpy(), atol=1e-5)  # pools the *input*


def test_madeleine_reads_its_config_and_strips_module_prefix(tmp_path):
    model = _randomise(Madeleine(n_heads=2))
    torch.save({f"module.{k}": v for k, v in _sd(model).items()}, tmp_path / "model.pt")
    (tmp_path / "model_config.json").write_text(json.dumps({"n_heads": 2, "activation": "softmax"}))
    x = np.random.default_rng(2).normal(size=(30, 512)).astype(np.float32)
    loaded, z = _roundtrip(get_slide_spec("madeleine"), tmp_path / "model.pt", model, x)
    assert loaded.n_heads == 2
    sd = _sd(model)
    h = torch.from_numpy(x)
    for i in (0, 4, 8):
        h = torch.nn.functional.gelu(ref.ln(ref.lin(h, sd, f"wsi_embedders.pre_attn.{i}"), sd,
                                            f"wsi_embedders.pre_attn.{i + 1}", 1e-5))
    heads = []  # head c sees channels c, c+2, c+4, ... (strided split)
    for c in range(2):
        hc = h[:, c::2]
        a = torch.softmax(ref.gated_scores(hc, sd, f"wsi_embedders.attn.{c}"), 0)
        heads.append(a @ hc)
    flat = torch.stack(heads, 1).reshape(-1)  # (e, c) order
    assert np.allclose(z, ref.lin(flat, sd, "projector").numpy(), atol=1e-5)


def test_titan_matches_alibi_attention_written_out(tmp_path):
    model = _randomise(TitanVision(depth=2), seed=3)
    sd = {f"vision_encoder.{k}": v for k, v in _sd(model).items()}
    sd["text_encoder.positional_embedding"] = torch.randn(128, 768)  # text tower: left out
    save_file(sd, tmp_path / "model.safetensors")
    rng = np.random.default_rng(3)
    cells = rng.choice(100, size=25, replace=False)
    coords = np.stack([cells // 10, cells % 10], 1) * 1024 + 333  # a 40x slide: 1024 px at level 0
    coords = np.concatenate([coords, coords[:1] + 10])  # a second tile in the first cell: summed
    feats = rng.normal(size=(26, 768)).astype(np.float32)
    feats[5] = 0  # an all-zero cell is background, as in the reference
    spec = _reduced("titan", depth=2)
    _, z = _roundtrip(spec, tmp_path, model, feats, coords, 1024.0)
    expected = ref.titan_reference(_sd(model), torch.from_numpy(feats), coords, 1024, depth=2)
    assert np.abs(z - expected.numpy()).max() < 1e-4
    # invariant to tile order and translation, as the grid makes it
    perm = rng.permutation(26)
    assert np.allclose(embed_slide(model, feats[perm], coords[perm] + 5000, 1024.0), z, atol=1e-5)


def test_prism_loads_one_alias_per_shared_tensor_and_matches_the_perceiver_written_out(tmp_path):
    cfg = dict(latent_seq=8, latent_dim=32, context_dim=48, mhsa_heads=4, perceiver_depth=4,
               transformer_depth=2)
    model = _randomise(PrismResampler(**cfg), seed=4)
    seen, dedup = set(), {}
    for k, v in model.state_dict().items():  # a de-duplicating save keeps one alias
        if v.data_ptr() not in seen:
            seen.add(v.data_ptr())
            dedup[f"image_resampler.{k}"] = v.clone()
    dedup["text_decoder.lm_head.weight"] = torch.randn(5, 5)
    assert len(dedup) < len(model.state_dict())
    save_file(dedup, tmp_path / "model.safetensors")
    x = np.random.default_rng(4).normal(size=(20, 48)).astype(np.float32)
    _, z = _roundtrip(_reduced("prism", **cfg), tmp_path, model, x)
    expected = ref.prism_reference(_sd(model), torch.from_numpy(x), depth=4, tf_depth=2, heads=4)
    assert np.abs(z - expected.numpy()).max() < 1e-4
    # every alias listed (torch.save of state_dict()) loads the same
    torch.save({f"image_resampler.{k}": v for k, v in _sd(model).items()}, tmp_path / "all.bin")
    loaded, _ = load_slide_encoder(_reduced("prism", **cfg), tmp_path / "all.bin")
    assert np.allclose(embed_slide(loaded, x), z, rtol=0, atol=1e-6)


def test_prism_refuses_aliases_that_disagree(tmp_path):
    cfg = dict(latent_seq=4, latent_dim=16, context_dim=16, mhsa_heads=2, perceiver_depth=3,
               transformer_depth=1)
    sd = {f"image_resampler.{k}": v.clone() for k, v in PrismResampler(**cfg).state_dict().items()}
    sd["image_resampler.perceiver.layers.2.xattn.xattn.to_q.weight"] += 1
    torch.save(sd, tmp_path / "bad.bin")
    with pytest.raises(WeightsError, match="differs between its aliases"):
        load_slide_encoder(_reduced("prism", **cfg), tmp_path / "bad.bin")


def test_missing_weights_name_the_places_and_the_source(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.delenv("SLIDESTREAM_WEIGHTS", raising=False)
    with pytest.raises(WeightsError, match=r"huggingface\.co/MahmoodLab/TITAN"):
        load_slide_encoder(get_slide_spec("titan"))
