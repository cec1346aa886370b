"""The run report's refresh at the end of a batch, on a folder of many slides (issue 15 §4).

Builds (once) a run folder of ``--n`` slides: symbolic links to one small slide under ``--n``
names (each link is its own slide id and store), through ``slidestream extract`` with the
built-in encoder. Then, per source tree, in fresh processes taking turns (imports not timed):

  full            ``write_report`` reading every store (the only way before; ``incremental=False``)
  after 1 change  one store changed (a new ``tile_scores`` node, as a heatmap or PANTHER run adds),
                  then the refresh every batch command runs (``write_report(out)``)
  no change       the refresh again with nothing changed

``--baseline OTHER_SRC`` measures a second source tree (e.g. main before this change) the same way::

    python benchmarks/bench_report_refresh.py --baseline /work/main/src --n 100

Results: ``benchmarks/results/report_refresh.json``. Nothing asserts a time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DEFAULT_SCRATCH, RESULTS, machine, machine_line

REPO = Path(__file__).resolve().parents[1]
SLIDE = REPO.parent / "shared" / "slides" / "CMU-1-Small-Region.svs"

WORKER = r"""
import inspect, json, sys, time
import numpy as np
from slidestream.store import SlideStore
from slidestream.viz.report import write_report
# What a batch command has imported by the time it refreshes the report (not timed here).
import pandas, zarr, PIL.Image, slidestream.pipeline.manifest, slidestream.store.verify
import slidestream.viz.report_html, slidestream.viz.report_images
out, mode, change = sys.argv[1], sys.argv[2], sys.argv[3]
if change != "-":
    store = SlideStore.open(change)
    store.write_tile_scores(f"bench-{time.time_ns()}", np.zeros(len(store.read_tiles()), np.float32), {"kind": "bench"})
kwargs = {"incremental": False} if mode == "full" and "incremental" in inspect.signature(write_report).parameters else {}
t0 = time.perf_counter()
write_report(out, **kwargs)
print(json.dumps({"seconds": time.perf_counter() - t0}))
"""


def build(folder: Path, n: int, slide: Path, src: Path) -> Path:
    out = folder / "out"
    if (out / "manifest.csv").exists() and len(list(out.glob("*.zarr"))) == n:
        return out
    links = folder / "slides"
    links.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        link = links / f"s{i:04d}{slide.suffix}"
        if not link.exists():
            link.symlink_to(slide)
    env = {**os.environ, "PYTHONPATH": str(src)}
    subprocess.run([sys.executable, "-m", "slidestream.cli", "extract", str(links), "--out", str(out)],
                   env=env, check=True, capture_output=True)
    return out


def timed(src: Path, out: Path, mode: str, change: Path | None) -> float:
    env = {**os.environ, "PYTHONPATH": str(src)}
    proc = subprocess.run([sys.executable, "-c", WORKER, str(out), mode, str(change) if change else "-"],
                          env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-2000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])["seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--src", type=Path, default=REPO / "src")
    parser.add_argument("--baseline", type=Path, default=None)
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--slide", type=Path, default=SLIDE)
    parser.add_argument("--scratch", type=Path, default=DEFAULT_SCRATCH / "report_refresh")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS / "report_refresh.json")
    args = parser.parse_args()
    trees = {"after" if args.baseline else "current": args.src.resolve()}
    if args.baseline:
        trees = {"before": args.baseline.resolve(), **trees}
    out = build(args.scratch / f"n{args.n}", args.n, args.slide, args.src.resolve())
    stores = sorted(out.glob("*.zarr"))
    load = [round(x, 2) for x in os.getloadavg()]
    times: dict[str, dict[str, list[float]]] = {t: {"full": [], "after 1 change": [], "no change": []} for t in trees}
    for r in range(args.repeat):
        for label, src in trees.items():
            times[label]["full"].append(timed(src, out, "full", None))
            times[label]["after 1 change"].append(timed(src, out, "refresh", stores[r % len(stores)]))
            times[label]["no change"].append(timed(src, out, "refresh", None))
    results = {label: {case: round(statistics.median(v), 3) for case, v in cases.items()} for label, cases in times.items()}
    payload = {"n_slides": args.n, "slide": str(args.slide), "repeat": args.repeat, "trees": {k: str(v) for k, v in trees.items()},
               "seconds_median": results, "seconds_all": times, "machine": machine(),
               "load_average": [load, [round(x, 2) for x in os.getloadavg()]]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=1) + "\n")
    for label, cases in results.items():
        print(f"{label:>8}: " + ", ".join(f"{case} {s:.2f} s" for case, s in cases.items()))
    print(f"{args.n} slides; medians of {args.repeat}; {machine_line(payload['machine'])}; load {payload['load_average']}")


if __name__ == "__main__":
    main()
