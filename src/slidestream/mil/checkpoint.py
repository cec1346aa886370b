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
    """A ``model.pt`` written by :func:`save_checkpoint`, or a state dict saved by an original
    implementation (CLAM, TransMIL, DSMIL, MIL-Lab ABMIL; see :mod:`.foreign_checkpoints`)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(path, "checkpoint not found")
    if path.suffix == ".safetensors":
        return _load_foreign(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors come in many types
        raise ConfigError(path, f"not a readable checkpoint: {exc}") from None
    if isinstance(ckpt, dict) and ckpt.get("format") != FORMAT:
        return _load_foreign(path, ckpt)
    if not isinstance(ckpt, dict):
        raise ConfigError(path, f"not a slidestream MIL checkpoint (expected format {FORMAT})")
    model = get_model(ckpt["model_name"], ckpt["in_dim"], ckpt["n_outputs"], **ckpt["hparams"])
    model.load_state_dict(ckpt.pop("state_dict"))
    model.eval()
    return LoadedModel(model, task_from_spec(ckpt["task"]), ckpt)


def _load_foreign(path: Path, raw: dict | None = None) -> LoadedModel:
    """An original implementation's state dict: classes are ``0..C-1`` (the file has no names)
    and the encoder is unknown (only the feature dimension is checked against the bags)."""
    from slidestream.mil import foreign_checkpoints as foreign

    state = foreign.read_state(path) if raw is None else foreign.clean_state_dict(raw)
    source = foreign.detect(state)
    if source is None:
        raise ConfigError(path, f"not a slidestream MIL checkpoint (expected format {FORMAT}) nor a state "
                                f"dict of {', '.join(foreign.SOURCES)}")
    model, name, hparams, in_dim, n_classes = foreign.build_foreign_model(state, source, where=path)
    task = task_from_spec({"kind": "classification", "classes": [str(c) for c in range(n_classes)]})
    meta = {"format": f"foreign:{source}", "model_name": name, "hparams": hparams, "in_dim": in_dim,
            "n_outputs": n_classes, "task": task.spec(), "classes": task.spec()["classes"], "encoder": None,
            "source": source}
    return LoadedModel(model, task, meta)
