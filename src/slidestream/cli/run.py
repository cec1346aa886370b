"""``slidestream run CONFIG.yaml``: the whole pipeline from one config file.

Thin: load and validate the config (every problem listed, exit 2), run the stages
(:func:`slidestream.pipeline.run.run_pipeline`), print a per-slide table, a line per stage and the
totals; exit 1 when any slide failed any stage. ``--stage``/``--slide`` run a part of the config:
that is how each Snakemake job calls it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from slidestream.cli._app import app
from slidestream.cli._common import err_console, print_summary, write_run_report
from slidestream.errors import ConfigError
from slidestream.pipeline.stage_names import STAGES


@app.command("run")
def run_command(
    config: Annotated[Path, typer.Argument(help="Run config (YAML); see configs/ for commented examples.")],
    overrides: Annotated[list[str] | None, typer.Option("--set", help="Override a key: --set tiling.mpp=1.0 (YAML values; repeatable).")] = None,
    stage: Annotated[list[str] | None, typer.Option("--stage", help=f"Only these stages (repeatable): {', '.join(STAGES)}.")] = None,
    slide: Annotated[list[str] | None, typer.Option("--slide", help="Only these slide ids (file names without extension; repeatable).")] = None,
    shard: Annotated[str | None, typer.Option("--shard", help="Only shard i/n of the slides (deterministic; e.g. 2/8).")] = None,
    report: Annotated[Path | None, typer.Option("--report", help="Also write every (stage, slide) outcome of this run as JSON.")] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Progress bars (off for logs and cluster jobs).")] = True,
) -> None:
    """Run tissue -> tiles -> selection -> features -> slide embeddings (-> MIL) as a config says."""
    from slidestream.pipeline.config import load_config
    from slidestream.pipeline.run import run_pipeline

    extra = list(overrides or []) + ([f"shard={shard}"] if shard else [])
    try:
        cfg = load_config(config, extra)
        result = run_pipeline(cfg, stages=stage or None, slide_ids=slide or None, console=err_console,
                              show_progress=progress)
    except ConfigError as exc:
        err_console.print(f"[red]error[/red] {exc}", soft_wrap=True, highlight=False)
        raise typer.Exit(2) from exc
    if report is not None:
        result.write(report, cfg)
    per_slide = result.per_slide()
    columns = ["tiles", "features", *(f"{s}_s" for s in result.stages if s in ("tissue", "tiles", "features", "slide_embedding"))]
    print_summary(per_slide, f"run {result.run_id} -> {cfg.out}", columns=columns)
    for line in result.stage_lines():
        err_console.print(f"  {line}", highlight=False)
    for stage, outcome in ((s, o) for s, r in result.stages.items() for o in r.outcomes if s in ("prototypes", "mil")):
        err_console.print(f"  {stage} {outcome.status}: {outcome.reason or outcome.path}", soft_wrap=True, highlight=False)
    err_console.print(f"manifest: {cfg.out / 'manifest.csv'}", highlight=False)
    if not slide:  # a per-slide workflow job leaves the report to the end of the workflow
        write_run_report(cfg.out)
    raise typer.Exit(result.exit_code)
