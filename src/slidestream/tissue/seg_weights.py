"""Local weights for the deep segmenters: find the release file, read it safely, load it strictly.

Nothing here reaches the network. The file is looked for, in order: the path given (``--weights``:
the file, or a folder holding it); ``$SLIDESTREAM_WEIGHTS`` (the file at its root, in a
``<model>/`` or ``hest-tissue-seg/`` subfolder, or in a hub-cache layout below it); the Hugging
Face hub cache (``models--MahmoodLab--hest-tissue-seg/snapshots/*/``, i.e. what
``huggingface-cli download MahmoodLab/hest-tissue-seg`` left there). Encoders have their own
resolver (``encoders/weights.py``); tissue sits below encoders and may not import it, and the
two lookups differ (one fixed file name per model here, a spec's file list there).

Reading is ``torch.load(weights_only=True)``: no pickled code runs, so GrandQC's Zenodo files
(whole pickled modules) are refused with the conversion to do. Loading is strict: the message
names the file and the first missing, unexpected or mis-shaped keys.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from slidestream.errors import WeightsError
from slidestream.tissue.models import HF_REPO, SegModelSpec
from slidestream.weight_files import find_in_snapshots, hf_hub_cache, sha256_file

ENV_WEIGHTS = "SLIDESTREAM_WEIGHTS"
RANDOM_INIT = "random-init"
_SHOW = 5


def _hub_folder() -> str:
    return "models--" + HF_REPO.replace("/", "--")


def _in_folder(folder: Path, spec: SegModelSpec) -> Path | None:
    for sub in (folder, folder / spec.name, folder / "hest-tissue-seg"):
        if (sub / spec.weight_file).is_file():
            return sub / spec.weight_file
    return find_in_snapshots(folder, [spec.weight_file]) or find_in_snapshots(folder / _hub_folder(), [spec.weight_file])


def searched(spec: SegModelSpec, path: str | os.PathLike[str] | None) -> str:
    env = os.environ.get(ENV_WEIGHTS)
    places = ([f"--weights {path}"] if path else []) + [
        f"${ENV_WEIGHTS}={env}" if env else f"${ENV_WEIGHTS} (not set)",
        str(hf_hub_cache() / _hub_folder() / "snapshots" / "*"),
    ]
    return "; ".join(places)


def resolve(spec: SegModelSpec, path: str | os.PathLike[str] | None = None) -> Path:
    """The local release file of ``spec``; ``WeightsError`` naming where to get it otherwise."""
    if path is not None:
        given = Path(path).expanduser()
        if given.is_file():
            return given
        if given.is_dir():
            found = _in_folder(given, spec)
            if found:
                return found
            raise WeightsError(given, f"{spec.name}: no {spec.weight_file} in this folder; get it from {spec.source}")
        raise WeightsError(given, f"{spec.name}: weights path does not exist; get {spec.weight_file} from {spec.source}")
    env = os.environ.get(ENV_WEIGHTS)
    if env and Path(env).expanduser().is_dir():
        found = _in_folder(Path(env).expanduser(), spec)
        if found:
            return found
    found = find_in_snapshots(hf_hub_cache() / _hub_folder(), [spec.weight_file])
    if found:
        return found
    raise WeightsError(None, f"{spec.name} segmenter: no local weights ({spec.weight_file}). Weights are never "
                             f"downloaded at run time: get the file from {spec.source} and pass --weights, or put "
                             f"it under ${ENV_WEIGHTS} or the Hugging Face cache. Looked in: {searched(spec, path)}")




def read_release(spec: SegModelSpec, path: Path) -> dict[str, Any]:
    """The release file as module keys (``to_model_keys`` applied), read without running code."""
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickled module, truncated download, not a torch file, ...
        hint = ""
        if "weights_only" in str(exc) or "Unpickl" in type(exc).__name__:
            hint = (" (a pickled module, like GrandQC's Zenodo files? Convert it once, in an environment you trust: "
                    "torch.save(torch.load(f, weights_only=False).state_dict(), 'state_dict.pth'))")
        raise WeightsError(path, f"{spec.name}: cannot read weights{hint}: {type(exc).__name__}: {str(exc)[:200]}") from exc
    if spec.name == "hest":
        if not isinstance(obj, dict) or not isinstance(obj.get("state_dict"), dict):
            raise WeightsError(path, "hest: not a Lightning checkpoint (no 'state_dict' entry), as deeplabv3_seg_v4.ckpt is")
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(path, f"{spec.name}: not a state dict of tensors")
    return spec.to_model_keys(obj)


def _names(keys: list[str]) -> str:
    return ", ".join(keys[:_SHOW]) + (f" (+{len(keys) - _SHOW} more)" if len(keys) > _SHOW else "")


def load_strict(model: Any, state_dict: dict[str, Any], spec: SegModelSpec, path: Path) -> None:
    """Load ``state_dict`` into ``model`` strictly, or a ``WeightsError`` saying what differs."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    wrong = [f"{k} (file {tuple(state_dict[k].shape)}, model {tuple(v.shape)})"
             for k, v in expected.items() if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)]
    if missing or unexpected or wrong:
        parts = [f"{len(x)} {what}: {_names(x)}" for x, what in ((missing, "missing"), (unexpected, "unexpected"),
                                                                  (wrong, "with the wrong shape")) if x]
        raise WeightsError(path, f"weights do not match the {spec.name} segmenter (strict load): " + "; ".join(parts))
    model.load_state_dict(state_dict, strict=True)


def build_model(spec: SegModelSpec, weights: str | os.PathLike[str] | None = None, *,
                random_init: bool = False) -> tuple[Any, str, str | None]:
    """(model in eval mode, weights SHA-256 or ``random-init``, file path or None).

    ``random_init`` (tests, benchmarks) builds seeded random weights and reads no file.
    """
    import torch

    if random_init:
        torch.manual_seed(0)
        model = spec.build()
        return model.eval(), RANDOM_INIT, None
    path = resolve(spec, weights)
    state_dict = read_release(spec, path)
    model = spec.build()
    load_strict(model, state_dict, spec, path)
    return model.eval(), sha256_file(path), str(path)


def save_release(spec: SegModelSpec, model: Any, path: str | os.PathLike[str]) -> Path:
    """Write ``model``'s weights in the release's file layout (random-weights files for tests)."""
    import torch

    torch.save(spec.to_release_keys(model.state_dict()), Path(path))
    return Path(path)
