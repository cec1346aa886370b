"""Name → model class, so configs and checkpoints can say ``"clam_sb"`` instead of importing code.

The registry also records the hyper-parameters a model was built with (``model.hparams``): a
checkpoint stores them next to the weights and :func:`get_model` rebuilds the same module later.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from slidestream.errors import ConfigError
from slidestream.mil.models.base import MILModel

M = TypeVar("M", bound=type[MILModel])

_MODELS: dict[str, type[MILModel]] = {}


def register(name: str) -> Callable[[M], M]:
    """Class decorator adding a model under ``name`` (lower case, unique)."""

    def add(cls: M) -> M:
        if name in _MODELS:
            raise ValueError(f"MIL model {name!r} registered twice")
        _MODELS[name] = cls
        return cls

    return add


def list_models() -> list[str]:
    """Registered model names, sorted."""
    return sorted(_MODELS)


def get_model(name: str, in_dim: int, n_classes: int, **kw: Any) -> MILModel:
    """Build model ``name`` for ``in_dim`` features and ``n_classes`` outputs.

    Unknown names and unknown keyword arguments raise :class:`ConfigError` naming the allowed
    values: they come from user configs, and a typo should read as a config problem, not a
    ``TypeError`` from deep inside torch.
    """
    cls = _MODELS.get(name)
    if cls is None:
        raise ConfigError(None, f"unknown MIL model {name!r}; choose one of {list_models()}")
    params = inspect.signature(cls.__init__).parameters
    allowed = [p for p in params if p not in ("self", "in_dim", "n_classes")]
    unknown = sorted(set(kw) - set(allowed))
    if unknown:
        raise ConfigError(
            None, f"model {name!r} has no option(s) {unknown}; its options are {allowed}"
        )
    model = cls(in_dim, n_classes, **kw)
    model.hparams = dict(kw)
    return model
