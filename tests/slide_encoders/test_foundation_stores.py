"""Slide foundation encoders on stores: the input contract, provenance, the CLI and the probe."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from slidestream.cli import slide_encode  # noqa: F401  (registers the commands)
from slidestream.cli._app import app
from slidestream.errors import StoreError
from slidestream.slide_encoders.foundation import get_slide_spec
from slidestream.slide_encoders.foundation.feather import FeatherABMIL
from slidestream.slide_encoders.foundation.inputs import check_records
from slidestream.slide_encoders.probe import read_cohort_table
from slidestream.store import SlideStore


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def make_store(out, slide_id, *, encoder="conch-v1.5", dim=768, mpp=0.5, tile=512, level0=512,
               overlap=0, n=12, seed=0):
    """A store whose records look like `slidestream extract`'s (geometry + encoder provenance)."""
    store = SlideStore.create(out, slide_id, {"path": str(out / f"{slide_id}.svs"),
                                              "width": 20 * level0, "height": 20 * level0})
    cells = np.random.default_rng(seed).choice(100, size=n, replace=False)
    coords = np.stack([cells // 10, cells % 10], 1).astype(np.int64) * level0
    store.write_tiles(coords, np.ones(n), {"level0_size": [level0, level0], "target_mpp": mpp,
                                           "tile_size_px": tile, "overlap_px": overlap}, {})
    feats = np.random.default_rng(seed + 100).normal(size=(n, dim)).astype(np.float32)
    attrs = {"encoder": encoder, "mpp": mpp, "tile_size": tile,
             "encoder_provenance": {"name": encoder, "dim": dim}}
    writer = store.feature_writer(encoder, n, dim, attrs)
    writer.write(0, feats)
    writer.commit()
    return store


FEATURES = {"encoder": "conch-v1.5", "mpp": 0.5, "tile_size": 512}
TILES = {"level0_size": [1024, 1024], "target_mpp": 0.5, "tile_size_px": 512, "overlap_px": 0}


def test_the_right_records_pass_and_give_the_level0_tile_size():
    assert check_records(get_slide_spec("titan"), "conch-v1.5", FEATURES, TILES, 768) == 1024.0
    assert check_records(get_slide_spec("feather"), "conch_v15", FEATURES, TILES, 768) is None


@pytest.mark.parametrize(
    ("method", "features", "tiles", "dim", "message"),
    [
        ("titan", {**FEATURES, "encoder": "uni"}, TILES, 768,
         "titan needs conch-v1.5 features .* come from 'uni' .*--encoder conch-v1.5 --mpp 0.5 "
         "--tile-size 512 --overlap 0"),
        ("titan", FEATURES, TILES, 512, "are 512-d"),
        ("titan", {**FEATURES, "tile_size": 224}, TILES, 768, "these tiles are 224 px at 0.5 um/px"),
        ("chief", {"encoder": "ctranspath", "mpp": 0.5, "tile_size": 256}, TILES, 768,
         "chief needs ctranspath features \\(768-d\\) of 256-px tiles at 10x"),
        ("titan", FEATURES, {**TILES, "overlap_px": 64}, 768, "these tiles overlap"),
        ("gigapath", {"encoder": "gigapath"}, {}, 1536, "does not record the tile geometry"),
    ],
)
def test_wrong_patch_encoder_or_tile_geometry_is_refused_naming_what_is_needed(
    method, features, tiles, dim, message
):
    with pytest.raises(StoreError, match=message):
        check_records(get_slide_spec(method), features["encoder"], features, tiles, dim)


@pytest.fixture
def feather_weights(tmp_path):
    model = FeatherABMIL(in_dim=768).eval()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp_path / "model.safetensors")
    return tmp_path / "model.safetensors", model


def test_slide_encode_writes_embeddings_with_provenance_and_skips_a_wrong_store(
    tmp_path, feather_weights
):
    weights, model = feather_weights
    out = tmp_path / "OUT"
    for i in range(3):
        make_store(out, f"s{i}", seed=i)
    make_store(out, "bad", tile=224, seed=9)  # CONCH v1.5 at the wrong tile size
    table = tmp_path / "cohort.parquet"
    result = run("slide-encode", "--method", "feather", "--stores", out, "--encoder", "conch-v1.5",
                 "--weights", weights, "--table", table)
    assert result.exit_code == 1, result.output  # one slide failed: not a clean success
    assert "bad: feather needs conch-v1.5 features (768-d) of 512-px tiles" in result.output
    store = SlideStore.open(out / "s0.zarr")
    emb, attrs = store.read_slide_embedding("feather")
    feats, _, _ = store.read_features("conch-v1.5")
    with torch.no_grad():
        a, h = model.attention(torch.from_numpy(feats))
    assert np.allclose(emb, (a @ h).numpy(), atol=1e-6) and emb.shape == (512,)
    assert attrs["weights_path"] == str(weights) and len(attrs["weights_sha256"]) == 64
    assert attrs["input"].startswith("conch-v1.5 features (768-d) of 512-px tiles at 20x")
    cohort = read_cohort_table(table)
    assert sorted(cohort.loc[cohort["status"] == "ok", "slide_id"]) == ["s0", "s1", "s2"]


def test_wrong_encoder_and_missing_weights_are_one_line_errors(tmp_path, feather_weights):
    out = tmp_path / "OUT"
    make_store(out, "s0", encoder="uni", dim=1024)
    common = ("--stores", out, "--table", tmp_path / "t.parquet")
    result = run("slide-encode", "--method", "titan", "--encoder", "uni", *common)
    assert result.exit_code == 2
    assert "--encoder uni: titan needs conch-v1.5 features" in result.output
    result = run("slide-encode", "--method", "feather-uni", "--encoder", "uni", "--weights",
                 tmp_path / "nowhere.safetensors", *common)
    assert result.exit_code == 2 and "weights path does not exist" in result.output
    assert "Traceback" not in result.output


def test_titan_on_stores_uses_coordinates_and_the_level0_tile_size(tmp_path):
    from slidestream.slide_encoders.foundation import embed_slide, encode_cohort
    from slidestream.slide_encoders.foundation.titan import TitanVision

    model = TitanVision(depth=1).eval()
    sd = {f"vision_encoder.{k}": v.contiguous() for k, v in model.state_dict().items()}
    out = tmp_path / "OUT"
    make_store(out, "s40x", level0=1024)  # a 40x slide: 512-px tiles at 20x span 1024 level-0 px
    spec = dataclasses.replace(get_slide_spec("titan"), builder=lambda **c: TitanVision(depth=1))
    save_file(sd, tmp_path / "titan.safetensors")
    rows = encode_cohort([out / "s40x.zarr"], spec, "conch-v1.5", tmp_path / "titan.safetensors")
    assert rows["status"].tolist() == ["ok"], rows["error"].tolist()
    store = SlideStore.open(out / "s40x.zarr")
    emb, attrs = store.read_slide_embedding("titan")
    feats, coords, _ = store.read_features("conch-v1.5")
    assert attrs["patch_size_level0"] == 1024.0
    assert np.allclose(emb, embed_slide(model, feats, coords, 1024.0), atol=1e-6)


def test_encoders_lists_every_slide_encoder_with_dims_params_and_input():
    import json

    from slidestream.cli import encoders  # noqa: F401  (registers the command)

    result = run("encoders", "--slide", "--json")
    assert result.exit_code == 0, result.output
    records = {r["name"]: r for r in json.loads(result.output)}
    assert set(records) >= {"titan", "prism", "gigapath", "chief", "madeleine", "feather"}
    assert (records["prism"]["dim"], records["prism"]["params"]) == (1280, 99_037_440)
    assert records["chief"]["input"].startswith("ctranspath features (768-d) of 256-px tiles at 10x")
    assert records["gigapath"]["uses_coords"] and not records["feather"]["uses_coords"]
