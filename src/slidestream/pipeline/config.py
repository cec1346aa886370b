"""The run config: one validated model for ``slidestream run``, the Snakefile and dask runs.

Why one model: the three ways of running the pipeline must produce the same stores, so they read
the same file through the same validation; the stage parameters inside it (``tissue``, ``tiling``,
``selection``) are the very models the stages record in the store. A typo fails before any slide
is touched, with the key and what it allows (:func:`load_config` raises a ``ConfigError`` listing
every problem). Relative paths are resolved against the config file's folder, so a config means
the same run from any working directory (a Snakemake job, a cluster node, a container).

Layout (every section but ``slides`` and ``out`` is optional; see ``configs/`` for commented
examples)::

    slides: [folder | list.csv | slide files]   out: folder of <slide_id>.zarr stores
    backend, default_mpp, overwrite, write_images, shard: "i/n"
    tissue: TissueParams          tiling: TilingParams (default: the encoder's native mpp/size)
    selection: SelectionParams    features: encoder, weights, device, precision, batch_size, ...
    slide_embedding: method mean|panther (+ panther: k, prototypes, ...)
    mil: labels, out, train: {TrainConfig fields}
    dask: enabled, scheduler, n_workers, threads_per_worker, memory_limit
    lock: stale_after_s, wait_s
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from slidestream.errors import ConfigError
from slidestream.io.discovery import MAX_LEVEL0_MPP
from slidestream.pipeline.shard import Shard
from slidestream.pipeline.stage_names import COHORT_STAGES, PER_SLIDE_STAGES, STAGES  # noqa: F401 (re-exported)
from slidestream.tiling.params import SelectionParams, TilingParams
from slidestream.tissue.params import TissueParams

_DEVICE = re.compile(r"^(cpu|mps|cuda(:\d+)?)$")


def check_device(value: str) -> str | None:
    """Why ``value`` is not a device slidestream can run on (None when it is one)."""
    if not _DEVICE.match(value):
        return f"device {value!r}; allowed: cpu, cuda, cuda:N, mps"
    return None


def _resolve(value: Path | None, info: ValidationInfo) -> Path | None:
    """Relative paths are relative to the config file's folder (given as validation context)."""
    if value is None:
        return None
    value = Path(value).expanduser()
    base = (info.context or {}).get("base")
    return value if value.is_absolute() or base is None else Path(os.path.normpath(Path(base) / value))


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class FeaturesConfig(_Section):
    """Patch features: which encoder, its local weights, and how to run it."""

    encoder: str = Field("handcrafted", description="Registry name (see `slidestream encoders`); canonicalised.")
    weights: Path | None = Field(None, description="Local weights file or folder (HF cache folders work).")
    random_init: bool = Field(False, description="Random weights: benchmarks and tests only (recorded as such).")
    device: str = Field("cpu", description="cpu, cuda, cuda:N or mps.")
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    batch_size: int = Field(64, ge=1)
    workers: int = Field(4, ge=1, description="Threads reading and decoding tiles.")
    dtype: Literal["float32", "float16"] = "float32"
    fast_read: bool = True
    selection: str | None = Field(None, description="Embed only this stored selection (its method name).")
    channels_last: bool = False
    compile: bool = False

    _resolve_weights = field_validator("weights")(_resolve)

    @field_validator("encoder")
    @classmethod
    def _known_encoder(cls, value: str) -> str:
        # the registry imports torch: only here, not for every config read
        from slidestream.encoders.registry import get_spec, list_encoders

        try:
            return get_spec(value).name
        except ConfigError:
            raise ValueError(f"unknown encoder {value!r}; allowed: {', '.join(list_encoders())}") from None

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        if why := check_device(value):
            raise ValueError(why)
        return value

    def options(self) -> Any:
        """The :class:`~slidestream.extraction.ExtractOptions` of this section."""
        from slidestream.extraction import ExtractOptions

        return ExtractOptions(batch_size=self.batch_size, workers=self.workers, selection=self.selection,
                              dtype=self.dtype, fast_read=self.fast_read)


class PantherConfig(_Section):
    """PANTHER prototypes (fitted once per cohort) and the per-slide EM settings."""

    k: int = Field(16, ge=1)
    samples_per_prototype: int = Field(100_000, ge=1)
    seed: int = 0
    em_iter: int = Field(1, ge=1)
    tau: float = Field(0.001, gt=0)
    eps: float = Field(0.1, gt=0)
    out_type: str = "allcat"
    prototypes: Path | None = Field(None, description="Default OUT/prototypes/panther-<encoder>-k<k>.npz; an existing file is used as is.")

    _resolve_prototypes = field_validator("prototypes")(_resolve)


class SlideEmbeddingConfig(_Section):
    method: Literal["mean", "panther"] = "mean"
    mean_mode: Literal["mean", "meanmax"] = "mean"
    panther: PantherConfig = Field(default_factory=PantherConfig)


class MilConfig(_Section):
    """Cohort MIL cross-validation on the stores (``slidestream train``'s settings)."""

    labels: Path = Field(description="CSV/TSV/Parquet: slide_id, patient_id, label | time, event.")
    out: Path | None = Field(None, description="Run folder; default OUT/mil/<model>.")
    train: dict[str, Any] = Field(default_factory=dict, description="TrainConfig fields (model, folds, epochs, ...).")

    _resolve_paths = field_validator("labels", "out")(_resolve)

    @field_validator("train")
    @classmethod
    def _valid_train(cls, value: dict[str, Any]) -> dict[str, Any]:
        # imports torch: only when a mil section exists
        from slidestream.mil.config import TrainConfig

        for key in ("labels_path", "stores", "encoder"):
            if key in value:
                raise ValueError(f"{key} is set by the run (mil.labels, out, features.encoder), not in mil.train")
        try:
            TrainConfig(**value)
        except ValidationError as exc:
            raise ValueError("; ".join(_describe(e, TrainConfig) for e in exc.errors())) from None
        return value

    def train_config(self, encoder: str, labels: Path, stores: Path) -> Any:
        from slidestream.mil.config import TrainConfig

        return TrainConfig(**self.train, encoder=encoder, labels_path=str(labels), stores=str(stores))


class DaskConfig(_Section):
    """Tissue + tiling across slides on a dask cluster (extraction stays in the main process)."""

    enabled: bool = False
    scheduler: str | None = Field(None, description="Scheduler address (tcp://host:8786); None starts a LocalCluster.")
    n_workers: int | None = Field(None, ge=1, description="LocalCluster workers; default: CPU count.")
    threads_per_worker: int = Field(1, ge=1)
    memory_limit: str = "auto"


class LockConfig(_Section):
    stale_after_s: float = Field(120.0, gt=0, description="A lock whose heartbeat stopped this long ago is broken (heartbeat every stale_after_s/4).")
    wait_s: float = Field(300.0, ge=0, description="After the other slides, wait at most this long in all for slides another live process holds; still held then: busy, exit 1.")


class RunConfig(_Section):
    """Everything one pipeline run needs; the stage sections are the stages' own parameter models."""

    slides: list[Path] = Field(description="Slide files, folders (walked) or .txt/.csv slide lists (path, mpp).")
    out: Path
    backend: Literal["auto", "openslide", "tiffslide", "wsidicom", "czi"] = "auto"
    default_mpp: float | None = Field(None, gt=0, le=MAX_LEVEL0_MPP)
    overwrite: bool = False
    write_images: bool = True
    shard: str | None = Field(None, description="i/n: only this deterministic share of the slides.")
    tissue: TissueParams = Field(default_factory=TissueParams)
    tiling: TilingParams | None = None
    selection: SelectionParams | None = None
    features: FeaturesConfig | None = Field(default_factory=FeaturesConfig)
    slide_embedding: SlideEmbeddingConfig | None = None
    mil: MilConfig | None = None
    dask: DaskConfig = Field(default_factory=DaskConfig)
    lock: LockConfig = Field(default_factory=LockConfig)

    @field_validator("slides", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str | Path) else value

    @field_validator("slides")
    @classmethod
    def _resolve_slides(cls, value: list[Path], info: ValidationInfo) -> list[Path]:
        if not value:
            raise ValueError("give at least one slide file, folder or slide list")
        return [_resolve(p, info) for p in value]  # type: ignore[misc]

    _resolve_out = field_validator("out")(_resolve)

    @field_validator("shard")
    @classmethod
    def _valid_shard(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return str(Shard.parse(value))
        except ConfigError as exc:
            raise ValueError(exc.reason.removeprefix(f"shard={value!r}: ")) from None

    @model_validator(mode="after")
    def _consistent(self) -> RunConfig:
        if self.features is None and (self.slide_embedding is not None or self.mil is not None):
            raise ValueError("slide_embedding and mil need features (set features.encoder)")
        wanted = self.features.selection if self.features else None
        if wanted is not None and (self.selection is None or self.selection.name != wanted):
            have = self.selection.name if self.selection else "none"
            raise ValueError(f"features.selection={wanted!r} needs selection.method={wanted!r} (configured: {have})")
        return self

    # ------------------------------------------------------------------ derived values
    @property
    def encoder(self) -> str | None:
        return self.features.encoder if self.features else None

    def tiling_params(self) -> TilingParams:
        """``tiling``, or the encoder's native mpp and tile size when the config leaves it out."""
        if self.tiling is not None:
            return self.tiling
        if self.features is None:
            return TilingParams()
        from slidestream.encoders.registry import get_spec

        spec = get_spec(self.features.encoder)
        return TilingParams(mpp=spec.native_mpp, tile_size=spec.tile_size)

    def prototypes_path(self) -> Path:
        panther = self.slide_embedding.panther if self.slide_embedding else PantherConfig()
        if panther.prototypes is not None:
            return panther.prototypes.with_suffix(".npz")
        return self.out / "prototypes" / f"panther-{self.encoder}-k{panther.k}.npz"

    def mil_out(self) -> Path:
        if self.mil is None:
            raise ConfigError(None, "mil: not configured")
        model = self.mil.train.get("model", "abmil")
        return self.mil.out if self.mil.out is not None else self.out / "mil" / str(model)

    def stages(self) -> tuple[str, ...]:
        """The stages this config asks for, in order."""
        chosen = ["tissue", "tiles"]
        if self.features is not None:
            chosen.append("features")
        if self.slide_embedding is not None:
            if self.slide_embedding.method == "panther":
                chosen.append("prototypes")
            chosen.append("slide_embedding")
        if self.mil is not None:
            chosen.append("mil")
        return tuple(chosen)


# ---------------------------------------------------------------------------------- loading
def parse_override(text: str) -> tuple[list[str], Any]:
    """``tiling.mpp=1.0`` -> (["tiling", "mpp"], 1.0); values are YAML (numbers, null, [a, b])."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(None, f"--set {text!r}: expected key=value with a dotted key, e.g. tiling.mpp=1.0")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set each dotted key in a copy of ``data`` (creating sections that are absent or null)."""
    import copy

    data = copy.deepcopy(data)
    for text in overrides:
        keys, value = parse_override(text)
        node = data
        for part in keys[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[keys[-1]] = value
    return data


def load_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Read, override and validate a run config; every problem is listed in one ``ConfigError``."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError(path, f"cannot read the config: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(path, f"not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start}); "
                                "save the config as UTF-8") from None
    except yaml.YAMLError as exc:
        raise ConfigError(path, f"not valid YAML: {' '.join(str(exc).split())}") from None
    if not isinstance(data, dict):
        raise ConfigError(path, "a run config is a mapping of keys (slides, out, tiling, ...)")
    return config_from_dict(apply_overrides(data, overrides or []), base=path.resolve().parent, source=path)


def config_from_dict(data: dict[str, Any], *, base: str | Path | None = None,
                     source: str | Path | None = None) -> RunConfig:
    try:
        return RunConfig.model_validate(data, context={"base": Path(base) if base else None})
    except ValidationError as exc:
        problems = [_describe(e, RunConfig) for e in exc.errors()]
        raise ConfigError(source, "invalid run config:\n  " + "\n  ".join(problems)) from None


def _describe(error: Any, root: type[BaseModel]) -> str:
    """One line per problem: the dotted key, what is wrong, and what is allowed."""
    loc = [str(p) for p in error["loc"] if not str(p).startswith(("function-", "lax-or-strict"))]
    key = ".".join(loc) or "config"
    message = str(error["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if error["type"] == "extra_forbidden":
        model = _model_at(root, loc[:-1])
        allowed = ", ".join(model.model_fields) if model else "see the documentation"
        return f"{key}: unknown key; allowed keys: {allowed}"
    if error["type"] == "missing":
        return f"{key}: required"
    shown = error.get("input")
    if error["type"] in ("literal_error", "enum") or (not isinstance(shown, dict | list) and shown is not None):
        return f"{key}: {message} (got {shown!r})"
    return f"{key}: {message}"


def _model_at(root: type[BaseModel], loc: list[str]) -> type[BaseModel] | None:
    """The model class behind a dotted location (to list the keys it accepts)."""
    model: type[BaseModel] | None = root
    for part in loc:
        field = model.model_fields.get(part) if model else None
        if field is None:
            return None
        model = next((a for a in (field.annotation, *get_args(field.annotation))
                      if isinstance(a, type) and issubclass(a, BaseModel)), None)
    return model
