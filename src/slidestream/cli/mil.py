"""``slidestream train`` and ``slidestream predict``: MIL cross-validation and inference.

Thin wrappers over :mod:`slidestream.mil`: parse options, build a :class:`TrainConfig`, run,
print a table. ``predict --heatmaps DIR`` also stores each slide's tile scores in its store
(``tile_scores/attention``) and draws them with :mod:`slidestream.viz.heatmap` (PNG + QuPath
GeoJSON); ``slidestream heatmap`` redraws them later with other styles. Input problems (unknown slides, bad columns, a store without the encoder)
surface as typed errors and are printed as one line with exit code 1, never as a traceback.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.table import Table

from slidestream.cli._app import app
from slidestream.errors import SlideStreamError

console = Console(stderr=True)


def _fail(message: str, code: int = 1) -> typer.Exit:
    console.print(f"[bold red]error:[/] {escape(str(message))}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _model_options(pairs: list[str]) -> dict:
    """``key=value`` pairs; values are parsed as JSON when possible (``dim=64``, ``gated=true``)."""
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise _fail(f"--model-option expects key=value, got {pair!r}", 2)
        try:
            options[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            options[key.strip()] = value
    return options


def _log_to_console(verbose: bool) -> None:

    logger = logging.getLogger("slidestream.mil")
    if not logger.handlers:
        logger.addHandler(RichHandler(console=console, show_path=False, show_time=False))
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)


@app.command("train")
def train(
    labels: Path = typer.Option(
        ..., help="CSV/TSV/Parquet: slide_id, patient_id, label | time, event."
    ),
    stores: Path = typer.Option(..., help="Folder with the <slide_id>.zarr slide stores."),
    encoder: str = typer.Option(..., help="Patch encoder whose features to use."),
    out: Path = typer.Option(..., help="Run folder to write."),
    model: str = typer.Option("abmil", help="MIL model (abmil, abmil_gated, clam_sb, ...)."),
    task: str = typer.Option("classification", help="classification | survival"),
    survival_loss: str = typer.Option("cox", help="cox | nll (discrete time bins)"),
    n_bins: int = typer.Option(4, help="nll: number of discrete time bins (quantiles of event times)."),
    nll_alpha: float = typer.Option(0.0, help="nll: extra weight of the uncensored term (0-1)."),
    nll_head: str = typer.Option(
        "shared", help="nll: shared (one risk + life-table baseline hazards) | per_bin."
    ),
    folds: int = typer.Option(5, help="Cross-validation folds (split by patient)."),
    epochs: int = typer.Option(50, help="Maximum epochs per fold."),
    patience: int = typer.Option(10, help="Early-stopping patience (epochs)."),
    min_epochs: int = typer.Option(0, help="No early stop before this many epochs."),
    monitor: str = typer.Option("loss", help="Early stopping on validation loss | metric."),
    optimizer: str = typer.Option("adam", help="adam | adamw"),
    weight_decay: float = typer.Option(1e-5, help="L2 weight decay."),
    instance_loss_weight: float | None = typer.Option(
        None, help="CLAM/DSMIL: share of the instance loss (default: the model's own)."
    ),
    val_fraction: float = typer.Option(
        0.2, help="Share of each training part's patients used for early stopping (0: none)."
    ),
    lr: float = typer.Option(2e-4, help="Learning rate."),
    batch_size: int | None = typer.Option(None, help="Bags per step (default 1; 32 for Cox)."),
    max_tiles: int | None = typer.Option(None, help="Tiles sampled per bag in training."),
    balance: str = typer.Option("weights", help="weights | sampler | none"),
    seed: int = typer.Option(0, help="Seed for splits, initialisation and sampling."),
    model_option: list[str] = typer.Option([], help="Model hyper-parameter key=value (repeat)."),
    cache: bool = typer.Option(True, help="Keep loaded bags in RAM."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log every epoch."),
) -> None:
    """Cross-validate a MIL model on slide stores and write a run folder."""
    from pydantic import ValidationError

    from slidestream.mil import StoreBagSource, TrainConfig, cross_validate, read_labels

    _log_to_console(verbose)
    try:
        config = TrainConfig(
            task=task,
            model=model,
            model_kwargs=_model_options(model_option),
            encoder=encoder,
            survival_loss=survival_loss,
            n_bins=n_bins,
            nll_alpha=nll_alpha,
            nll_head=nll_head,
            folds=folds,
            epochs=epochs,
            patience=patience,
            min_epochs=min_epochs,
            monitor=monitor,
            optimizer=optimizer,
            weight_decay=weight_decay,
            instance_loss_weight=instance_loss_weight,
            val_fraction=val_fraction,
            lr=lr,
            batch_size=batch_size,
            max_tiles=max_tiles,
            balance=balance,
            seed=seed,
            cache=cache,
            labels_path=str(labels),
            stores=str(stores),
        )
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'options'}: {e['msg']}" for e in exc.errors()
        )
        raise _fail(problems, 2) from None
    try:
        table = read_labels(labels, config.task)
        source = StoreBagSource.from_folder(stores, encoder, cache=cache)
        result = cross_validate(table, source, config, out)
    except SlideStreamError as exc:
        raise _fail(str(exc)) from None
    _print_summary(result.metrics, out)


def _print_summary(metrics: dict, out: Path) -> None:

    summary = Table(title=f"{metrics['model']} · {metrics['task']} · {len(metrics['folds'])} folds")
    summary.add_column("metric")
    summary.add_column("mean ± std over folds", justify="right")
    summary.add_column("pooled out-of-fold", justify="right")
    pooled_per_class = metrics["pooled"].get("auroc_per_class", {})
    for key, stats in metrics["summary"].items():
        pooled = metrics["pooled"].get(key, pooled_per_class.get(key[6:-1]))
        summary.add_row(
            key,
            f"{stats['mean']:.3f} ± {stats['std']:.3f}",
            "" if pooled is None else f"{pooled:.3f}",
        )
    Console().print(summary)
    Console().print(f"run folder: {out}")


@app.command("predict")
def predict(
    run: Path = typer.Option(..., help="Run folder written by `slidestream train`."),
    stores: Path = typer.Option(..., help="Folder with the <slide_id>.zarr slide stores."),
    encoder: str = typer.Option(..., help="Patch encoder whose features to use."),
    out: Path = typer.Option(..., help="CSV of slide-level predictions to write."),
    fold: list[int] = typer.Option([], help="Use only these folds' models (default: all)."),
    scores_dir: Path | None = typer.Option(
        None, help="Also write <slide_id>.npz with per-tile scores and coords here."
    ),
    store_scores: bool = typer.Option(
        False, "--store-scores", help="Write per-tile scores into each store (tile_scores/NAME)."
    ),
    heatmaps: Path | None = typer.Option(
        None, help="Write <slide_id>.NAME.png and .geojson here (implies --store-scores)."
    ),
    score_name: str = typer.Option("attention", help="NAME of the stored tile scores."),
    slides: Path | None = typer.Option(None, help="Folder holding the slide files, if they moved."),
    heatmap_size: int = typer.Option(1024, min=64, help="Longest side of a heatmap, pixels."),
    as_json: bool = typer.Option(False, "--json", help="Also print the predictions as JSON on stdout."),
) -> None:
    """Apply a trained run (fold ensemble, or chosen folds) to slide stores."""
    from slidestream.mil import StoreBagSource
    from slidestream.mil import predict as run_predict

    try:
        source = StoreBagSource.from_folder(stores, encoder)
        result = run_predict(run, source, folds=fold or None)
    except SlideStreamError as exc:
        raise _fail(str(exc)) from None
    result.write(out, scores_dir)
    console.print(f"{len(result.table)} slide(s) predicted → {out}")
    problems = 0
    if store_scores or heatmaps is not None:
        problems += _store_and_draw(result, source, run, score_name, heatmaps, slides, heatmap_size)
    if as_json:
        from slidestream.cli._common import print_json

        print_json({"command": "predict", "file": str(out), "exit_code": int(bool(problems)),
                    "slides": json.loads(result.table.to_json(orient="records"))})
    if problems:
        raise typer.Exit(1)


def _store_and_draw(
    result, source, run: Path, name: str, heatmaps: Path | None, slides: Path | None, size: int
) -> int:
    """tile_scores/<name> into every store, then the pictures; returns the number of failures."""
    from slidestream.pipeline.maps import store_and_draw

    done = store_and_draw(result, source, run, name, heatmaps, slides_dir=slides, max_size=size)
    for slide_id, reason in done.failures.items():
        console.print(f"[yellow]tile scores not stored[/] {slide_id}: {reason}", soft_wrap=True)
    console.print(f"tile_scores/{name} stored in {len(done.stored)}/{len(result.scores)} store(s)")
    if done.drawn is not None:
        for outcome in done.drawn.failed:
            console.print(f"[yellow]no heatmap[/] {outcome.path.name}: {outcome.reason}", soft_wrap=True)
        console.print(f"{done.drawn.count('ok')} heatmap(s) → {heatmaps}")
    return done.problems
