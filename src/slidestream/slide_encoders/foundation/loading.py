"""Slide foundation encoder weights: found on local disk, read safely, loaded strictly.

The search (``--weights`` file or folder, ``$SLIDESTREAM_WEIGHTS``, the Hugging Face hub cache),
the safe readers (safetensors, ``torch.load(weights_only=True)``) and the key-by-key check are
those of the patch encoders (:mod:`slidestream.encoders.weights`); this module adds the one
thing slide releases need: an architecture config file shipped next to the weights
(MADELEINE's ``model_config.json``, FEATHER's ``config.json``) is read and checked.
Nothing here reaches the network.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from slidestream.encoders import weights as w
from slidestream.errors import WeightsError
from slidestream.slide_encoders.foundation.spec import SlideEncoderSpec
from slidestream.weight_files import sha256_file

__all__ = ["find_weights", "load_slide_encoder", "read_release_config"]


def find_weights(spec: SlideEncoderSpec, path: str | os.PathLike[str] | None = None) -> Path:
    """The weights file of ``spec``; a :class:`WeightsError` naming where it looked otherwise."""
    found = w.resolve_weights(spec, path)  # type: ignore[arg-type]  # duck-typed spec
    if found is None:
        places = "; ".join(w.searched_locations(spec, path))  # type: ignore[arg-type]
        raise WeightsError(
            path,
            f"{spec.name}: no weights found (looked in {places}); download them from "
            f"{spec.weights_source} and pass --weights FILE_OR_FOLDER",
        )
    return found


def read_release_config(spec: SlideEncoderSpec, weights: Path) -> dict[str, Any]:
    """Architecture settings from the release's config file next to ``weights`` (if any)."""
    if spec.config_file is None:
        return {}
    cfg_path = weights.parent / spec.config_file
    if not cfg_path.is_file():
        return {}
    try:
        data = json.loads(cfg_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise WeightsError(cfg_path, f"{spec.name}: unreadable config ({exc})") from exc
    if not isinstance(data, dict):
        raise WeightsError(cfg_path, f"{spec.name}: config is not a JSON object")
    return {k: data[k] for k in spec.config_keys if k in data}


def load_slide_encoder(
    spec: SlideEncoderSpec, path: str | os.PathLike[str] | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """``(model in eval mode, provenance)`` with the official weights of ``spec``, strictly.

    The module is built on the meta device and the checkpoint's tensors are assigned into it, so
    no random initialisation is wasted; every tensor of the module must come from the file
    (after the spec's documented key map) with the right shape, and nothing may be left over.
    """
    file = find_weights(spec, path)
    config = read_release_config(spec, file)
    try:
        with torch.device("meta"):
            model = spec.build(**config)
    except (TypeError, ValueError) as exc:
        raise WeightsError(file, f"{spec.name}: config does not describe the model ({exc})") from exc
    state = w.apply_key_map(spec, w.load_state_dict(file), model, file)  # type: ignore[arg-type]
    state = w.check_state_dict(spec, model, state, file)  # type: ignore[arg-type]
    model.load_state_dict(state, strict=True, assign=True)
    left = [n for n, t in (*model.named_parameters(), *model.named_buffers()) if t.is_meta]
    if left:
        raise RuntimeError(f"{spec.name}: tensors not covered by the state dict: {left[:5]}")
    provenance = {
        "slide_encoder": spec.name,
        "weights_path": str(file),
        "weights_sha256": sha256_file(file),
        "architecture_config": config,
    }
    return model.float().eval(), provenance
