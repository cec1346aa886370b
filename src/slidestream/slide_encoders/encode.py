"""Embed a folder of slide stores with PANTHER, COBRA or mean pooling: the cohort entry point.

``slidestream slide-encode`` is a thin wrapper over :func:`encode_cohort`; Python users call it
directly::

    from slidestream.slide_encoders.encode import PantherOptions, encode_cohort

    table = encode_cohort("out/", "panther", ["uni"], "cohort.parquet", fit=True,
                          prototypes="protos.npz", panther=PantherOptions(k=16))

Every option is checked before any store is read (:func:`check_options`), so a typo fails in a
second instead of after minutes of prototype fitting or pre-training. Progress notes (slides left
out of fitting, what was fitted) go to ``notify(label, text)``; the CLI prints them, a notebook may
ignore them. Errors are :class:`~slidestream.errors.ConfigError` naming the option both ways
(``out_type (--out-type)``) because the same message reaches Python and command-line users.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from slidestream.errors import ConfigError

if TYPE_CHECKING:  # the torch-heavy modules load only when a cohort is encoded
    import pandas as pd

    from slidestream.slide_encoders.cohort import EncoderSpec, SlideFn

Method = Literal["panther", "cobra", "mean"]
METHODS: tuple[str, ...] = ("panther", "cobra", "mean")
Notify = Callable[[str, str], None]
"""``notify(label, text)``: ``label`` is a short warning head (``"skipped for prototypes"``) or ``""``."""


def _quiet(label: str, text: str) -> None:
    pass


@dataclass(frozen=True)
class PantherOptions:
    """PANTHER settings; the defaults are the official code's (``em_iter=1, tau=0.001, eps=0.1``)."""

    k: int = 16
    samples_per_prototype: int = 100_000
    em_iter: int = 1
    tau: float = 0.001
    eps: float = 0.1
    out_type: str = "allcat"
    seed: int = 0


@dataclass(frozen=True)
class CobraOptions:
    """COBRA settings: ``preset`` picks the architecture (``cobra1``/``cobra2``; None: from the file,
    or cobra2 when pre-training); ``epochs`` and ``seed`` apply to pre-training (``fit=True``)."""

    preset: Literal["cobra1", "cobra2"] | None = None
    top_k: int | None = None
    aggregate: str | None = None
    epochs: int = 100
    device: str = "cpu"
    seed: int = 0


def check_options(
    method: str,
    *,
    panther: PantherOptions = PantherOptions(),
    cobra: CobraOptions = CobraOptions(),
    mean_mode: str = "mean",
) -> None:
    """Refuse bad settings before any store is read (not after minutes of fitting)."""
    from slidestream.slide_encoders.panther import embedding_dim

    if method not in METHODS:
        raise ConfigError(None, f"method {method!r}: choose {', '.join(METHODS)}")
    try:
        embedding_dim(2, 2, panther.out_type)
    except ValueError as exc:
        raise ConfigError(None, f"out_type (--out-type): {exc}") from None
    if mean_mode not in ("mean", "meanmax"):
        raise ConfigError(None, f"mean_mode (--mean-mode) {mean_mode!r}: choose mean or meanmax")
    if panther.tau <= 0 or panther.eps <= 0:
        raise ConfigError(None, f"--tau and --eps must be positive (got {panther.tau}, {panther.eps})")
    for name, value in (("k", panther.k), ("em_iter", panther.em_iter), ("epochs", cobra.epochs),
                        ("top_k", cobra.top_k)):
        if value is not None and value < 1:
            raise ConfigError(None, f"{name} (--{name.replace('_', '-')}) must be at least 1 (got {value})")
    if cobra.preset not in (None, "cobra1", "cobra2"):
        raise ConfigError(None, f"preset (--preset) {cobra.preset!r}: choose cobra1 or cobra2")


def encode_cohort(
    stores: str | Path,
    method: Method,
    encoders: Sequence[str],
    table: str | Path,
    *,
    fit: bool = False,
    prototypes: str | Path | None = None,
    checkpoint: str | Path | None = None,
    panther: PantherOptions = PantherOptions(),
    cobra: CobraOptions = CobraOptions(),
    mean_mode: str = "mean",
    weights: str | Path | None = None,
    device: str = "cpu",
    notify: Notify = _quiet,
) -> pd.DataFrame:
    """Embed every ``<slide_id>.zarr`` under ``stores`` into ``slide_embeddings/<method>`` and write
    the one-row-per-slide Parquet ``table``; returns it (``status`` is ``ok`` or ``failed``).

    ``encoders`` are patch-encoder names in the stores (``NAME`` or ``NAME=MODEL_NAME``; several
    only for COBRA). PANTHER needs ``prototypes`` (fitted and written there with ``fit=True``);
    COBRA needs ``checkpoint`` (pre-trained and written there with ``fit=True``). A slide that
    fails is a ``failed`` row, never a lost cohort. Any other ``method`` is a slide foundation
    encoder (``slidestream.slide_encoders.foundation``: TITAN, PRISM, GigaPath, ...), loaded from
    ``weights`` and run on ``device``.
    """
    from slidestream.slide_encoders import cohort

    if method not in METHODS:
        from slidestream.slide_encoders import foundation

        if method not in {spec.name for spec in foundation.all_slide_specs()}:
            names = (*METHODS, *(spec.name for spec in foundation.all_slide_specs()))
            raise ConfigError(None, f"method {method!r}: choose {', '.join(names)}")
        if len(encoders) != 1:
            raise ConfigError(None, f"--encoder: {method} takes exactly one patch encoder")
        result = foundation.encode_cohort(cohort.find_stores(stores), method, encoders[0],
                                          None if weights is None else str(weights), device=device)
        cohort.write_cohort_table(result, table)
        return result
    check_options(method, panther=panther, cobra=cobra, mean_mode=mean_mode)
    paths = cohort.find_stores(stores)
    specs = [cohort.EncoderSpec.parse(e) for e in encoders]
    if method != "cobra" and len(specs) != 1:
        raise ConfigError(None, f"--encoder: {method} takes exactly one patch encoder")
    provenance: dict[str, Any] = {}
    if method == "panther":
        slide_fn, provenance = panther_slide_fn(paths, specs[0], fit=fit, prototypes=prototypes,
                                                options=panther, notify=notify)
    elif method == "cobra":
        slide_fn, provenance = cobra_slide_fn(paths, specs, fit=fit, checkpoint=checkpoint,
                                              options=cobra, notify=notify)
    else:
        slide_fn = cohort.mean_slide_fn(mean_mode)
    result = cohort.encode_stores(paths, method, specs, slide_fn, provenance=provenance)
    cohort.write_cohort_table(result, table)
    return result


def panther_slide_fn(
    paths: Sequence[Path],
    spec: EncoderSpec,
    *,
    fit: bool,
    prototypes: str | Path | None,
    options: PantherOptions = PantherOptions(),
    notify: Notify = _quiet,
) -> tuple[SlideFn, dict[str, Any]]:
    """Fit (and save) or load the prototypes; the per-slide PANTHER function and its provenance."""
    from slidestream.slide_encoders import cohort
    from slidestream.slide_encoders.prototypes import load_prototypes

    if prototypes is None:
        raise ConfigError(None, "--prototypes: required for panther (the file to write with --fit)")
    if fit:
        protos = cohort.fit_cohort_prototypes(list(paths), spec.store_name, options.k,
                                              samples_per_prototype=options.samples_per_prototype,
                                              seed=options.seed)
        prototypes = protos.save(prototypes)
        for sid, reason in protos.provenance.get("skipped", {}).items():
            notify("skipped for prototypes", f"{sid}: {reason}")
        notify("", f"prototypes: K={protos.k} from {protos.provenance['n_sampled']} tiles of "
                   f"{protos.provenance['n_slides']} slide(s) → {prototypes}")
    else:
        protos = load_prototypes(prototypes)
    slide_fn = cohort.panther_slide_fn(protos, em_iter=options.em_iter, tau=options.tau, eps=options.eps,
                                       out_type=options.out_type)
    return slide_fn, {"prototypes": str(prototypes)}


def cobra_slide_fn(
    paths: Sequence[Path],
    specs: Sequence[EncoderSpec],
    *,
    fit: bool,
    checkpoint: str | Path | None,
    options: CobraOptions = CobraOptions(),
    notify: Notify = _quiet,
) -> tuple[SlideFn, dict[str, Any]]:
    """Pre-train and save, or load strictly (architecture from the file unless a preset is given)."""
    from slidestream.slide_encoders import cohort
    from slidestream.slide_encoders.cobra import cobra_i_config, cobra_ii_config
    from slidestream.slide_encoders.cobra_weights import load_cobra, save_cobra

    if checkpoint is None:
        raise ConfigError(None, "--checkpoint: required for cobra (the file to write with --fit)")
    checkpoint = Path(checkpoint)
    make_config = cobra_i_config if options.preset == "cobra1" else cobra_ii_config
    if fit:
        model, trained = cohort.fit_cobra(list(paths), list(specs), make_config, epochs=options.epochs,
                                          device=options.device, seed=options.seed)
        for sid, reason in trained["skipped"].items():
            notify("skipped for pre-training", f"{sid}: {reason}")
        save_cobra(model, checkpoint, extra={"encoders": [s.store_name for s in specs], **trained})
        notify("", f"cobra: pre-trained {trained['epochs']} epochs on {trained['pretrained_on']} slides "
                   f"(final loss {trained['final_loss']:.4f}) → {checkpoint}")
    else:
        model = load_cobra(checkpoint, None if options.preset is None else make_config())
    known = set(model.config.input_dims)
    aggregate = options.aggregate
    unknown = [s.model_name for s in specs if s.model_name not in known and s.model_name != aggregate]
    if len(unknown) == len(specs):
        raise ConfigError(
            checkpoint, f"the model has no projection for {', '.join(unknown)} "
            f"(it knows {', '.join(sorted(known))}); map a store encoder with NAME=MODEL_NAME"
        )
    if aggregate is not None and aggregate not in {s.model_name for s in specs}:
        raise ConfigError(None, f"--aggregate {aggregate!r} is not one of the --encoder names")
    slide_fn = cohort.cobra_slide_fn(model, aggregate=aggregate, top_k=options.top_k, device=options.device)
    return slide_fn, {"checkpoint": str(checkpoint)}
