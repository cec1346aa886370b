"""The list of encoders, by CLI name. Each family module owns its specs; this only collects them.

Names are matched case-insensitively, with ``_`` accepted for ``-`` (``UNI2_h`` → ``uni2-h``),
because they are typed on command lines and in YAML configs.
"""

from __future__ import annotations

from slidestream.encoders import (
    cnn,
    conch,
    conch_v15,
    ctranspath,
    genbio,
    h0_mini,
    handcrafted,
    hibou,
    hkust,
    kaiko,
    lunit,
    openmidnight,
    phikon,
    pluto,
    vit_timm,
)
from slidestream.encoders.spec import EncoderSpec
from slidestream.errors import ConfigError

_ORDER = (
    vit_timm,
    hibou,
    conch,
    phikon,
    cnn,
    pluto,
    h0_mini,
    kaiko,
    lunit,
    hkust,
    openmidnight,
    genbio,
    conch_v15,
    ctranspath,
    handcrafted,
)


def _collect() -> dict[str, EncoderSpec]:
    specs: dict[str, EncoderSpec] = {}
    for module in _ORDER:
        for spec in module.SPECS:
            if spec.name in specs:
                raise RuntimeError(f"duplicate encoder name {spec.name!r} in {module.__name__}")
            specs[spec.name] = spec
    return specs


_SPECS = _collect()


def list_encoders() -> list[str]:
    """All encoder names, in display order."""
    return list(_SPECS)


def all_specs() -> list[EncoderSpec]:
    """All specs, in display order."""
    return list(_SPECS.values())


def get_spec(name: str) -> EncoderSpec:
    """The spec for ``name``; unknown names raise ``ConfigError`` listing the valid ones."""
    key = name.strip().lower().replace("_", "-")
    if key not in _SPECS:
        raise ConfigError(None, f"unknown encoder {name!r}; valid encoders: {', '.join(_SPECS)}")
    return _SPECS[key]
