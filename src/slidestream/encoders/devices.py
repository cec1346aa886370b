"""``--device`` strings: checked before any model is built, one clear line when one cannot work.

Why a module: ``torch.device("cuda:x")`` raises a bare ``RuntimeError`` and a device that does
not exist fails only at the first copy, deep in the model; a user should instead learn at once
that the string is malformed, that this torch has no CUDA, or that there are only two GPUs.

Several GPUs: one process drives one device. ``cuda:0,cuda:1`` is refused with the recipe that
does the job with no coordinator, each process taking a disjoint, deterministic share of the
slides (``--shard i/n``, see ``pipeline/shard.py``) on its own GPU (``CUDA_VISIBLE_DEVICES``).
"""

from __future__ import annotations

import re

import torch

from slidestream.errors import ConfigError

_FORM = re.compile(r"^(cpu|mps|cuda)(?::(\d+))?$")


def multi_gpu_recipe(devices: list[str]) -> str:
    """One shell line that runs one ``slidestream extract`` per device, sharding the slides."""
    n = len(devices)
    lines = []
    for i, dev in enumerate(devices, start=1):
        index = dev.partition(":")[2] or "0"
        lines.append(f"CUDA_VISIBLE_DEVICES={index} slidestream extract SLIDES --out OUT --device cuda "
                     f"--shard {i}/{n} ... &")
    return " ".join([*lines, "wait"])


def resolve_device(text: str | torch.device) -> torch.device:
    """``text`` as a usable :class:`torch.device`, or a :class:`ConfigError` saying why not."""
    if isinstance(text, torch.device):
        text = str(text)
    value = str(text).strip()
    parts = [p.strip() for p in value.split(",") if p.strip()]
    if len(parts) > 1:
        bad = [p for p in parts if not _FORM.match(p) or not p.startswith("cuda")]
        if bad:
            raise ConfigError(None, f"device {value!r}: several devices must all be cuda:N (not {bad[0]!r})")
        raise ConfigError(None, f"device {value!r}: one process drives one GPU; run one per GPU, each on a "
                          f"share of the slides: {multi_gpu_recipe(parts)}")
    match = _FORM.match(value)
    if not match:
        raise ConfigError(None, f"device {value!r}: expected cpu, cuda, cuda:N or mps")
    kind, index = match.group(1), match.group(2)
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(None, f"device {value!r}: CUDA is not available here (torch {torch.__version__}, "
                              f"built for CUDA {torch.version.cuda or 'none'}; no GPU visible)")
        count = torch.cuda.device_count()
        if index is not None and int(index) >= count:
            raise ConfigError(None, f"device {value!r}: only {count} CUDA device(s) visible (cuda:0 .. cuda:{count - 1})")
    elif kind == "mps":
        if index not in (None, "0"):
            raise ConfigError(None, f"device {value!r}: mps has a single device")
        if not torch.backends.mps.is_available():
            raise ConfigError(None, f"device {value!r}: the MPS backend is not available here")
    elif index is not None:
        raise ConfigError(None, f"device {value!r}: cpu takes no index; use cpu")
    return torch.device(value)
