"""``slidestream slide-encode``: slide embeddings (PANTHER, COBRA, mean) for a directory of stores."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console

from slidestream.cli._app import app
from slidestream.errors import ConfigError, SlideStreamError

if TYPE_CHECKING:  # the command imports torch-heavy modules only when it runs
    from slidestream.slide_encoders.cohort import EncoderSpec, SlideFn


class Method(StrEnum):
    panther = "panther"
    cobra = "cobra"
    mean = "mean"


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
    fit: bool = typer.Option(False, "--fit", help="PANTHER: fit prototypes on these stores first."),
    prototypes: Path | None = typer.Option(None, "--prototypes", help="PANTHER prototypes (.npz)."),
    k: int = typer.Option(16, "--k", help="PANTHER: number of prototypes when fitting."),
    samples_per_prototype: int = typer.Option(
        100_000, help="PANTHER: sample budget per prototype."
    ),
    em_iter: int = typer.Option(1, help="PANTHER: EM iterations (code default 1)."),
    tau: float = typer.Option(0.001, help="PANTHER: prior strength τ (code default 0.001)."),
    eps: float = typer.Option(0.1, help="PANTHER: prior variance ε (code default 0.1)."),
    out_type: str = typer.Option("allcat", help="PANTHER: embedding layout."),
    seed: int = typer.Option(0, help="Seed for sampling and K-means."),
    checkpoint: Path | None = typer.Option(None, "--checkpoint", help="COBRA weights (local)."),
    preset: Preset | None = typer.Option(None, help="COBRA architecture for released weights."),
    top_k: int | None = typer.Option(None, help="COBRA: pool only the top-k attended tiles."),
    mean_mode: str = typer.Option("mean", help="Mean pooling: mean or meanmax."),
) -> None:
    """Embed every slide store, write slide_embeddings/<method> and a one-row-per-slide table."""
    from slidestream.slide_encoders import cohort

    console = Console(stderr=True, soft_wrap=True)  # error lines stay greppable
    try:
        paths = cohort.find_stores(stores)
        specs = [cohort.EncoderSpec.parse(e) for e in encoder]
        if method is not Method.cobra and len(specs) != 1:
            raise ConfigError(None, f"--encoder: {method.value} takes exactly one patch encoder")
        provenance: dict = {}
        if method is Method.panther:
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
            slide_fn, provenance = _cobra(checkpoint, preset, top_k)
        else:
            slide_fn = cohort.mean_slide_fn(mean_mode)
        result = cohort.encode_stores(paths, method.value, specs, slide_fn, provenance=provenance)
        cohort.write_cohort_table(result, table)
    except SlideStreamError as exc:
        console.print(f"[red]error[/red] {exc}")
        raise typer.Exit(2) from exc
    failed = result[result["status"] != "ok"]
    console.print(
        f"{method.value}: {len(result) - len(failed)}/{len(result)} slides embedded → {table}"
    )
    for _, row in failed.iterrows():
        console.print(f"  [yellow]failed[/yellow] {row['slide_id']}: {row['error']}")
    if len(failed):
        raise typer.Exit(1)


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
    from slidestream.slide_encoders.prototypes import fit_prototypes, load_prototypes

    if prototypes is None:
        raise ConfigError(None, "--prototypes: required for panther (the file to write with --fit)")
    if fit:
        protos = fit_prototypes(
            cohort.store_features(paths, spec.store_name),
            k,
            samples_per_prototype=samples_per_prototype,
            seed=seed,
            encoder=spec.store_name,
        )
        prototypes = protos.save(prototypes)
        console.print(
            f"prototypes: K={protos.k} from {protos.provenance['n_sampled']} tiles → {prototypes}"
        )
    else:
        protos = load_prototypes(prototypes)
    return cohort.panther_slide_fn(protos, **em), {"prototypes": str(prototypes)}


def _cobra(
    checkpoint: Path | None, preset: Preset | None, top_k: int | None
) -> tuple[SlideFn, dict[str, Any]]:
    """Load the checkpoint strictly (architecture from the file unless a preset is given)."""
    from slidestream.slide_encoders import cohort
    from slidestream.slide_encoders.cobra import cobra_i_config, cobra_ii_config
    from slidestream.slide_encoders.cobra_weights import load_cobra

    if checkpoint is None:
        raise ConfigError(None, "--checkpoint: required for cobra")
    config = None
    if preset is not None:
        config = cobra_i_config() if preset is Preset.cobra1 else cobra_ii_config()
    model = load_cobra(checkpoint, config)
    return cohort.cobra_slide_fn(model, top_k=top_k), {"checkpoint": str(checkpoint)}
