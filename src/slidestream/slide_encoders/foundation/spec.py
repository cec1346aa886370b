"""What slidestream needs to know about one slide foundation encoder, without loading weights.

A slide foundation encoder turns the tile features of one slide into one vector, but only the
tile features it was trained on mean anything to it: TITAN reads CONCH v1.5 features of 512-px
tiles at 20x laid out on a 2-D grid, GigaPath reads GigaPath tile features with their positions,
CHIEF reads CTransPath features at 10x. A spec therefore carries the *input contract*
(:class:`InputRequirement`) next to the architecture facts, and :mod:`.inputs` refuses a store
whose features break it, naming what is needed.

The spec duck-types the fields that :mod:`slidestream.encoders.weights` reads (``name``,
``weight_files``, ``hf_repo``, ``hf_repo_type``, ``key_map``), so weights are found (local file,
folder, Hugging Face cache folder) and checked key by key by the same code as patch encoders.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

import torch
from torch import Tensor, nn

from slidestream.encoders.spec import KeyMap

__all__ = ["InputRequirement", "SlideEncoderSpec", "SlideInput", "SlideModel", "canonical_name"]


def canonical_name(name: str) -> str:
    """``CONCH_v1.5`` / ``conch-v15`` / ``conchv1_5`` → ``conchv15``: encoder names as tools spell them."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


@dataclass(frozen=True)
class InputRequirement:
    """The tile features a slide encoder was trained on.

    ``patch_encoders`` are accepted encoder names (compared after :func:`canonical_name`, so
    TRIDENT's ``conch_v15`` and slidestream's ``conch-v1.5`` match); the first is the one to name
    in messages. ``mpp`` and ``tile_size`` are the tile geometry at which those features must have
    been extracted (``mpp_tolerance`` relative); ``uses_coords`` marks models whose output depends
    on tile positions, which then also need the level-0 tile size.
    """

    patch_encoders: tuple[str, ...]
    feature_dim: int
    mpp: float
    tile_size: int
    uses_coords: bool = False
    mpp_tolerance: float = 0.1
    note: str = ""

    @property
    def magnification(self) -> str:
        return f"{10.0 / self.mpp:g}x"

    def describe(self) -> str:
        """``conch-v1.5 features (768-d) of 512-px tiles at 20x (0.5 um/px)`` (+ coordinates)."""
        text = (
            f"{self.patch_encoders[0]} features ({self.feature_dim}-d) of {self.tile_size}-px tiles "
            f"at {self.magnification} ({self.mpp:g} um/px)"
        )
        return text + (" with their coordinates" if self.uses_coords else "")

    def accepts(self, encoder: str) -> bool:
        return canonical_name(encoder) in {canonical_name(e) for e in self.patch_encoders}


@dataclass(frozen=True)
class SlideInput:
    """One slide, as a slide encoder consumes it.

    ``features (N, D)`` float32; ``coords (N, 2)`` level-0 top-left ``(x, y)`` pixels;
    ``patch_size_level0`` the tile size in level-0 pixels (TRIDENT's coordinate attribute of the
    same name: 512 for 512-px tiles at 20x on a 20x slide, 1024 on a 40x slide).
    """

    features: Tensor
    coords: Tensor | None = None
    patch_size_level0: float | None = None


class SlideModel(Protocol):
    """What every slide encoder module offers besides ``nn.Module``."""

    def embed(self, slide: SlideInput) -> Tensor:  # pragma: no cover - protocol
        """The slide embedding ``(D,)`` of one slide."""
        ...


@dataclass(frozen=True)
class SlideEncoderSpec:
    """Facts about one slide foundation encoder; ``build()`` gives the architecture, no weights."""

    name: str
    family: str
    description: str
    embed_dim: int
    requirement: InputRequirement
    expected_params: int
    published_params: int | None
    published_source: str
    builder: Callable[..., nn.Module] = field(repr=False, compare=False)
    hf_repo: str | None = None
    hf_repo_type: Literal["model", "space", "dataset"] = "model"
    weight_files: tuple[str, ...] = ()
    key_map: KeyMap = field(default_factory=KeyMap)
    license: str = "unknown"
    gated: bool = False
    default_precision: Literal["fp32", "fp16", "bf16"] = "fp32"
    weights_url: str = ""
    notes: str = ""
    config_file: str | None = None
    config_keys: tuple[str, ...] = ()

    def build(self, **config: object) -> nn.Module:
        """The architecture with random (or, under ``torch.device('meta')``, no) parameters.

        ``config`` overrides architecture settings read from the release's config file (only
        ``config_keys`` are passed, e.g. MADELEINE's ``n_heads``).
        """
        return self.builder(**config)

    @property
    def weights_source(self) -> str:
        if self.hf_repo is not None:
            prefix = "" if self.hf_repo_type == "model" else f"{self.hf_repo_type}s/"
            return f"https://huggingface.co/{prefix}{self.hf_repo}"
        return self.weights_url or "see notes"


def count_params(module: nn.Module) -> int:
    """Distinct parameters (a tensor shared by several modules counts once)."""
    seen: dict[int, int] = {}
    for p in module.parameters():
        seen[id(p)] = p.numel()
    return sum(seen.values())


def as_float_tensor(x: object) -> Tensor:
    return torch.as_tensor(x, dtype=torch.float32)
