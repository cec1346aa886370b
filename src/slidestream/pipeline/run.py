"""``slidestream run``: every stage of a run config for every slide, resumable, with one manifest.

The stages run stage by stage over the slides (all tissue, then all tiles, ...), each through
:func:`~slidestream.pipeline.batch.run_batch`, the one place where per-slide errors are caught.
Why stage-major: tissue and tiling are CPU work that may go to a dask cluster as one batch
(:mod:`slidestream.pipeline.distributed`) while extraction keeps the encoder loaded once on the
GPU; and a slide that fails a stage simply leaves the later stages (recorded as ``not run``).

Every per-slide stage holds the slide's lock (``store/lock.py``), so concurrent runs on one output
folder (overlapping shards, two users, Snakemake jobs) process each slide once. After every stage
the slide's *completion markers* ``OUT/.done/<slide_id>/<stage>.json`` are brought in line with
the store: a marker exists exactly when the store holds that stage's nodes made with this
config's parameters. The Snakefile declares these markers as its outputs, so Snakemake's notion
of done is ours, whichever of the three ways wrote the store. A marker is only rewritten when its
content changes, so a no-op rerun does not make Snakemake think downstream work is outdated.

The same function runs one stage for one slide (``--stage tiles --slide ID``): that is what each
Snakemake job calls, so the workflow holds no pipeline logic of its own.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from slidestream._version import __version__
from slidestream.atomic import atomic_write_text
from slidestream.errors import ConfigError, StoreError
from slidestream.io import find_slide_entries
from slidestream.pipeline.batch import (
    BatchResult,
    Busy,
    Skip,
    SlideOutcome,
    busy_wait_left,
    run_batch,
)
from slidestream.pipeline.config import COHORT_STAGES, STAGES, RunConfig
from slidestream.pipeline.manifest import (
    ManifestRecorder,
    check_output_folder,
    new_run_id,
    record_manifest,
)
from slidestream.pipeline.shard import apply_shard
from slidestream.pipeline.stage_runner import (
    MARKER_DIR,
    StageContext,
    done_nodes,
    embed_slide,
    marker_name,
    marker_path,
    run_stage,
    sync_markers,
)
from slidestream.pipeline.stages import (
    SlideSource,
    check_unique_ids,
    slide_id_for,
)
from slidestream.store import store_path
from slidestream.store.lock import LockHeldError, hold

__all__ = [  # the stage runner's names stay importable from here (the Snakefile uses marker_path)
    "MARKER_DIR",
    "RunReport",
    "StageContext",
    "choose_stages",
    "done_nodes",
    "embed_slide",
    "marker_name",
    "marker_path",
    "record_manifest",
    "resolve_sources",
    "run_pipeline",
    "run_stage",
    "sync_markers",
]

COHORT_LOCKS = "cohort"   # lock names ``cohort/<x>`` can never clash with a slide id (no "/" in ids)


# ---------------------------------------------------------------------------------- slides
def resolve_sources(cfg: RunConfig, slide_ids: Sequence[str] | None = None,
                    notes: list[str] | None = None) -> list[SlideSource]:
    """The config's slides (list mpp > ``default_mpp``), checked unique, sharded, optionally filtered.

    ``notes`` receives discovery's warnings (links to one file, broken links, repeated entries)."""
    missing = [p for p in cfg.slides if not p.exists()]
    if missing:
        raise ConfigError(missing[0], "slides: no such file or folder")
    try:
        entries = find_slide_entries(cfg.slides, notes=notes)
    except ValueError as exc:
        raise ConfigError(None, f"slides: {exc}") from None
    if not entries:
        raise ConfigError(None, f"slides: no slide files found in {', '.join(map(str, cfg.slides))}")
    check_unique_ids([e.path for e in entries])
    sources = [SlideSource(e.path, cfg.backend, e.mpp if e.mpp is not None else cfg.default_mpp, e.problem) for e in entries]
    sources = apply_shard(sources, cfg.shard, key=lambda s: s.slide_id)
    if slide_ids:
        known = {s.slide_id: s for s in sources}
        unknown = [i for i in slide_ids if i not in known]
        if unknown:
            raise ConfigError(None, f"--slide {unknown[0]!r} is not among this config's slides"
                                    f"{' in shard ' + cfg.shard if cfg.shard else ''}")
        sources = [known[i] for i in dict.fromkeys(slide_ids)]
    return sources


# ---------------------------------------------------------------------------------- cohort stages
@contextlib.contextmanager
def _cohort_lock(cfg: RunConfig, name: str) -> Iterator[None]:
    try:
        with hold(cfg.out, f"{COHORT_LOCKS}/{name}", stale_after_s=cfg.lock.stale_after_s, wait_s=busy_wait_left()):
            yield
    except LockHeldError as held:
        raise Busy(f"in progress elsewhere ({held.owner_text})", locked_by=held.owner_text) from None


def fit_prototypes_stage(cfg: RunConfig, stores: list[Path], *, overwrite: bool = False) -> dict[str, Any]:
    """Fit PANTHER prototypes on the run's feature stores, once (an existing file is kept)."""
    from slidestream.slide_encoders import cohort
    from slidestream.slide_encoders.prototypes import fit_prototypes

    assert cfg.slide_embedding is not None
    target, p = cfg.prototypes_path(), cfg.slide_embedding.panther
    with _cohort_lock(cfg, "prototypes"):
        if target.exists() and not overwrite:
            raise Skip("prototypes exist (delete the file or set overwrite to refit)", file=target.name)
        if not stores:
            raise StoreError(cfg.out, f"no store has features/{cfg.encoder} to fit prototypes on")
        protos = fit_prototypes(cohort.store_features(stores, cfg.encoder), p.k, samples_per_prototype=p.samples_per_prototype,
                                seed=p.seed, encoder=cfg.encoder)
        protos.save(target)   # atomic, the .npz last: its presence means the pair is complete
        return {"k": protos.k, "slides": len(stores), "file": target.name}


def mil_stage(cfg: RunConfig, *, overwrite: bool = False) -> dict[str, Any]:
    """Cross-validate the configured MIL model on the stores (skipped when the same run exists)."""
    from slidestream.mil import StoreBagSource, cross_validate, read_labels

    assert cfg.mil is not None and cfg.encoder is not None
    run_dir = cfg.mil_out()
    train = cfg.mil.train_config(cfg.encoder, cfg.mil.labels, cfg.out)
    with _cohort_lock(cfg, "mil"):
        done = run_dir / "metrics.json"
        config_file = run_dir / "config.json"
        if done.exists() and config_file.exists() and not overwrite \
                and json.loads(config_file.read_text()) == json.loads(train.model_dump_json()):
            raise Skip("MIL run with this config exists", run=str(run_dir))
        labels = read_labels(cfg.mil.labels, train.task)
        source = StoreBagSource.from_folder(cfg.out, cfg.encoder, cache=train.cache)
        result = cross_validate(labels, source, train, run_dir)
        return {"folds": train.folds, "slides": len(labels.table), "run": str(run_dir),
                **{k: round(v["mean"], 4) for k, v in result.metrics["summary"].items()}}


# ---------------------------------------------------------------------------------- the run
@dataclass
class RunReport:
    """Outcomes per stage (in run order) for the slides of one run."""

    run_id: str
    sources: list[SlideSource]
    stages: dict[str, BatchResult] = field(default_factory=dict)
    manifest_error: StoreError | None = None   # rows that could not be written (reported, exit 1)

    @property
    def failed(self) -> bool:
        return any(r.failed or r.busy for r in self.stages.values())

    @property
    def exit_code(self) -> int:
        return 1 if self.failed or self.manifest_error is not None else 0

    def per_slide(self) -> BatchResult:
        """One outcome per slide: failed if any stage failed, ok if any did work, else skipped."""
        combined = []
        for source in self.sources:
            outcomes = {s: o for s, r in self.stages.items() for o in r.outcomes if o.path == source.path}
            statuses = [o.status for o in outcomes.values()]
            status = next((st for st in ("failed", "busy", "ok") if st in statuses), "skipped")
            reason = next((f"{s}: {o.reason}" for s, o in outcomes.items() if o.status in ("failed", "busy")), "")
            details: dict[str, Any] = {f"{s}_s": round(o.seconds, 2) for s, o in outcomes.items()}
            for o in outcomes.values():
                details.update({k: v for k, v in o.details.items() if k in ("tiles", "features", "dim")})
            combined.append(SlideOutcome(source.path, status, reason, sum(o.seconds for o in outcomes.values()), details))  # type: ignore[arg-type]
        return BatchResult(combined)

    def stage_lines(self) -> list[str]:
        return [f"{stage}: {result.summary_line()}" for stage, result in self.stages.items()]

    def rows(self) -> list[dict[str, Any]]:
        """Every (stage, slide) outcome, for ``--report`` (tracebacks included, for debugging)."""
        return [{"stage": stage, "slide_id": slide_id_for(o.path), **o.row()}
                for stage, result in self.stages.items() for o in result.outcomes]

    def write(self, path: str | Path, cfg: RunConfig) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {"run_id": self.run_id, "config": cfg.model_dump(mode="json"), "exit_code": self.exit_code,
                "outcomes": self.rows()}
        return atomic_write_text(path, json.dumps(data, indent=1, default=str) + "\n")


def manifest_stage(cfg: RunConfig, stage: str) -> str:
    """The manifest's stage name: the store node family, as the single-stage commands write it."""
    if stage == "features":
        return f"features/{cfg.encoder}"
    if stage == "slide_embedding" and cfg.slide_embedding is not None:
        return f"slide_embeddings/{cfg.slide_embedding.method}"
    return stage


def _not_run(report: RunReport, blocked: Sequence[SlideSource]) -> list[SlideOutcome]:
    """Rows for slides an earlier stage failed: the manifest must not keep an old "ok" for them."""
    rows = []
    for source in blocked:
        cause = next((stage for stage, result in report.stages.items()
                      if any(o.path == source.path for o in result.failed + result.busy)), "an earlier stage")
        rows.append(SlideOutcome(source.path, "failed", f"not run: {cause} failed", details={"error_type": "NotRun"}))
    return rows


def load_run_encoder(cfg: RunConfig) -> Any:
    """The configured encoder, loaded once; a missing weight file is a config error (exit 2)."""
    from slidestream.encoders import load_encoder
    from slidestream.errors import SlideStreamError

    f = cfg.features
    assert f is not None
    try:
        return load_encoder(f.encoder, f.weights, random_init=f.random_init, device=f.device, precision=f.precision,
                            channels_last=f.channels_last, compile=f.compile)
    except (SlideStreamError, ValueError) as exc:
        raise ConfigError(f.weights, f"features: {exc}") from None
    except (RuntimeError, AssertionError) as exc:   # e.g. cuda asked for on a machine without it
        raise ConfigError(None, f"features.device {f.device!r}: {str(exc).strip().splitlines()[0]}") from None


def choose_stages(cfg: RunConfig, only: Sequence[str] | None) -> list[str]:
    configured = cfg.stages()
    if not only:
        return list(configured)
    for stage in only:
        if stage not in STAGES:
            raise ConfigError(None, f"--stage {stage!r}; allowed: {', '.join(STAGES)}")
        if stage not in configured:
            raise ConfigError(None, f"--stage {stage}: not configured by this config (its stages: {', '.join(configured)})")
    return [s for s in configured if s in only]


RUN_CONFIG_FILE = "run-config.yaml"


def write_run_config(cfg: RunConfig, run_id: str, stages: Sequence[str]) -> Path:
    """``OUT/run-config.yaml``: the validated config (overrides applied) of the latest run, for
    the report and for anyone who has to reproduce the folder. Written atomically."""
    import yaml

    record = {"run_id": run_id, "started": time.strftime("%Y-%m-%d %H:%M:%S %z"), "stages": list(stages),
              "slidestream_version": __version__, "config": cfg.model_dump(mode="json")}
    path = cfg.out / RUN_CONFIG_FILE
    try:
        atomic_write_text(path, yaml.safe_dump(record, sort_keys=False))
    except OSError as exc:
        raise StoreError(path, f"cannot write the run record ({exc.strerror or exc})") from None
    return path


def run_pipeline(cfg: RunConfig, *, stages: Sequence[str] | None = None, slide_ids: Sequence[str] | None = None,
                 console: Console | None = None, show_progress: bool = True, run_id: str | None = None) -> RunReport:
    """Run the chosen stages (default: all the config asks for) and record them in the manifest.

    ``cfg.overwrite`` applies to the first stage of this call only: recomputing it invalidates what
    depends on it, which the following stages then rebuild without being told to overwrite.
    """
    chosen = choose_stages(cfg, stages)
    notes: list[str] = []
    sources = resolve_sources(cfg, slide_ids, notes)
    report = RunReport(run_id or new_run_id(), sources)
    console = console or Console(stderr=True)
    for note in notes:
        console.print(f"[yellow]warning[/yellow] {escape(note)}", soft_wrap=True, highlight=False)
    check_output_folder(cfg.out)
    write_run_config(cfg, report.run_id, chosen)
    first = chosen[0] if chosen else None
    ctx = StageContext()
    if "features" in chosen and sources:
        ctx.encoder = load_run_encoder(cfg)
    pending = list(sources)

    front = [s for s in chosen if s in ("tissue", "tiles")]
    if cfg.dask.enabled and front and pending:
        from slidestream.pipeline.distributed import run_front_distributed

        overwrite_stage = first if cfg.overwrite else None
        recorders = {stage: ManifestRecorder(cfg.out, manifest_stage(cfg, stage), report.run_id) for stage in front}
        report.stages.update(run_front_distributed(cfg, pending, front, overwrite_stage=overwrite_stage,
                                                   console=console, show_progress=show_progress,
                                                   on_outcome=lambda stage, o: recorders[stage](o)))
        for recorder in recorders.values():
            report.manifest_error = report.manifest_error or recorder.error
        failed = {o.path for stage in front for o in report.stages[stage].failed + report.stages[stage].busy}
        pending = [s for s in pending if s.path not in failed]

    for stage in chosen:
        if stage in report.stages:
            continue
        overwrite = cfg.overwrite and stage == first
        recorder = ManifestRecorder(cfg.out, manifest_stage(cfg, stage), report.run_id)
        if stage in COHORT_STAGES:
            result = _run_cohort_stage(cfg, stage, report, overwrite=overwrite)
            if result is None:
                continue
            recorder.record(result.outcomes)
        else:
            blocked = [s for s in sources if s not in pending]
            if stage == "slide_embedding" and cfg.slide_embedding and cfg.slide_embedding.method == "panther":
                _load_prototypes(cfg, ctx)
            result = _run_slide_stage(cfg, stage, pending, ctx, overwrite=overwrite, console=console,
                                      show_progress=show_progress, on_outcome=recorder)
            not_run = _not_run(report, blocked)
            if not_run:
                recorder.record(not_run)
            result = BatchResult(result.outcomes + not_run)
            pending = [s for s in pending if s.path not in {o.path for o in result.failed + result.busy}]
        report.stages[stage] = result
        report.manifest_error = report.manifest_error or recorder.error
    return report


def _run_slide_stage(cfg: RunConfig, stage: str, sources: list[SlideSource], ctx: StageContext, *,
                     overwrite: bool, console: Console, show_progress: bool,
                     on_outcome: Callable[[SlideOutcome], None] | None = None) -> BatchResult:
    by_path = {s.path: s for s in sources}
    return run_batch(list(by_path), lambda p: run_stage(cfg, stage, by_path[p], ctx, overwrite=overwrite),
                     description=stage, console=console, show_progress=show_progress, busy_wait_s=cfg.lock.wait_s,
                     on_outcome=on_outcome)


def _run_cohort_stage(cfg: RunConfig, stage: str, report: RunReport, *, overwrite: bool) -> BatchResult | None:
    if stage == "prototypes":
        target = cfg.prototypes_path()
        if cfg.shard is not None:
            return BatchResult([SlideOutcome(target, "skipped", "cohort stage: run it once without shard")])
        stores = [store_path(cfg.out, s.slide_id) for s in report.sources
                  if (store_path(cfg.out, s.slide_id) / "features" / str(cfg.encoder) / "zarr.json").exists()]
        return run_batch([target], lambda _: fit_prototypes_stage(cfg, stores, overwrite=overwrite),
                         description="prototypes", show_progress=False, busy_wait_s=cfg.lock.wait_s)
    if stage == "mil":
        target = cfg.mil_out()
        if cfg.shard is not None:
            return BatchResult([SlideOutcome(target, "skipped", "cohort stage: run it once without shard")])
        return run_batch([target], lambda _: mil_stage(cfg, overwrite=overwrite), description="mil", show_progress=False,
                         busy_wait_s=cfg.lock.wait_s)
    return None


def _load_prototypes(cfg: RunConfig, ctx: StageContext) -> None:
    from slidestream.slide_encoders.prototypes import load_prototypes

    try:
        ctx.prototypes = load_prototypes(cfg.prototypes_path())
    except ConfigError as exc:
        ctx.prototypes_error = exc
