"""Patch encoders: tensors in, vectors out (they know nothing about slides).

``load_encoder("uni", weights="...")`` builds an encoder from local weights only;
``list_encoders()`` / ``get_spec(name)`` describe what is available without loading anything.
"""

from slidestream.encoders.encoder import Encoder, load_encoder
from slidestream.encoders.registry import all_specs, get_spec, list_encoders
from slidestream.encoders.spec import EncoderSpec, KeyMap, ResizeRecipe
from slidestream.encoders.weights import load_state_dict, resolve_weights
from slidestream.weight_files import sha256_file

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
