"""Patch encoders: tensors in, vectors out (they know nothing about slides).

``load_encoder("uni", weights="...")`` builds an encoder from local weights only;
``list_encoders()`` / ``get_spec(name)`` describe what is available without loading anything.

The names below are resolved on first use (PEP 562): importing ``slidestream.encoders.registry``
or ``.loading`` must not import torch, so that a job can start loading its encoder in the
background (``loading.EncoderLoad``) and tile the slide meanwhile.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from slidestream.encoders.encoder import Encoder, load_encoder
    from slidestream.encoders.registry import all_specs, get_spec, list_encoders
    from slidestream.encoders.spec import EncoderSpec, KeyMap, ResizeRecipe
    from slidestream.encoders.weights import load_state_dict, resolve_weights
    from slidestream.weight_files import sha256_file

_WHERE = {
    "Encoder": "encoder",
    "load_encoder": "encoder",
    "all_specs": "registry",
    "get_spec": "registry",
    "list_encoders": "registry",
    "EncoderSpec": "spec",
    "KeyMap": "spec",
    "ResizeRecipe": "spec",
    "load_state_dict": "weights",
    "resolve_weights": "weights",
    "sha256_file": "slidestream.weight_files",
}

__all__ = [
    "Encoder",
    "EncoderSpec",
    "KeyMap",
    "ResizeRecipe",
    "all_specs",
    "get_spec",
    "list_encoders",
    "load_encoder",
    "load_state_dict",
    "resolve_weights",
    "sha256_file",
]
assert sorted(__all__) == sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    where = _WHERE[name]
    module = where if "." in where else f"{__name__}.{where}"
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])
