"""Saving and strictly loading COBRA weights from a local file.

Accepted files (all read with ``torch.load(weights_only=True)``: no pickled code runs):

1. slidestream checkpoints written by :func:`save_cobra` — ``{"format": "slidestream.cobra",
   "config": {...}, "model": state_dict}``; the architecture travels with the weights.
2. COBRA pre-training checkpoints — ``{"state_dict": ...}`` of a DDP-wrapped MoCo model: the
   momentum (EMA) encoder is used, as the reference loader does (``momentum_enc.*`` minus its
   projector).
3. STAMP fine-tuning checkpoints — keys containing ``cobra.``; that sub-module is taken.
4. A plain ``Cobra`` state dict (the released ``pytorch_model.bin`` / ``cobraII.pth.tar``).

Released weights key input projections by feature *dimension* (``embed.1024.*``) while slidestream
keys them by encoder *name*; each named projection takes the weights of its dimension. Loading is
strict: any missing, unexpected or mis-shaped key is a :class:`~slidestream.errors.WeightsError`
naming the file and the first offending keys, never a silent partial load.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from slidestream.atomic import atomic_path
from slidestream.errors import ConfigError, WeightsError
from slidestream.slide_encoders.cobra import Cobra, CobraConfig

__all__ = ["extract_state_dict", "load_cobra", "save_cobra"]

FORMAT = "slidestream.cobra"
_NUMERIC_EMBED = re.compile(r"^embed\.(\d+)\.(.*)$")


def save_cobra(model: Cobra, path: str | Path, extra: Mapping[str, Any] | None = None) -> Path:
    """Write ``model`` with its config (and JSON-able ``extra`` provenance) to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {"format": FORMAT, "config": model.config.to_dict(), "model": state}
    if extra:
        payload["extra"] = dict(extra)
    with atomic_path(path) as tmp:  # a crash mid-write never leaves a truncated checkpoint behind
        torch.save(payload, tmp)
    return path


def _strip_through(state: Mapping[str, Tensor], marker: str, drop: str | None = None) -> dict:
    out = {}
    for key, value in state.items():
        if marker not in key or (drop is not None and drop in key):
            continue
        out[key.split(marker, 1)[1]] = value
    return out


def extract_state_dict(obj: Any) -> tuple[dict[str, Tensor], dict[str, Any] | None]:
    """``(state_dict, config or None)`` from any accepted checkpoint layout (see module doc)."""
    if not isinstance(obj, Mapping):
        raise TypeError(f"checkpoint holds a {type(obj).__name__}, expected a dict")
    if obj.get("format") == FORMAT:
        return dict(obj["model"]), dict(obj["config"])
    state = obj.get("state_dict", obj)
    if not isinstance(state, Mapping):
        raise TypeError("checkpoint 'state_dict' is not a dict")
    if any("momentum_enc." in k for k in state):
        return _strip_through(state, "momentum_enc.", drop="momentum_enc.proj"), None
    if any("cobra." in k for k in state):
        return _strip_through(state, "cobra."), None
    return {k.removeprefix("module."): v for k, v in state.items()}, None


def _rename_numeric_embeds(state: dict[str, Tensor], config: CobraConfig) -> dict[str, Tensor]:
    """Give every named projection the released weights of its input dimension."""
    numeric: dict[str, dict[str, Tensor]] = {}
    rest = {}
    for key, value in state.items():
        match = _NUMERIC_EMBED.match(key)
        if match and match.group(1) not in config.input_dims:
            numeric.setdefault(match.group(1), {})[match.group(2)] = value
        else:
            rest[key] = value
    if not numeric:
        return state
    for name, dim in config.input_dims.items():
        for suffix, value in numeric.get(str(dim), {}).items():
            rest[f"embed.{name}.{suffix}"] = value
    return rest


def _describe(keys: list[str], limit: int = 5) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


def load_cobra(path: str | Path, config: CobraConfig | None = None) -> Cobra:
    """A :class:`Cobra` in eval mode with the weights of ``path``, checked key by key.

    ``config`` is required for files that carry none (released or pre-training checkpoints, e.g.
    :func:`~.cobra.cobra_ii_config`); for slidestream checkpoints it overrides the stored one.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(path, "checkpoint file does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
        state, stored = extract_state_dict(obj)
    except (
        pickle.UnpicklingError,
        RuntimeError,
        OSError,
        TypeError,
        KeyError,
        EOFError,
        ValueError,
    ) as exc:
        raise WeightsError(path, f"not a readable COBRA checkpoint ({exc})") from exc
    if config is None:
        if stored is None:
            raise WeightsError(path, "checkpoint carries no config: pass the architecture")
        try:
            config = CobraConfig.from_dict(stored)
        except (ConfigError, TypeError, KeyError) as exc:
            raise WeightsError(path, f"checkpoint carries an invalid config ({exc})") from exc
    model = Cobra(config)
    state = _rename_numeric_embeds(state, config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = sorted(
        f"{k} {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in set(expected) & set(state)
        if state[k].shape != expected[k].shape
    )
    problems = []
    if missing:
        problems.append(f"missing keys: {_describe(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_describe(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatch: {_describe(mismatched)}")
    if problems:
        raise WeightsError(
            path, "checkpoint does not match the COBRA architecture; " + "; ".join(problems)
        )
    model.load_state_dict(state, strict=True)
    return model.eval()
