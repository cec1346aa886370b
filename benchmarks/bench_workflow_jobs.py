"""Start-up against work of the jobs the Snakemake workflow runs (issue 15 §4).

A workflow job is one ``slidestream run CONFIG --no-progress --stage S --slide ID`` process (the
Snakefile's shell command, run here directly, so Snakemake's own scheduling is not counted). For
each job: wall time of the process, work = the seconds its stages record in ``manifest.csv``,
start-up = wall - work (interpreter, imports, config, model load, teardown). Three ways, on
``--n`` slides (symbolic links to one slide of about 1,000 tiles, each its own slide id):

  per-slide jobs (before)   tissue, tiles, features as three jobs per slide, the baseline tree
  per-slide jobs (after)    the same with this tree
  chunked job (after)       ``--config slides_per_job=N``: one job, all stages, all N slides

The tile count is set by ``--tile-size`` at 0.5 um/px (default 192 px gives ~990 tiles on the
20k mosaic; the encoder resizes to its input). Encoder: the built-in ``handcrafted`` (CPU).

    python benchmarks/bench_workflow_jobs.py --baseline /tmp/base/src --slide /work/scratch/slides/mosaic-20k.svs

Results: ``benchmarks/results/workflow_jobs.json``. Nothing asserts a time.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DEFAULT_SCRATCH, DEFAULT_SLIDES, RESULTS, machine, machine_line

REPO = Path(__file__).resolve().parents[1]
STAGES = ("tissue", "tiles", "features")


def manifest_seconds(out: Path) -> dict[tuple[str, str], float]:
    path = out / "manifest.csv"
    if not path.exists():
        return {}
    with path.open() as fh:
        return {(r["slide_id"], r["stage"]): float(r["seconds"] or 0) for r in csv.DictReader(fh)}


def job(src: Path, config: Path, out: Path, stages: list[str], slides: list[str]) -> dict:
    before = manifest_seconds(out)
    env = {**os.environ, "PYTHONPATH": str(src)}
    args = [sys.executable, "-m", "slidestream.cli", "run", str(config), "--no-progress"]
    args += [f"--stage={s}" for s in stages] + [f"--slide={s}" for s in slides]
    t0 = time.perf_counter()
    proc = subprocess.run(args, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"job failed: {' '.join(args)}\n{proc.stderr[-3000:]}")
    after = manifest_seconds(out)
    work = sum(v for k, v in after.items() if before.get(k) != v)
    return {"stages": stages, "slides": len(slides), "wall_s": round(wall, 2), "work_s": round(work, 2),
            "startup_s": round(wall - work, 2), "startup_over_work": round((wall - work) / work, 3) if work else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--src", type=Path, default=REPO / "src")
    parser.add_argument("--baseline", type=Path, default=None)
    parser.add_argument("--slide", type=Path, default=DEFAULT_SLIDES / "mosaic-20k.svs")
    parser.add_argument("--n", type=int, default=4, help="slides (and the chunk size)")
    parser.add_argument("--tile-size", type=int, default=192)
    parser.add_argument("--scratch", type=Path, default=DEFAULT_SCRATCH / "workflow_jobs")
    parser.add_argument("--out", type=Path, default=RESULTS / "workflow_jobs.json")
    args = parser.parse_args()
    links = args.scratch / "slides"
    shutil.rmtree(args.scratch, ignore_errors=True)
    links.mkdir(parents=True)
    ids = []
    for i in range(args.n):
        link = links / f"w{i:02d}{args.slide.suffix}"
        link.symlink_to(args.slide.resolve())
        ids.append(link.stem)
    ways = []
    if args.baseline:
        ways.append(("per-slide jobs", "before", args.baseline.resolve()))
    ways += [("per-slide jobs", "after", args.src.resolve()), ("chunked job", "after", args.src.resolve())]
    load = [round(x, 2) for x in os.getloadavg()]
    results = []
    for way, label, src in ways:
        out = args.scratch / f"out-{way.split()[0]}-{label}"
        config = args.scratch / f"{out.name}.yaml"
        config.write_text(yaml.safe_dump({"slides": [str(links)], "out": str(out),
                                          "tiling": {"mpp": 0.5, "tile_size": args.tile_size},
                                          "features": {"encoder": "handcrafted", "workers": 2}}))
        jobs = []
        if way == "chunked job":
            jobs.append(job(src, config, out, list(STAGES), ids))
        else:
            for sid in ids:
                for stage in STAGES:
                    jobs.append(job(src, config, out, [stage], [sid]))
        tiles = json.loads((out / f"{ids[0]}.zarr" / "tiles" / "zarr.json").read_text())["attributes"]["n_tiles"]
        wall, work = sum(j["wall_s"] for j in jobs), sum(j["work_s"] for j in jobs)
        row = {"way": way, "tree": label, "src": str(src), "n_slides": args.n, "tiles_per_slide": tiles,
               "jobs": jobs, "wall_s": round(wall, 2), "work_s": round(work, 2),
               "startup_s": round(wall - work, 2), "startup_over_work": round((wall - work) / work, 3)}
        results.append(row)
        print(f"{way:>15} ({label}): {len(jobs)} jobs, {tiles} tiles/slide, wall {wall:.1f} s, work {work:.1f} s, "
              f"start-up {wall - work:.1f} s = {(wall - work) / work:.0%} of the work", flush=True)
    payload = {"slide": str(args.slide), "n": args.n, "tile_size": args.tile_size, "results": results,
               "machine": machine(), "load_average": [load, [round(x, 2) for x in os.getloadavg()]]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=1) + "\n")
    print(f"{machine_line(payload['machine'])}; load {payload['load_average']}")


if __name__ == "__main__":
    main()
