"""The slide foundation encoders, by CLI name (``slidestream slide-encode --method NAME``).

Each family module owns its specs (one module per model family); this only collects them.
Names match case-insensitively with ``_`` accepted for ``-``.
"""

from __future__ import annotations

from slidestream.errors import ConfigError
from slidestream.slide_encoders.foundation import chief, feather, gigapath, madeleine, prism, titan
from slidestream.slide_encoders.foundation.spec import SlideEncoderSpec

__all__ = ["all_slide_specs", "get_slide_spec", "list_slide_encoders"]

_ORDER = (titan, prism, gigapath, chief, madeleine, feather)


def _collect() -> dict[str, SlideEncoderSpec]:
    specs: dict[str, SlideEncoderSpec] = {}
    for module in _ORDER:
        for spec in module.SPECS:
            if spec.name in specs:
                raise RuntimeError(f"duplicate slide encoder {spec.name!r} in {module.__name__}")
            specs[spec.name] = spec
    return specs


_SPECS = _collect()


def list_slide_encoders() -> list[str]:
    return list(_SPECS)


def all_slide_specs() -> list[SlideEncoderSpec]:
    return list(_SPECS.values())


def get_slide_spec(name: str) -> SlideEncoderSpec:
    """The spec for ``name``; unknown names raise ``ConfigError`` listing the valid ones."""
    key = name.strip().lower().replace("_", "-")
    if key not in _SPECS:
        raise ConfigError(None, f"unknown slide encoder {name!r}; valid: {', '.join(_SPECS)}")
    return _SPECS[key]
