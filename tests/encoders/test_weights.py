"""Finding weights on disk, reading them, and refusing ones that do not fit."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from slidestream.encoders import (
    get_spec,
    load_encoder,
    load_state_dict,
    resolve_weights,
    sha256_file,
)
from slidestream.errors import WeightsError
from slidestream.weight_files import hf_hub_cache
from tests.encoders._helpers import random_tiles

# PathDino (9.6M) is the smallest weighted ViT: cheap to build, save and load.
SMALL = "pathdino"


@pytest.fixture(scope="module")
def small_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    return {k: v.clone() for k, v in get_spec(SMALL).build().state_dict().items()}


def _touch(path: Path, content: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


# --- resolution --------------------------------------------------------------------------


def test_explicit_file_is_returned(tmp_path: Path) -> None:
    f = _touch(tmp_path / "anything.safetensors")
    assert resolve_weights(get_spec("uni"), f) == f


@pytest.mark.parametrize("bad", ["missing.bin", "weights.txt"])
def test_explicit_path_that_is_not_weights_is_an_error(tmp_path: Path, bad: str) -> None:
    if bad.endswith(".txt"):
        _touch(tmp_path / bad)
    with pytest.raises(WeightsError) as err:
        resolve_weights(get_spec("uni"), tmp_path / bad)
    assert "uni" in str(err.value) and bad in str(err.value)


def test_explicit_plain_folder_with_expected_file(tmp_path: Path) -> None:
    f = _touch(tmp_path / "uni" / "pytorch_model.bin")
    assert resolve_weights(get_spec("uni"), tmp_path / "uni") == f


def test_explicit_folder_with_one_weights_file_of_any_name(tmp_path: Path) -> None:
    f = _touch(tmp_path / "my_uni_copy.pth")
    assert resolve_weights(get_spec("uni"), tmp_path) == f


def test_explicit_empty_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="no weights in this folder"):
        resolve_weights(get_spec("uni"), tmp_path)


def test_hf_repo_folder_and_hub_root(tmp_path: Path) -> None:
    repo = tmp_path / "models--MahmoodLab--UNI"
    f = _touch(repo / "snapshots" / "abc" / "pytorch_model.bin")
    spec = get_spec("uni")
    assert resolve_weights(spec, repo) == f  # the repo folder itself
    assert resolve_weights(spec, tmp_path) == f  # a hub cache root holding it


def test_hf_hub_cache_env_is_searched(clean_weights_env: Path) -> None:
    f = _touch(
        clean_weights_env / "models--histai--hibou-b" / "snapshots" / "abc" / "model.safetensors"
    )
    assert hf_hub_cache() == clean_weights_env
    assert resolve_weights(get_spec("hibou-b")) == f
    assert resolve_weights(get_spec("hibou-l")) is None  # another repo: not found


def test_hf_home_is_used_when_hub_cache_is_unset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HF_HUB_CACHE")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    f = _touch(
        tmp_path
        / "hf"
        / "hub"
        / "spaces--Saghir--PathDino"
        / "snapshots"
        / "r1"
        / "PathDino512.pth"
    )
    assert resolve_weights(get_spec("pathdino")) == f  # a Space, not a model repo


def test_refs_main_wins_over_a_newer_snapshot(clean_weights_env: Path) -> None:
    repo = clean_weights_env / "models--owkin--phikon"
    # Names sort the other way round from age, so only a real mtime ordering passes.
    old = _touch(repo / "snapshots" / "zz-main-rev" / "model.safetensors")
    newer = _touch(repo / "snapshots" / "aa-other-rev" / "model.safetensors")
    os.utime(repo / "snapshots" / "zz-main-rev", (1, 1))
    assert resolve_weights(get_spec("phikon")) == newer  # no ref: newest snapshot
    _touch(repo / "refs" / "main", b"zz-main-rev\n")
    assert resolve_weights(get_spec("phikon")) == old


def test_dangling_symlink_of_unfinished_download_is_skipped(clean_weights_env: Path) -> None:
    snap = clean_weights_env / "models--owkin--phikon" / "snapshots" / "abc"
    snap.mkdir(parents=True)
    (snap / "model.safetensors").symlink_to(clean_weights_env / "blobs" / "never-arrived")
    assert resolve_weights(get_spec("phikon")) is None
    f = _touch(snap / "pytorch_model.bin")
    assert resolve_weights(get_spec("phikon")) == f


def test_slidestream_weights_env_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "weights"
    sub = _touch(root / "kimianet" / "KimiaNetPyTorchWeights.pth")
    flat = _touch(root / "pathdino.safetensors")
    monkeypatch.setenv("SLIDESTREAM_WEIGHTS", str(root))
    assert resolve_weights(get_spec("kimianet")) == sub
    assert resolve_weights(get_spec("pathdino")) == flat
    assert resolve_weights(get_spec("uni")) is None


def test_a_generic_file_in_the_shared_folder_is_nobodys(tmp_path: Path, clean_weights_env: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A stray model.safetensors at the root of $SLIDESTREAM_WEIGHTS must not be taken for UNI,
    Phikon, Hibou... (they all use that file name), nor hide the right file in the hub cache."""
    root = tmp_path / "weights"
    _touch(root / "model.safetensors")
    monkeypatch.setenv("SLIDESTREAM_WEIGHTS", str(root))
    for name in ("uni", "phikon", "hibou-b", "virchow"):
        assert resolve_weights(get_spec(name)) is None, name
    cached = _touch(clean_weights_env / "models--MahmoodLab--UNI" / "snapshots" / "a" / "pytorch_model.bin")
    assert resolve_weights(get_spec("uni")) == cached


def test_precedence_explicit_then_env_then_hub_cache(
    tmp_path: Path, clean_weights_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = get_spec("uni")
    cached = _touch(
        clean_weights_env / "models--MahmoodLab--UNI" / "snapshots" / "a" / "pytorch_model.bin"
    )
    assert resolve_weights(spec) == cached
    env_file = _touch(tmp_path / "env" / "uni" / "pytorch_model.bin")
    monkeypatch.setenv("SLIDESTREAM_WEIGHTS", str(tmp_path / "env"))
    assert resolve_weights(spec) == env_file
    explicit = _touch(tmp_path / "explicit.bin")
    assert resolve_weights(spec, explicit) == explicit


def test_no_weights_anywhere_gives_none_and_a_helpful_load_error() -> None:
    assert resolve_weights(get_spec("uni")) is None
    with pytest.raises(WeightsError) as err:
        load_encoder("uni")
    msg = str(err.value)
    assert "--weights" in msg and "models--MahmoodLab--UNI" in msg and "SLIDESTREAM_WEIGHTS" in msg
    assert "random-init" in msg


def test_unreleased_weights_say_so() -> None:
    with pytest.raises(WeightsError, match="not publicly released"):
        load_encoder("pluto")


# --- reading ----------------------------------------------------------------------------


@pytest.mark.parametrize("container", [None, "state_dict", "model", "teacher"])
def test_containers_and_prefixes_are_unwrapped(
    tmp_path: Path, small_state: dict[str, torch.Tensor], container: str | None
) -> None:
    wrapped = {f"module.backbone.{k}": v for k, v in small_state.items()}
    payload = wrapped if container is None else {container: wrapped, "epoch": 3}
    path = tmp_path / "ckpt.pth"
    torch.save(payload, path)
    assert set(load_state_dict(path)) == set(wrapped)
    enc = load_encoder(SMALL, weights=path)
    for k, v in enc.model.state_dict().items():
        torch.testing.assert_close(v, small_state[k], rtol=0, atol=0)


def test_dino_teacher_with_projection_head_loads_without_the_head(
    tmp_path: Path, small_state: dict[str, torch.Tensor]
) -> None:
    teacher = {f"backbone.{k}": v for k, v in small_state.items()}
    teacher["head.mlp.0.weight"] = torch.zeros(2048, 384)
    teacher["head.last_layer.weight_g"] = torch.zeros(1, 256)
    torch.save({"teacher": teacher, "student": teacher}, tmp_path / "checkpoint.pth")
    load_encoder(SMALL, weights=tmp_path / "checkpoint.pth")


def test_non_state_dict_and_corrupt_files_raise(tmp_path: Path) -> None:
    torch.save({"epoch": 3, "lr": 0.1}, tmp_path / "meta.pt")
    with pytest.raises(WeightsError, match="not a state dict"):
        load_state_dict(tmp_path / "meta.pt")
    (tmp_path / "broken.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(WeightsError, match="cannot read weights"):
        load_state_dict(tmp_path / "broken.safetensors")


class _Payload:
    """Not a tensor: ``weights_only=True`` must refuse to unpickle it."""


def test_pickled_objects_are_refused(tmp_path: Path) -> None:
    torch.save({"w": _Payload()}, tmp_path / "evil.bin")
    with pytest.raises(WeightsError, match="cannot read weights"):
        load_state_dict(tmp_path / "evil.bin")


# --- strict loading ---------------------------------------------------------------------


def test_renamed_key_names_encoder_file_and_keys(
    tmp_path: Path, small_state: dict[str, torch.Tensor]
) -> None:
    bad = dict(small_state)
    bad["blocks.0.attn.qkv.weights"] = bad.pop("blocks.0.attn.qkv.weight")
    path = tmp_path / "renamed.safetensors"
    save_file(bad, path)
    with pytest.raises(WeightsError) as err:
        load_encoder(SMALL, weights=path)
    msg = str(err.value)
    assert "pathdino" in msg and str(path) in msg
    assert "1 missing: blocks.0.attn.qkv.weight" in msg
    assert "1 unexpected: blocks.0.attn.qkv.weights" in msg
    assert err.value.path == path


def test_wrong_shape_names_the_key_and_both_shapes(
    tmp_path: Path, small_state: dict[str, torch.Tensor]
) -> None:
    bad = dict(small_state)
    bad["pos_embed"] = torch.zeros(1, 197, 384)  # a 224-px checkpoint for the 512-px model
    path = tmp_path / "shape.safetensors"
    save_file(bad, path)
    with pytest.raises(WeightsError) as err:
        load_encoder(SMALL, weights=path)
    assert "pos_embed (file (1, 197, 384), model (1, 1025, 384))" in str(err.value)


def test_missing_batchnorm_counters_are_tolerated_like_torch_does(tmp_path: Path) -> None:
    torch.manual_seed(0)
    state = get_spec("resnet50-trunc").build().state_dict()
    old = {k.removeprefix("trunk."): v for k, v in state.items() if "num_batches_tracked" not in k}
    torch.save(old, tmp_path / "resnet50-19c8e357.pth")
    enc = load_encoder("resnet50-trunc", weights=tmp_path)
    assert enc.weights_path == tmp_path / "resnet50-19c8e357.pth"


# --- provenance -------------------------------------------------------------------------


def test_sha256_is_streamed_correct_and_refreshed_when_the_file_changes(tmp_path: Path) -> None:
    f = _touch(tmp_path / "w.bin", b"abc" * 1000)
    assert sha256_file(f) == hashlib.sha256(b"abc" * 1000).hexdigest()
    assert sha256_file(f, chunk_size=7) == hashlib.sha256(b"abc" * 1000).hexdigest()
    f.write_bytes(b"other content")
    os.utime(f, ns=(1_000_000_000, 1_000_000_000))
    assert sha256_file(f) == hashlib.sha256(b"other content").hexdigest()


def test_loaded_encoder_records_path_and_hash(
    tmp_path: Path, small_state: dict[str, torch.Tensor]
) -> None:
    path = tmp_path / "PathDino512.safetensors"
    save_file(small_state, path)
    enc = load_encoder(SMALL, weights=path)
    assert enc.weights_path == path
    assert enc.provenance()["weights_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert np.isfinite(enc(random_tiles(SMALL))).all()
