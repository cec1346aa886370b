"""``slidestream slide-encode`` and ``slidestream probe``: slide embeddings and their linear probes.

``slide-encode`` embeds a directory of stores (PANTHER, COBRA, mean, and the slide foundation
encoders TITAN, PRISM, GigaPath, CHIEF, MADELEINE, FEATHER with ``--weights``) into
``slide_embeddings/<method>`` and a cohort Parquet table; PANTHER also stores each tile's prototype (``tile_scores/
panther_prototype``) and, with ``--maps``, draws prototype maps. ``probe`` cross-validates a
linear (or Cox) model on the cohort table with the MIL labels table and patient folds.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.markup import escape

from slidestream.cli._app import app
from slidestream.errors import ConfigError, SlideStreamError
from slidestream.pipeline.config import check_device

if TYPE_CHECKING:  # the command imports torch-heavy modules only when it runs
    from slidestream.slide_encoders.cohort import EncoderSpec, SlideFn


class Method(StrEnum):
    panther = "panther"
    cobra = "cobra"
    mean = "mean"
    # slide foundation encoders (slidestream.slide_encoders.foundation; `slidestream encoders`)
    titan = "titan"
    prism = "prism"
    gigapath = "gigapath"
    gigapath_trident = "gigapath-trident"
    chief = "chief"
    madeleine = "madeleine"
    feather = "feather"
    feather_uni2 = "feather-uni2"
    feather_uni = "feather-uni"


_FOUNDATION = {m for m in Method if m not in (Method.panther, Method.cobra, Method.mean)}


class Preset(StrEnum):
    cobra1 = "cobra1"
    cobra2 = "cobra2"


@app.command("slide-encode")
def slide_encode(
    method: Method = typer.Option(..., "--method", help="Slide encoder."),
    stores: Path = typer.Option(..., "--stores", help="Directory of <slide_id>.zarr stores."),
    encoder: list[str] = typer.Option(
        ...,
        "--encoder",
        help="Patch encoder in the stores; NAME or NAME=MODEL_NAME; repeat for COBRA.",
    ),
    table: Path = typer.Option(..., "--table", help="Cohort Parquet table to write."),
    fit: bool = typer.Option(
        False, "--fit", help="Fit on these stores first: PANTHER prototypes, or COBRA pre-training."
    ),
    prototypes: Path | None = typer.Option(None, "--prototypes", help="PANTHER prototypes (.npz)."),
    k: int = typer.Option(16, "--k", min=1, help="PANTHER: number of prototypes when fitting."),
    samples_per_prototype: int = typer.Option(
        100_000, help="PANTHER: sample budget per prototype."
    ),
    em_iter: int = typer.Option(1, min=1, help="PANTHER: EM iterations (code default 1)."),
    tau: float = typer.Option(0.001, help="PANTHER: prior strength τ (code default 0.001)."),
    eps: float = typer.Option(0.1, help="PANTHER: prior variance ε (code default 0.1)."),
    out_type: str = typer.Option("allcat", help="PANTHER: embedding layout."),
    seed: int = typer.Option(0, help="Seed for sampling and K-means."),
    checkpoint: Path | None = typer.Option(
        None, "--checkpoint", help="COBRA weights (local); with --fit, the file to write."
    ),
    preset: Preset | None = typer.Option(
        None, help="COBRA architecture: of released weights, or to pre-train (default cobra2)."
    ),
    top_k: int | None = typer.Option(None, min=1, help="COBRA: pool only the top-k attended tiles."),
    aggregate: str | None = typer.Option(
        None, help="COBRA: encoder whose features are pooled (default: the first --encoder)."
    ),
    epochs: int = typer.Option(100, min=1, help="COBRA --fit: pre-training epochs."),
    device: str = typer.Option("cpu", help="COBRA / foundation: torch device (cpu, cuda, mps)."),
    mean_mode: str = typer.Option("mean", help="Mean pooling: mean or meanmax."),
    maps: Path | None = typer.Option(
        None,
        "--maps",
        help="PANTHER: write prototype maps (<slide_id>.panther_prototype.png/.geojson) here.",
    ),
    slides: Path | None = typer.Option(None, help="Folder holding the slide files, if they moved."),
    as_json: bool = typer.Option(False, "--json", help="Also print one record per slide (status, error) as JSON on stdout."),
    weights: Path | None = typer.Option(
        None, "--weights", help="Slide foundation encoder weights: file, folder or HF cache folder."
    ),
) -> None:
    """Embed every slide store, write slide_embeddings/<method> and a one-row-per-slide table."""
    from slidestream.slide_encoders import cohort

    console = Console(stderr=True, soft_wrap=True)  # error lines stay greppable
    try:
        _check_options(out_type=out_type, mean_mode=mean_mode, tau=tau, eps=eps)
        if why := check_device(device):
            raise ConfigError(None, f"--device: {why}")
        paths = cohort.find_stores(stores)
        specs = [cohort.EncoderSpec.parse(e) for e in encoder]
        if method is not Method.cobra and len(specs) != 1:
            raise ConfigError(None, f"--encoder: {method.value} takes exactly one patch encoder")
        provenance: dict = {}
        if method in _FOUNDATION:
            from slidestream.slide_encoders.foundation import encode_cohort

            result = encode_cohort(paths, method.value, encoder[0], weights, device=device)
        elif method is Method.panther:
            slide_fn, provenance = _panther(
                paths,
                specs[0],
                fit,
                prototypes,
                k,
                samples_per_prototype,
                seed,
                console,
                em_iter=em_iter,
                tau=tau,
                eps=eps,
                out_type=out_type,
            )
        elif method is Method.cobra:
            slide_fn, provenance = _cobra(
                paths, specs, fit, checkpoint, preset, console,
                top_k=top_k, aggregate=aggregate, device=device, epochs=epochs, seed=seed,
            )
        else:
            slide_fn = cohort.mean_slide_fn(mean_mode)
        if method not in _FOUNDATION:
            result = cohort.encode_stores(paths, method.value, specs, slide_fn, provenance=provenance)
        cohort.write_cohort_table(result, table)
    except SlideStreamError as exc:
        console.print(f"[red]error[/red] {escape(str(exc))}")
        raise typer.Exit(2) from exc
    failed = result[result["status"] != "ok"]
    console.print(
        f"{method.value}: {len(result) - len(failed)}/{len(result)} slides embedded → {table}"
    )
    for _, row in failed.iterrows():
        console.print(f"  [yellow]failed[/yellow] {row['slide_id']}: {row['error']}")
    problems = len(failed)
    if maps is not None and method is Method.panther:
        problems += _prototype_maps(result, maps, slides, console)
    if as_json:
        from slidestream.cli._common import print_json

        columns = [c for c in result.columns if c != "embedding"]  # the vectors are in the table file
        print_json({"command": "slide-encode", "method": method.value, "table": str(table),
                    "exit_code": int(bool(problems)),
                    "slides": json.loads(result[columns].to_json(orient="records"))})
    if problems:
        raise typer.Exit(1)


def _prototype_maps(result: Any, maps: Path, slides: Path | None, console: Console) -> int:
    """Prototype maps of the embedded slides; returns how many could not be drawn."""
    from slidestream.cli.heatmap import draw_maps
    from slidestream.slide_encoders.cohort import PROTOTYPE_SCORES

    ok = [Path(p) for p in result.loc[result["status"] == "ok", "store"]]
    drawn = draw_maps(ok, PROTOTYPE_SCORES, maps, slides_dir=slides)
    for outcome in drawn.failed:
        console.print(f"  [yellow]no prototype map[/yellow] {outcome.path.name}: {outcome.reason}")
    console.print(f"{drawn.count('ok')} prototype map(s) → {maps}")
    return len(drawn.failed)


def _panther(
    paths: list[Path],
    spec: EncoderSpec,
    fit: bool,
    prototypes: Path | None,
    k: int,
    samples_per_prototype: int,
    seed: int,
    console: Console,
    **em: Any,
) -> tuple[SlideFn, dict[str, Any]]:
    """Fit (and save) or load the prototypes; the per-slide PANTHER function."""
    from slidestream.slide_encoders import cohort
    from slidestream.slide_encoders.prototypes import load_prototypes

    if prototypes is None:
        raise ConfigError(None, "--prototypes: required for panther (the file to write with --fit)")
    if fit:
        protos = cohort.fit_cohort_prototypes(
            paths, spec.store_name, k, samples_per_prototype=samples_per_prototype, seed=seed
        )
        prototypes = protos.save(prototypes)
        skipped = protos.provenance.get("skipped", {})
        for sid, reason in skipped.items():
            console.print(f"  [yellow]skipped for prototypes[/yellow] {sid}: {reason}")
        console.print(
            f"prototypes: K={protos.k} from {protos.provenance['n_sampled']} tiles of "
            f"{protos.provenance['n_slides']} slide(s) → {prototypes}"
        )
    else:
        protos = load_prototypes(prototypes)
    return cohort.panther_slide_fn(protos, **em), {"prototypes": str(prototypes)}


def _check_options(*, out_type: str, mean_mode: str, tau: float, eps: float) -> None:
    """Refuse bad settings before any store is read (not after minutes of prototype fitting)."""
    from slidestream.slide_encoders.panther import embedding_dim

    try:
        embedding_dim(2, 2, out_type)
    except ValueError as exc:
        raise ConfigError(None, f"--out-type: {exc}") from None
    if mean_mode not in ("mean", "meanmax"):
        raise ConfigError(None, f"--mean-mode {mean_mode!r}: choose mean or meanmax")
    if tau <= 0 or eps <= 0:
        raise ConfigError(None, f"--tau and --eps must be positive (got {tau}, {eps})")


def _cobra(
    paths: list[Path],
    specs: list[EncoderSpec],
    fit: bool,
    checkpoint: Path | None,
    preset: Preset | None,
    console: Console,
    *,
    top_k: int | None,
    aggregate: str | None,
    device: str,
    epochs: int,
    seed: int,
) -> tuple[SlideFn, dict[str, Any]]:
    """Pre-train and save, or load strictly (architecture from the file unless a preset is given)."""
    from slidestream.slide_encoders import cohort
    from slidestream.slide_encoders.cobra import cobra_i_config, cobra_ii_config
    from slidestream.slide_encoders.cobra_weights import load_cobra, save_cobra

    if checkpoint is None:
        raise ConfigError(None, "--checkpoint: required for cobra (the file to write with --fit)")
    make_config = cobra_i_config if preset is Preset.cobra1 else cobra_ii_config
    if fit:
        model, trained = cohort.fit_cobra(
            paths, specs, make_config, epochs=epochs, device=device, seed=seed
        )
        for sid, reason in trained["skipped"].items():
            console.print(f"  [yellow]skipped for pre-training[/yellow] {sid}: {reason}")
        save_cobra(model, checkpoint, extra={"encoders": [s.store_name for s in specs], **trained})
        console.print(
            f"cobra: pre-trained {trained['epochs']} epochs on {trained['pretrained_on']} slides "
            f"(final loss {trained['final_loss']:.4f}) → {checkpoint}"
        )
    else:
        model = load_cobra(checkpoint, None if preset is None else make_config())
    known = set(model.config.input_dims)
    unknown = [s.model_name for s in specs if s.model_name not in known and s.model_name != aggregate]
    if len(unknown) == len(specs):
        raise ConfigError(
            checkpoint, f"the model has no projection for {', '.join(unknown)} "
            f"(it knows {', '.join(sorted(known))}); map a store encoder with NAME=MODEL_NAME"
        )
    if aggregate is not None and aggregate not in {s.model_name for s in specs}:
        raise ConfigError(None, f"--aggregate {aggregate!r} is not one of the --encoder names")
    return cohort.cobra_slide_fn(model, aggregate=aggregate, top_k=top_k, device=device), {
        "checkpoint": str(checkpoint)
    }


@app.command("probe")
def probe(
    table: Path = typer.Option(..., "--table", help="Cohort Parquet table from slide-encode."),
    labels: Path = typer.Option(
        ..., help="CSV/TSV/Parquet: slide_id, patient_id, label | time, event (as for train)."
    ),
    task: str = typer.Option("classification", help="classification | survival"),
    folds: int = typer.Option(5, help="Patient folds (the same split as `train` for this seed)."),
    seed: int = typer.Option(0, help="Seed of the folds (use the MIL run's to compare)."),
    folds_from: Path | None = typer.Option(None, help="Reuse the folds of this MIL run folder."),
    c: float = typer.Option(1.0, help="Inverse L2 strength of the logistic regression."),
    alpha: float = typer.Option(1.0, help="Ridge penalty of the Cox model."),
    out: Path | None = typer.Option(None, help="CSV of per-fold metrics to write."),
) -> None:
    """Cross-validate a linear probe (or ridge Cox) on slide embeddings by patient."""
    from slidestream.mil.labels import read_labels
    from slidestream.slide_encoders.probe import folds_from_run, probe_cohort, read_cohort_table

    console = Console(stderr=True, soft_wrap=True)
    if task not in ("classification", "survival"):
        console.print(f"[red]error[/red] --task {task!r}: choose classification or survival")
        raise typer.Exit(2)
    try:
        cohort_table = read_cohort_table(table)
        labels_table = read_labels(labels, task)  # type: ignore[arg-type]
        fold_ids = None if folds_from is None else folds_from_run(folds_from, labels_table)
        result = probe_cohort(
            cohort_table,
            labels_table,
            n_folds=folds,
            seed=seed,
            folds=fold_ids,
            c=c,
            alpha=alpha,
            where=table,
        )
    except SlideStreamError as exc:
        console.print(f"[red]error[/red] {exc}")
        raise typer.Exit(1) from exc
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        result.per_fold.to_csv(out, index=False)
    Console().print(f"{table.name}: {result}")
