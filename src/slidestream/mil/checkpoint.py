"""``model.pt``: weights plus everything needed to rebuild the model and read its outputs.

A checkpoint must be usable without the run's config: it records the registry name and
hyper-parameters, the input dimension, the task (classes or survival bins) and the encoder the
features came from, so ``predict`` can refuse features from another encoder. Only plain Python
types and tensors are stored, and loading uses ``weights_only=True``: a checkpoint from a shared
folder cannot execute code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from slidestream.atomic import atomic_path
from slidestream.errors import ConfigError
from slidestream.mil.models import MILModel, get_model
from slidestream.mil.tasks import Task, task_from_spec

FORMAT = "slidestream.mil.checkpoint/1"


@dataclass
class LoadedModel:
    model: MILModel
    task: Task
    meta: dict[str, Any]

    @property
    def in_dim(self) -> int:
        return int(self.meta["in_dim"])

    @property
    def encoder(self) -> str | None:
        return self.meta.get("encoder")


def save_checkpoint(
    path: str | Path,
    model: MILModel,
    model_name: str,
    task: Task,
    in_dim: int,
    encoder: str | None,
    **meta: Any,
) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    spec = task.spec()
    payload = {
        "format": FORMAT,
        "model_name": model_name,
        "hparams": dict(getattr(model, "hparams", {})),
        "in_dim": int(in_dim),
        "n_outputs": int(task.n_outputs),
        "task": spec,
        "classes": spec.get("classes"),
        "encoder": encoder,
        **meta,
        "state_dict": model.state_dict(),
    }
    with atomic_path(path) as tmp:  # a killed run never leaves a truncated model.pt
        torch.save(payload, tmp)


def load_checkpoint(path: str | Path) -> LoadedModel:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(path, "checkpoint not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors come in many types
        raise ConfigError(path, f"not a readable checkpoint: {exc}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ConfigError(path, f"not a slidestream MIL checkpoint (expected format {FORMAT})")
    model = get_model(ckpt["model_name"], ckpt["in_dim"], ckpt["n_outputs"], **ckpt["hparams"])
    model.load_state_dict(ckpt.pop("state_dict"))
    model.eval()
    return LoadedModel(model, task_from_spec(ckpt["task"]), ckpt)
