"""``slidestream slide-encode`` and ``slidestream probe``: slide embeddings and their linear probes.

Thin over the API: :func:`slidestream.slide_encoders.encode.encode_cohort` does the work (option
checks, PANTHER prototype fitting, COBRA pre-training or strict loading, embedding every store);
this module parses options and prints.

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
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from slidestream.cli._app import app
from slidestream.cli._common import finite
from slidestream.errors import ConfigError, SlideStreamError


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
    tau: float = typer.Option(0.001, callback=finite, help="PANTHER: prior strength τ (code default 0.001)."),
    eps: float = typer.Option(0.1, callback=finite, help="PANTHER: prior variance ε (code default 0.1)."),
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
    from slidestream.slide_encoders.encode import CobraOptions, PantherOptions, encode_cohort

    console = Console(stderr=True, soft_wrap=True)  # error lines stay greppable

    def notify(label: str, text: str) -> None:
        console.print(f"  [yellow]{label}[/yellow] {text}" if label else text)

    try:
        from slidestream.pipeline.config import check_device

        if why := check_device(device):
            raise ConfigError(None, f"--device: {why}")
        result = encode_cohort(
            stores,
            method.value,  # type: ignore[arg-type]
            encoder,
            table,
            fit=fit,
            prototypes=prototypes,
            checkpoint=checkpoint,
            panther=PantherOptions(k=k, samples_per_prototype=samples_per_prototype, em_iter=em_iter,
                                   tau=tau, eps=eps, out_type=out_type, seed=seed),
            cobra=CobraOptions(preset=None if preset is None else preset.value,  # type: ignore[arg-type]
                               top_k=top_k, aggregate=aggregate, epochs=epochs, device=device, seed=seed),
            mean_mode=mean_mode,
            weights=weights,
            device=device,
            notify=notify,
        )
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
    from slidestream.pipeline.maps import draw_score_maps
    from slidestream.slide_encoders.cohort import PROTOTYPE_SCORES

    ok = [Path(p) for p in result.loc[result["status"] == "ok", "store"]]
    drawn = draw_score_maps(ok, PROTOTYPE_SCORES, maps, slides_dir=slides)
    for outcome in drawn.failed:
        console.print(f"  [yellow]no prototype map[/yellow] {outcome.path.name}: {outcome.reason}")
    console.print(f"{drawn.count('ok')} prototype map(s) → {maps}")
    return len(drawn.failed)


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
    c: float = typer.Option(1.0, callback=finite, help="Inverse L2 strength of the logistic regression."),
    alpha: float = typer.Option(1.0, callback=finite, help="Ridge penalty of the Cox model."),
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
        result.write(out)
    Console().print(f"{table.name}: {result}")
