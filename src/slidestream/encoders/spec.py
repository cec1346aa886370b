"""What the pipeline needs to know about one patch encoder, without touching any weights.

A spec is the single place where an encoder's facts live: how many pixels to read from the
slide and at which mpp, how to turn that tile into the model input, which vector counts as the
embedding, how many parameters the architecture must have, and where its released weights are
usually found. The extraction stage plans tile reads from a spec alone (``tile_size`` and
``native_mpp``), so it never has to build or load a model to know what to read.

``expected_params`` is the exact count obtained by building the architecture here; the tests
check it, so an accidental change to a constructor argument (which would make the official
checkpoint fail to load) is caught without the checkpoint. ``published_params`` is the figure
from the release or paper, kept separately because it is rounded and sometimes counts a
different module (see ``published_source``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

Interpolation = Literal["bilinear", "bicubic"]
Precision = Literal["fp32", "fp16", "bf16"]

#: How the model output becomes one vector per tile (see ``pooling.py``).
#: ``cls``: the class token after the final norm; ``cls+mean``: class token concatenated with the
#: mean of the patch tokens (prefix tokens excluded); ``attn-pool``: a learned attentional pooler;
#: ``gap``: global average pool of a CNN feature map; ``stats``: hand-crafted statistics.
Pooling = Literal["cls", "cls+mean", "attn-pool", "gap", "stats"]
POOLINGS: tuple[str, ...] = ("cls", "cls+mean", "attn-pool", "gap", "stats")

StateDict = dict[str, torch.Tensor]


@dataclass(frozen=True)
class ResizeRecipe:
    """Tile → model input, the way the reference pipeline does it.

    ``resize_to`` is the size after resizing: the shorter side (torchvision ``Resize(int)``,
    ``mode="shorter_side"``) or both sides (``Resize((s, s))``, ``mode="square"``). ``crop`` is a
    centre crop applied afterwards, or ``None``. A tile that already has the target size is passed
    through untouched, so at the native tile size most recipes are the identity.
    """

    resize_to: int
    crop: int | None
    interpolation: Interpolation
    mode: Literal["shorter_side", "square"] = "shorter_side"
    antialias: bool = True
    source: str = ""


def _no_fixup(state_dict: StateDict, model: nn.Module) -> StateDict:
    return state_dict


@dataclass(frozen=True)
class KeyMap:
    """How a released checkpoint's key names become this module's key names.

    Applied in order: ``strip_prefixes`` (each key loses any of these leading prefixes, repeatedly,
    e.g. ``module.`` from DataParallel), ``select_prefix`` (if any key starts with it, keep only
    those keys and strip it, e.g. CONCH's ``visual.``), ``drop`` (regexes of keys that are known
    not to belong to the image encoder and are deliberately left out, e.g. a classifier head),
    ``rename`` (regex substitutions), then ``fixup`` (tensor surgery such as resampling a position
    embedding). Everything that survives must match the module exactly: loading is strict.
    """

    strip_prefixes: tuple[str, ...] = ("module.",)
    select_prefix: str | None = None
    drop: tuple[str, ...] = ()
    rename: tuple[tuple[str, str], ...] = ()
    fixup: Callable[[StateDict, nn.Module], StateDict] = field(default=_no_fixup, repr=False)


@dataclass(frozen=True)
class EncoderSpec:
    """Facts about one patch encoder; ``build()`` gives the architecture with no weights."""

    name: str
    family: str
    description: str
    embed_dim: int
    input_size: int
    tile_size: int
    native_mpp: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize: ResizeRecipe
    pooling: Pooling
    expected_params: int
    published_params: int | None
    published_source: str
    builder: Callable[[], nn.Module] = field(repr=False, compare=False)
    hf_repo: str | None = None
    hf_repo_type: Literal["model", "space", "dataset"] = "model"
    weight_files: tuple[str, ...] = ()
    gated: bool = False
    license: str = "unknown"
    default_precision: Precision = "fp32"
    key_map: KeyMap = field(default_factory=KeyMap)
    num_prefix_tokens: int = 1
    published_rtol: float = 0.02
    weights_public: bool = True
    requires_weights: bool = True
    notes: str = ""
    extra: Mapping[str, object] = field(default_factory=dict, compare=False)

    def build(self) -> nn.Module:
        """The architecture with freshly initialised (or meta) parameters and no checkpoint.

        Call it inside ``with torch.device("meta"):`` to get shapes and key names for free.
        """
        return self.builder()

    @property
    def weights_source(self) -> str:
        """Where a person would download the weights from (for messages and the CLI)."""
        if not self.weights_public:
            return "not publicly released"
        if self.hf_repo is None:
            return str(self.extra.get("weights_url", "see notes"))
        prefix = "" if self.hf_repo_type == "model" else f"{self.hf_repo_type}s/"
        return f"https://huggingface.co/{prefix}{self.hf_repo}"
