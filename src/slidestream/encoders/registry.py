"""The list of encoders, by CLI name. Each family module owns its specs; this only finds them.

Names are matched case-insensitively, with ``_`` accepted for ``-`` (``UNI2_h`` → ``uni2-h``),
because they are typed on command lines and in YAML configs.

Looking one encoder up imports only its family module: most families import timm, and timm
imports torchvision (and through it ``torch._dynamo``), several seconds and hundreds of MB that
a job running the built-in ``handcrafted`` encoder, or a plain-torch family, never uses. So the
name → module table below is written out (in display order) rather than collected by importing
every module; ``tests/encoders/test_registry_lazy.py`` checks it against the modules' ``SPECS``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from slidestream.errors import ConfigError

if TYPE_CHECKING:
    from slidestream.encoders.spec import EncoderSpec

#: encoder name → family module (``slidestream.encoders.<module>``), in display order.
WHERE: dict[str, str] = {
    **dict.fromkeys(("uni", "uni2-h", "virchow", "virchow2", "h-optimus-0", "h-optimus-1", "gigapath", "pathdino"),
                    "vit_timm"),
    **dict.fromkeys(("hibou-b", "hibou-l"), "hibou"),
    "conch-v1": "conch",
    **dict.fromkeys(("phikon", "phikon-v2"), "phikon"),
    **dict.fromkeys(("kimianet", "resnet50-trunc"), "cnn"),
    "pluto": "pluto",
    **dict.fromkeys(("h0-mini-cls", "h0-mini-cls-mean"), "h0_mini"),
    **dict.fromkeys(("kaiko-vits16", "kaiko-vits8", "kaiko-vitb16", "kaiko-vitb8", "kaiko-vitl14",
                     "midnight-12k-cls", "midnight-12k-cls-mean"), "kaiko"),
    "lunit-dino-vits8": "lunit",
    **dict.fromkeys(("gpfm", "mstar"), "hkust"),
    "openmidnight": "openmidnight",
    "genbio-pathfm": "genbio",
    "conch-v1.5": "conch_v15",
    "ctranspath": "ctranspath",
    "handcrafted": "handcrafted",
}

#: (native mpp, tile size) of the encoders that differ from :data:`DEFAULT_TILING`. Written out
#: for the same reason as :data:`WHERE`: a job tiles a slide at its encoder's native scale while
#: the encoder's family (torch, timm) is still importing in the background (``encoders.loading``);
#: ``tests/encoders/test_registry_lazy.py`` checks it against every spec.
DEFAULT_TILING: tuple[float, int] = (0.5, 224)
TILING: dict[str, tuple[float, int]] = {
    "gigapath": (0.5, 256), "resnet50-trunc": (0.5, 256), "mstar": (0.5, 256),
    "pathdino": (0.5, 512), "conch-v1.5": (0.5, 512), "conch-v1": (0.5, 448),
    "kimianet": (0.5, 1000), "gpfm": (0.25, 512), "ctranspath": (1.0, 256),
}

_loaded: dict[str, EncoderSpec] = {}


def _family_specs(module_name: str) -> dict[str, EncoderSpec]:
    module = importlib.import_module(f"slidestream.encoders.{module_name}")
    specs = {spec.name: spec for spec in module.SPECS}
    if len(specs) != len(module.SPECS):
        raise RuntimeError(f"duplicate encoder name in {module.__name__}")
    return specs


def _load(name: str) -> EncoderSpec:
    if name not in _loaded:
        specs = _family_specs(WHERE[name])
        if name not in specs:   # the table and the module disagree: a programming error
            raise RuntimeError(f"encoder {name!r} is not in slidestream.encoders.{WHERE[name]}.SPECS")
        _loaded.update((n, s) for n, s in specs.items() if WHERE.get(n) == WHERE[name])
    return _loaded[name]


def list_encoders() -> list[str]:
    """All encoder names, in display order (imports no family module)."""
    return list(WHERE)


def all_specs() -> list[EncoderSpec]:
    """All specs, in display order (imports every family module)."""
    return [_load(name) for name in WHERE]


def canonical_name(name: str) -> str:
    """The registry name ``name`` stands for (imports nothing); unknown names raise
    ``ConfigError`` listing the valid ones."""
    key = name.strip().lower().replace("_", "-")
    if key not in WHERE:
        raise ConfigError(None, f"unknown encoder {name!r}; valid encoders: {', '.join(WHERE)}")
    return key


def native_tiling(name: str) -> tuple[float, int]:
    """``(spec.native_mpp, spec.tile_size)`` of encoder ``name`` without importing its family."""
    return TILING.get(canonical_name(name), DEFAULT_TILING)


def get_spec(name: str) -> EncoderSpec:
    """The spec for ``name``; unknown names raise ``ConfigError`` listing the valid ones."""
    return _load(canonical_name(name))
