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
from rich.markup import escape

from slidestream.cli._app import app
from slidestream.cli._common import (
    JsonOpt,
    err_console,
    finite,
    print_error,
    print_summary,
    write_run_report,
)
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
    wait: Annotated[float | None, typer.Option("--wait", min=0, callback=finite, help="Override lock.wait_s: seconds to wait, in all, for slides another live process holds.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run tissue -> tiles -> selection -> features -> slide embeddings (-> MIL) as a config says."""
    from slidestream.pipeline.config import load_config
    from slidestream.pipeline.run import run_pipeline

    extra = list(overrides or []) + ([f"shard={shard}"] if shard else []) + ([f"lock.wait_s={wait}"] if wait is not None else [])
    try:
        cfg = load_config(config, extra)
        result = run_pipeline(cfg, stages=stage or None, slide_ids=slide or None, console=err_console,
                              show_progress=progress)
    except ConfigError as exc:
        print_error(exc)
        raise typer.Exit(2) from None
    if report is not None:
        result.write(report, cfg)
    per_slide = result.per_slide()
    columns = ["tiles", "features", *(f"{s}_s" for s in result.stages if s in ("tissue", "tiles", "features", "slide_embedding"))]
    print_summary(per_slide, f"run {result.run_id} -> {cfg.out}", columns=columns, as_json=as_json, command="run")
    for line in result.stage_lines():
        err_console.print(f"  {escape(line)}", highlight=False)
    for stage, outcome in ((s, o) for s, r in result.stages.items() for o in r.outcomes if s in ("prototypes", "mil")):
        err_console.print(escape(f"  {stage} {outcome.status}: {outcome.reason or outcome.path}"), soft_wrap=True,
                          highlight=False)
    err_console.print(escape(f"manifest: {cfg.out / 'manifest.csv'}"), highlight=False, soft_wrap=True)
    if not slide:  # a per-slide workflow job leaves the report to the end of the workflow
        write_run_report(cfg.out)
    if result.manifest_error is not None:
        print_error(result.manifest_error)
    raise typer.Exit(result.exit_code)
