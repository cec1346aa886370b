"""Tissue detection and tiling across slides as dask tasks (a LocalCluster or any scheduler).

Where dask pays, and where it does not:

* **Tissue + tiling** are CPU-bound, need no GPU, take seconds per slide and are independent
  across slides: one task per slide on many worker *processes* (the work holds the GIL in places:
  polygon operations, per-tile bookkeeping) scales with cores and, with a scheduler address or
  ``dask-jobqueue``, with nodes. The task is the same per-slide code as the serial run
  (:func:`slidestream.pipeline.stage_runner.run_stage`), under the same slide lock, so the stores are the
  same; only where it runs changes.
* **Extraction** is not sent to dask: a GPU wants one long-lived process holding the model, fed by
  reader threads (``features.workers``). Dask tasks would reload weights per task or contend for
  one device; many GPUs are better served by ``--shard i/n`` (one process per GPU).
* **Slide embeddings and cohort stages** are cheap per slide or inherently global (PANTHER fit,
  MIL cross-validation): nothing to gain from a cluster.

Each task returns plain outcome records; the manifest is written once, by the driver.
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from slidestream.errors import ConfigError
from slidestream.pipeline.batch import BatchResult, SlideOutcome, run_batch
from slidestream.pipeline.config import DaskConfig, RunConfig
from slidestream.pipeline.stage_runner import run_stage
from slidestream.pipeline.stages import SlideSource

FRONT_STAGES = ("tissue", "tiles")


def front_task(cfg: RunConfig, source: SlideSource, stages: Sequence[str],
               overwrite_stage: str | None = None) -> list[tuple[str, SlideOutcome]]:
    """Run the CPU stages of one slide on a worker; errors become outcomes, as in a serial batch."""
    results: list[tuple[str, SlideOutcome]] = []
    failed_at: str | None = None
    for stage in stages:
        if failed_at is not None:
            results.append((stage, SlideOutcome(source.path, "failed", f"not run: {failed_at} failed",
                                                details={"error_type": "NotRun"})))
            continue
        outcome = run_batch([source.path], lambda _p, stage=stage: run_stage(
            cfg, stage, source, overwrite=stage == overwrite_stage), show_progress=False,
            busy_wait_s=cfg.lock.wait_s).outcomes[0]
        results.append((stage, outcome))
        if outcome.status in ("failed", "busy"):
            failed_at = stage
    return results


@contextlib.contextmanager
def dask_client(settings: DaskConfig) -> Iterator[Any]:
    """A client on ``settings.scheduler``, or on a LocalCluster of worker processes started here."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise ConfigError(None, "dask.enabled needs the distributed package: pip install 'slidestream[workflow]'") from None
    if settings.scheduler:
        client = Client(settings.scheduler)
        try:
            yield client
        finally:
            client.close()
        return
    workers = settings.n_workers or _usable_cpus()
    with LocalCluster(n_workers=workers, threads_per_worker=settings.threads_per_worker, processes=True,
                      memory_limit=settings.memory_limit, dashboard_address=None,
                      silence_logs=logging.ERROR) as cluster, Client(cluster) as client:
        yield client


def _usable_cpus() -> int:
    """CPUs this process may use (a SLURM or cgroup allocation, not the whole node)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def run_front_distributed(cfg: RunConfig, sources: Sequence[SlideSource], stages: Sequence[str], *,
                          overwrite_stage: str | None = None, console: Console | None = None,
                          show_progress: bool = True,
                          on_outcome: Callable[[str, SlideOutcome], None] | None = None) -> dict[str, BatchResult]:
    """``stages`` (tissue and/or tiles) for every slide as one dask task each; outcomes per stage.

    ``on_outcome(stage, outcome)`` sees each slide's outcomes as its task completes (the manifest
    rows are written then, by the driver)."""
    from distributed import as_completed

    unknown = [s for s in stages if s not in FRONT_STAGES]
    if unknown:
        raise ConfigError(None, f"dask runs only {', '.join(FRONT_STAGES)}, not {', '.join(unknown)}")
    by_slide: dict[str, list[tuple[str, SlideOutcome]]] = {}
    progress = Progress(TextColumn("[bold]tissue+tiles (dask)"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=console or Console(stderr=True), disable=not show_progress)
    run_tag = uuid.uuid4().hex[:8]
    with dask_client(cfg.dask) as client, progress:
        bar = progress.add_task("slides", total=len(sources))
        futures = {client.submit(front_task, cfg, source, list(stages), overwrite_stage,
                                 key=f"slidestream-front-{source.slide_id}-{run_tag}", pure=False): source
                   for source in sources}
        for future in as_completed(futures):
            source = futures[future]
            try:
                by_slide[source.slide_id] = future.result()
            except Exception as exc:  # the worker died (segfault, OOM kill): the slide fails, the run goes on
                reason = f"dask task failed: {type(exc).__name__}: {exc}".splitlines()[0]
                by_slide[source.slide_id] = [(s, SlideOutcome(source.path, "failed", reason,
                                                              details={"error_type": type(exc).__name__}))
                                             for s in stages]
            if on_outcome is not None:
                for stage, outcome in by_slide[source.slide_id]:
                    on_outcome(stage, outcome)
            progress.advance(bar)
    return {stage: BatchResult([dict(by_slide[s.slide_id])[stage] for s in sources]) for stage in stages}
