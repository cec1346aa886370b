"""Encoder weights: find them on local disk, read them safely, and load them strictly.

Nothing here reaches the network. Weights are looked for, in order:

1. the path the caller gave (``--weights``): a weights file (``.safetensors``, ``.bin``, ``.pth``,
   ``.pt``, ``.torch``), or a folder — a plain folder holding one of the spec's ``weight_files``, a Hugging
   Face repo cache folder (``models--org--name`` with ``snapshots/<rev>/...``), or a hub cache
   root that contains such a folder. A given path that holds no weights is an error, not a
   silent fall-through: the caller asked for that file.
2. ``$SLIDESTREAM_WEIGHTS``: a folder with one entry per encoder, ``<name>/`` (plain or hub
   layout) or ``<name>.<suffix>``, plus anything the folder search above finds.
3. the Hugging Face hub cache (``HF_HUB_CACHE``, else ``HF_HOME/hub``, else
   ``~/.cache/huggingface/hub``), i.e. files fetched earlier with ``huggingface-cli download``.

Reading uses ``safetensors`` or ``torch.load(weights_only=True)`` (no pickled code runs), unwraps
the usual containers (``state_dict``, ``model``, ``teacher``) and then applies the spec's
``KeyMap``. Loading is strict: every tensor of the module must be present with the right shape
and nothing may be left over, or a ``WeightsError`` names the encoder, the file and the first
offending keys. The module is built on the ``meta`` device and the checkpoint tensors are
assigned into it, so a 1B-parameter model is never randomly initialised just to be overwritten.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn

from slidestream.encoders.spec import EncoderSpec, StateDict
from slidestream.errors import WeightsError
from slidestream.weight_files import find_in_snapshots, hf_hub_cache

ENV_WEIGHTS = "SLIDESTREAM_WEIGHTS"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt", ".torch")  # .torch: Lunit releases
CONTAINER_KEYS = ("state_dict", "model", "teacher")
_SHOW = 5  # keys listed per category in a mismatch message


# --- where ---------------------------------------------------------------------------------


def hf_cache_folder_name(spec: EncoderSpec) -> str | None:
    """``models--org--name`` (or ``spaces--`` / ``datasets--``) for the spec's hub repo."""
    if spec.hf_repo is None:
        return None
    return f"{spec.hf_repo_type}s--" + spec.hf_repo.replace("/", "--")


def _single_weights_file(folder: Path) -> Path | None:
    """The one weights file in a folder, if there is exactly one (unambiguous by construction)."""
    found = [p for p in folder.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES]
    return found[0] if len(found) == 1 else None


def _in_folder(folder: Path, spec: EncoderSpec, *, shared: bool) -> Path | None:
    """Search one folder in every layout described in the module docstring.

    A ``shared`` folder (``$SLIDESTREAM_WEIGHTS``) holds many encoders' weights, so only entries
    named for this encoder count there: a generic ``model.safetensors`` at its root, or its being
    one hub repo folder, would otherwise be claimed by every encoder that uses that file name.
    """
    if not shared:
        for name in spec.weight_files:
            if (folder / name).is_file():
                return folder / name
        found = find_in_snapshots(folder, spec.weight_files)  # the folder is a hub repo folder
        if found:
            return found
    repo_folder = hf_cache_folder_name(spec)
    if repo_folder and (folder / repo_folder).is_dir():  # the folder is a hub cache root
        found = find_in_snapshots(folder / repo_folder, spec.weight_files)
        if found:
            return found
    own = folder / spec.name
    if own.is_dir():  # a per-encoder subfolder
        found = _in_folder(own, spec, shared=False)
        if found:
            return found
    for suffix in WEIGHT_SUFFIXES:
        if (folder / f"{spec.name}{suffix}").is_file():
            return folder / f"{spec.name}{suffix}"
    return None if shared else _single_weights_file(folder)


def searched_locations(spec: EncoderSpec, path: str | os.PathLike[str] | None = None) -> list[str]:
    """Human-readable list of the places ``resolve_weights`` looks, for error messages."""
    places = []
    if path is not None:
        places.append(f"--weights {path}")
    env = os.environ.get(ENV_WEIGHTS)
    places.append(
        f"${ENV_WEIGHTS}={env} (./{spec.name}/ or ./{spec.name}.<ext>)"
        if env
        else f"${ENV_WEIGHTS} (not set)"
    )
    repo_folder = hf_cache_folder_name(spec)
    if repo_folder:
        places.append(f"{hf_hub_cache() / repo_folder}/snapshots/*/")
    return places


def resolve_weights(spec: EncoderSpec, path: str | os.PathLike[str] | None = None) -> Path | None:
    """The local weights file for ``spec``, or ``None`` if none of the usual places has one.

    An explicit ``path`` must exist and contain weights; otherwise ``WeightsError``.
    """
    if path is not None:
        given = Path(path).expanduser()
        if given.is_file():
            if given.suffix not in WEIGHT_SUFFIXES:
                raise WeightsError(
                    given,
                    f"{spec.name}: not a weights file (expected {', '.join(WEIGHT_SUFFIXES)})",
                )
            return given
        if given.is_dir():
            found = _in_folder(given, spec, shared=False)
            if found:
                return found
            wanted = ", ".join(spec.weight_files) or f"{spec.name}.<ext>"
            raise WeightsError(
                given, f"{spec.name}: no weights in this folder (looked for {wanted})"
            )
        raise WeightsError(given, f"{spec.name}: weights path does not exist")

    env = os.environ.get(ENV_WEIGHTS)
    if env and Path(env).expanduser().is_dir():
        found = _in_folder(Path(env).expanduser(), spec, shared=True)
        if found:
            return found
    repo_folder = hf_cache_folder_name(spec)
    if repo_folder:
        return find_in_snapshots(hf_hub_cache() / repo_folder, spec.weight_files)
    return None


# --- what ----------------------------------------------------------------------------------


def _is_tensor_map(obj: Any) -> bool:
    return isinstance(obj, Mapping) and all(isinstance(v, torch.Tensor) for v in obj.values())


def load_state_dict(path: str | os.PathLike[str]) -> StateDict:
    """Read a checkpoint into a flat ``{key: tensor}`` on the CPU, unwrapping containers."""
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            obj: Any = load_file(str(path), device="cpu")
        elif path.suffix in WEIGHT_SUFFIXES:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        else:
            raise WeightsError(path, f"unsupported weights format {path.suffix!r}")
    except WeightsError:
        raise
    except Exception as exc:  # corrupt file, pickle with code in it, truncated download, ...
        raise WeightsError(path, f"cannot read weights: {type(exc).__name__}: {exc}") from exc

    while isinstance(obj, Mapping) and not _is_tensor_map(obj):
        inner = next((obj[k] for k in CONTAINER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)][:_SHOW]
            raise WeightsError(path, f"not a state dict: non-tensor entries {bad}")
        obj = inner
    if not isinstance(obj, Mapping):
        raise WeightsError(path, f"not a state dict: the file holds a {type(obj).__name__}")
    return dict(obj)


def apply_key_map(
    spec: EncoderSpec,
    state_dict: StateDict,
    model: nn.Module,
    path: str | os.PathLike[str] | None = None,
) -> StateDict:
    """Checkpoint names → module names, by the spec's ``KeyMap`` (see ``spec.KeyMap``)."""
    km = spec.key_map
    out: StateDict = {}
    for key, value in state_dict.items():
        stripped = True
        while stripped:
            stripped = False
            for prefix in km.strip_prefixes:
                if key.startswith(prefix):
                    key, stripped = key[len(prefix) :], True
        out[key] = value
    if km.select_prefix and any(k.startswith(km.select_prefix) for k in out):
        n = len(km.select_prefix)
        out = {k[n:]: v for k, v in out.items() if k.startswith(km.select_prefix)}
    drops = [re.compile(p) for p in km.drop]
    out = {k: v for k, v in out.items() if not any(d.search(k) for d in drops)}
    for pattern, repl in km.rename:
        renamed = {re.sub(pattern, repl, k, count=1): v for k, v in out.items()}
        if len(renamed) != len(out):
            raise WeightsError(path, f"{spec.name}: key rename {pattern!r} made keys collide")
        out = renamed
    return km.fixup(out, model)


def _names(keys: list[str]) -> str:
    more = f" (+{len(keys) - _SHOW} more)" if len(keys) > _SHOW else ""
    return ", ".join(keys[:_SHOW]) + more


def check_state_dict(
    spec: EncoderSpec, model: nn.Module, state_dict: StateDict, path: str | os.PathLike[str]
) -> StateDict:
    """Raise ``WeightsError`` unless ``state_dict`` matches the module exactly.

    BatchNorm ``num_batches_tracked`` counters are the one tolerated omission: files saved by
    PyTorch < 0.4 (e.g. the original torchvision ResNet-50) predate them, and PyTorch's own strict
    load fills them in too. They are filled with 0 (they do not affect inference).
    """
    expected = model.state_dict()
    state_dict = dict(state_dict)
    for key, ref in expected.items():
        if key.endswith("num_batches_tracked") and key not in state_dict:
            state_dict[key] = torch.zeros(ref.shape, dtype=ref.dtype)
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    wrong = [
        f"{k} (file {tuple(state_dict[k].shape)}, model {tuple(ref.shape)})"
        for k, ref in expected.items()
        if k in state_dict and state_dict[k].shape != ref.shape
    ]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing: {_names(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected: {_names(unexpected)}")
        if wrong:
            parts.append(f"{len(wrong)} with the wrong shape: {_names(wrong)}")
        raise WeightsError(
            path,
            f"weights do not match encoder {spec.name!r} (strict load): " + "; ".join(parts),
        )
    return state_dict


def _init_non_persistent_buffers(model: nn.Module) -> None:
    """Recompute buffers that are not in any checkpoint (e.g. Swin's window masks and indices).

    They stay on the meta device after an ``assign`` load. timm modules that own such buffers
    expose ``init_non_persistent_buffers()`` (timm's convention for meta-device construction);
    the meta placeholders are given real storage and the module recomputes them.
    """
    for module in model.modules():
        init = getattr(module, "init_non_persistent_buffers", None)
        metas = [n for n, b in module.named_buffers(recurse=False) if b is not None and b.is_meta]
        if init is None or not metas:
            continue
        for name in metas:
            buf = getattr(module, name)
            module.register_buffer(name, torch.empty_like(buf, device="cpu"), persistent=False)
        init()


def build_with_weights(spec: EncoderSpec, path: str | os.PathLike[str]) -> nn.Module:
    """Build ``spec`` on the meta device and assign the checkpoint's tensors into it, strictly."""
    with torch.device("meta"):
        model = spec.build()
    state_dict = apply_key_map(spec, load_state_dict(path), model, path)
    state_dict = check_state_dict(spec, model, state_dict, path)
    model.load_state_dict(state_dict, strict=True, assign=True)
    _init_non_persistent_buffers(model)
    left = [n for n, t in (*model.named_parameters(), *model.named_buffers()) if t.is_meta]
    if left:  # a non-persistent buffer would stay unmaterialised: a bug in the module, not the file
        raise RuntimeError(f"{spec.name}: tensors not covered by the state dict: {left[:_SHOW]}")
    return model.float()


# --- provenance ----------------------------------------------------------------------------

