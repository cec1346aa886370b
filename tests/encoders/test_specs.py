"""Registry and spec facts: names, parameter counts, embedding sizes and documented key shapes.

Every architecture is built on the ``meta`` device, so even the 1.1B-parameter models cost no
memory or compute here; a changed constructor argument shows up as a changed count or shape.
"""

from __future__ import annotations

from functools import cache

import pytest
import torch

from slidestream.encoders import all_specs, get_spec, list_encoders
from slidestream.encoders.pooling import pool
from slidestream.encoders.preprocess import resize_and_crop
from slidestream.encoders.spec import POOLINGS, EncoderSpec
from slidestream.errors import ConfigError

REQUIRED = [
    "uni",
    "uni2-h",
    "virchow2",
    "hibou-b",
    "hibou-l",
    "conch-v1",
    "phikon",
    "phikon-v2",
    "h-optimus-0",
    "h-optimus-1",
    "gigapath",
    "pathdino",
    "kimianet",
    "resnet50-trunc",
    "pluto",
    "handcrafted",
]
SPECS = all_specs()
IDS = [s.name for s in SPECS]


@cache
def meta_build(spec: EncoderSpec) -> torch.nn.Module:
    """Meta-device build, shared between tests (specs are frozen, so hashable)."""
    with torch.device("meta"):
        return spec.build()


def test_registry_lists_every_required_encoder() -> None:
    names = list_encoders()
    assert set(REQUIRED) <= set(names)
    assert len(names) == len(set(names))


def test_unknown_name_raises_config_error_listing_valid_names() -> None:
    with pytest.raises(ConfigError) as err:
        get_spec("uni3")
    for name in REQUIRED:
        assert name in str(err.value)


def test_names_are_forgiving_about_case_and_underscores() -> None:
    assert get_spec("UNI2_H").name == "uni2-h"
    assert get_spec(" Conch-V1 ").name == "conch-v1"


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_spec_is_self_consistent(spec: EncoderSpec) -> None:
    assert spec.pooling in POOLINGS
    assert len(spec.mean) == 3 and len(spec.std) == 3 and min(spec.std) > 0
    assert spec.native_mpp > 0 and spec.embed_dim > 0
    # A native-size tile must come out at exactly the model's input size.
    x = torch.zeros(1, 3, spec.tile_size, spec.tile_size)
    assert resize_and_crop(x, spec.resize).shape[-2:] == (spec.input_size, spec.input_size)
    if spec.requires_weights and spec.weights_public:
        assert spec.weight_files, "a downloadable encoder must say which files to look for"
    if spec.gated:
        assert spec.hf_repo is not None
    with pytest.raises(AttributeError):  # frozen: specs are shared, nobody may edit one
        spec.embed_dim = 1  # type: ignore[misc]


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_parameter_count_is_exact_and_near_published(spec: EncoderSpec) -> None:
    model = meta_build(spec)
    n = sum(p.numel() for p in model.parameters())
    assert n == spec.expected_params
    if spec.published_params is not None:
        assert abs(n / spec.published_params - 1) <= spec.published_rtol, spec.published_source


@pytest.mark.parametrize(
    "spec", [s for s in SPECS if s.name != "handcrafted"], ids=lambda s: s.name
)
def test_embedding_dim_on_meta(spec: EncoderSpec) -> None:
    model = meta_build(spec)
    x = torch.empty(2, 3, spec.input_size, spec.input_size, device="meta")
    assert pool(model(x), spec).shape == (2, spec.embed_dim)


def test_the_brief_s_embedding_sizes() -> None:
    dims = {s.name: s.embed_dim for s in SPECS}
    assert dims["virchow2"] == 2560 and dims["virchow"] == 2560  # CLS ‖ patch mean
    assert dims["conch-v1"] == 512 and dims["kimianet"] == 1024 and dims["resnet50-trunc"] == 1024
    assert get_spec("virchow2").num_prefix_tokens == 5


# Shapes stated in ENCODERS.md; a wrong kwarg (img_size, patch, registers, SwiGLU) changes them.
DOCUMENTED_SHAPES: dict[str, dict[str, tuple[int, ...]]] = {
    "uni": {"pos_embed": (1, 197, 1024), "blocks.0.ls1.gamma": (1024,)},
    "uni2-h": {
        "reg_token": (1, 8, 1536),
        "pos_embed": (1, 256, 1536),
        "blocks.0.mlp.fc1.weight": (8192, 1536),
        "blocks.0.mlp.fc2.weight": (1536, 4096),
    },
    "virchow": {
        "pos_embed": (1, 257, 1280),
        "blocks.0.mlp.fc1.weight": (6832, 1280),
        "blocks.0.mlp.fc2.weight": (1280, 3416),
    },
    "virchow2": {"pos_embed": (1, 261, 1280), "reg_token": (1, 4, 1280)},
    "h-optimus-0": {"pos_embed": (1, 256, 1536), "reg_token": (1, 4, 1536)},
    "gigapath": {"pos_embed": (1, 197, 1536), "patch_embed.proj.weight": (1536, 3, 16, 16)},
    "pathdino": {"pos_embed": (1, 1025, 384)},
    "conch-v1": {
        "trunk.pos_embed": (1, 785, 768),
        "attn_pool_contrast.attn.q_proj_weight": (512, 512),
        "attn_pool_contrast.attn.k_proj_weight": (512, 768),
        "attn_pool_caption.query": (256, 768),
        "attn_pool_caption.attn.in_proj_weight": (2304, 768),
        "proj_contrast": (512, 512),
    },
    "hibou-b": {
        "embeddings.register_tokens": (1, 4, 768),
        "embeddings.position_embeddings": (1, 257, 768),
        "embeddings.mask_token": (1, 768),
        "encoder.layer.0.mlp.weights_in.weight": (4096, 768),
        "encoder.layer.0.mlp.weights_out.weight": (768, 2048),
        "encoder.layer.0.layer_scale1.lambda1": (768,),
    },
    "hibou-l": {"encoder.layer.23.mlp.weights_out.weight": (1024, 2736)},
    "phikon": {
        "embeddings.position_embeddings": (1, 197, 768),
        "encoder.layer.11.attention.attention.query.weight": (768, 768),
        "encoder.layer.0.intermediate.dense.weight": (3072, 768),
        "layernorm.weight": (768,),
    },
    "phikon-v2": {
        "embeddings.position_embeddings": (1, 197, 1024),
        "encoder.layer.0.mlp.fc1.weight": (4096, 1024),
        "encoder.layer.0.layer_scale2.lambda1": (1024,),
    },
    "kimianet": {"model.0.conv0.weight": (64, 3, 7, 7), "model.0.norm5.weight": (1024,)},
    "resnet50-trunc": {"trunk.layer3.5.conv3.weight": (1024, 256, 1, 1)},
}


@pytest.mark.parametrize("name", list(DOCUMENTED_SHAPES))
def test_documented_key_shapes(name: str) -> None:
    sd = meta_build(get_spec(name)).state_dict()
    for key, shape in DOCUMENTED_SHAPES[name].items():
        assert key in sd, key
        assert tuple(sd[key].shape) == shape, key


@pytest.mark.parametrize(
    "name",
    ["uni", "uni2-h", "virchow", "virchow2", "h-optimus-0", "gigapath", "pathdino", "conch-v1"],
)
def test_timm_vits_have_no_head_and_layerscale_only_where_documented(name: str) -> None:
    keys = list(meta_build(get_spec(name)).state_dict())
    assert not [k for k in keys if k.startswith(("head.", "trunk.head."))]
    has_ls = any(".ls1.gamma" in k for k in keys)
    assert has_ls == (name not in ("pathdino", "conch-v1"))


def test_absent_layers_are_absent() -> None:
    resnet = meta_build(get_spec("resnet50-trunc")).state_dict()
    assert not [k for k in resnet if "layer4" in k or k.startswith("trunk.fc")]
    kimia = meta_build(get_spec("kimianet")).state_dict()
    assert not [k for k in kimia if "classifier" in k or "fc_4" in k]


def _transformer_block(width: int, mlp: int, cross: bool = False) -> int:
    """open_clip ResidualAttentionBlock: 2 LNs, packed MHA, MLP (+ ln_1_kv when cross-attending)."""
    attn = 3 * width * width + 3 * width + width * width + width
    return (
        2 * 2 * width
        + attn
        + (width * mlp + mlp)
        + (mlp * width + width)
        + (2 * width if cross else 0)
    )


def test_conch_tower_plus_text_and_decoder_gives_the_published_coca_total() -> None:
    """ENCODERS.md's 395.2M is the whole CoCa; rebuild the sum from the CONCH config by hand."""
    width, mlp, layers, vocab, ctx, embed = 768, 3072, 12, 32007, 128, 512
    text = (
        vocab * width  # token_embedding
        + ctx * width  # positional_embedding
        + width  # cls_emb
        + width * embed  # text_projection
        + layers * _transformer_block(width, mlp)
        + 2 * width  # ln_final
    )
    decoder = (
        layers * _transformer_block(width, mlp)
        + layers * _transformer_block(width, mlp, cross=True)
        + 2 * width
        + width * vocab  # text_projection to the vocabulary
    )
    total = get_spec("conch-v1").expected_params + text + decoder + 1  # + logit_scale
    assert abs(total / 395_200_000 - 1) < 0.001
    assert abs(text / 110_000_000 - 1) < 0.01  # "~110M" text encoder
