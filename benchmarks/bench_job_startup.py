"""A per-slide ``slidestream extract`` job as a cluster runs it: time to the first batch of features,
total wall time and the whole process's peak RSS (issue 15, goals 4 and 6).

Each run is a fresh process (``_first_tile_driver.py`` runs the real executable's ``main``) on one
small slide into a fresh output folder, so tissue detection, tiling, encoder import and load, the
first batch, the rest, the manifest and the report are all inside the wall time. Reported per
case (median of ``--repeat``):

  first_batch_s   launch → the encoder returned its first batch (interpreter start included)
  wall_s          launch → process exit
  work_s          the extract stage's own seconds from the run manifest (since the encoder loads
                  in the background while the slide is tiled, this includes the part of the load
                  that tiling did not hide: compare first_batch_s and wall_s across trees)
  peak_rss_mb     VmHWM of the process at exit: imports, encoder, reader and forward together
  peak_at_first_batch_mb, rss_at_first_batch_mb: the same at the first batch (imports + model)

``--baseline OTHER_SRC`` measures a second source tree alternately with this one, run by run, so
both see the same load (the machine is shared: compare only ratios of one run)::

    python benchmarks/bench_job_startup.py --baseline /path/to/main/src

Results: ``benchmarks/results/job_startup.json`` and ``job_startup_table.md``. Nothing asserts a time.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, machine, machine_line, md_table

REPO = Path(__file__).resolve().parents[1]
DRIVER = Path(__file__).resolve().parent / "_first_tile_driver.py"
SLIDE = REPO.parent / "shared" / "slides" / "CMU-1-Small-Region.svs"
CASES = {
    "handcrafted": ["--encoder", "handcrafted"],
    "resnet50-trunc (timm, random init)": ["--encoder", "resnet50-trunc", "--random-init"],
    "kaiko-vits16 (timm ViT, random init)": ["--encoder", "kaiko-vits16", "--random-init"],
}


def one_run(src: Path, slide: Path, args: list[str], scratch: Path) -> dict:
    out = scratch / "out"
    shutil.rmtree(out, ignore_errors=True)
    record = scratch / "record.json"
    record.unlink(missing_ok=True)
    env = {**os.environ, "PYTHONPATH": str(src), "SS_BENCH_OUT": str(record)}
    env.pop("PYTHONSTARTUP", None)
    t0 = time.time()
    proc = subprocess.run([sys.executable, str(DRIVER), "extract", str(slide), "--out", str(out), *args],
                          env=env, capture_output=True, text=True, cwd=REPO)
    wall = time.time() - t0
    if proc.returncode != 0:
        raise SystemExit(f"extract failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    rec = json.loads(record.read_text())
    work = None
    manifest = out / "manifest.csv"
    if manifest.exists():
        with manifest.open() as fh:
            rows = [r for r in csv.DictReader(fh) if r.get("stage", "").startswith("features/")]
        if rows and rows[-1].get("seconds"):   # less the wait for a background encoder load, as bench_extract
            work = float(rows[-1]["seconds"]) - float(json.loads(rows[-1].get("details") or "{}").get("encoder_wait_s", 0.0))
    return {"wall_s": wall, "first_batch_s": rec["first_batch_t"] - t0 if rec["first_batch_t"] else None,
            "work_s": work, "peak_rss_mb": rec["hwm_exit_mb"], "peak_at_first_batch_mb": rec.get("hwm_first_batch_mb"),
            "rss_at_first_batch_mb": rec.get("rss_first_batch_mb"), "modules": rec["modules"],
            "torchvision": rec["torchvision"], "timm": rec["timm"], "torch._dynamo": rec["torch._dynamo"]}


def summarise(runs: list[dict]) -> dict:
    out: dict = {}
    for key in runs[0]:
        values = [r[key] for r in runs if r[key] is not None]
        if values and isinstance(values[0], bool):
            out[key] = values[0]
        elif values:
            out[key] = round(statistics.median(values), 3)
        else:
            out[key] = None
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--src", type=Path, default=REPO / "src")
    parser.add_argument("--baseline", type=Path, default=None, help="a second source tree, measured alternately")
    parser.add_argument("--slide", type=Path, default=SLIDE)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cases", nargs="*", default=list(CASES), help="subset of: " + ", ".join(CASES))
    parser.add_argument("--out", type=Path, default=RESULTS / "job_startup.json")
    args = parser.parse_args()
    trees = {"after" if args.baseline else "current": args.src.resolve()}
    if args.baseline:
        trees = {"before": args.baseline.resolve(), **trees}
    load_start = [round(x, 2) for x in os.getloadavg()]
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="ss-job-startup-") as tmp:
        scratch = Path(tmp)
        for case in args.cases:
            runs: dict[str, list[dict]] = {label: [] for label in trees}
            one_run(next(iter(trees.values())), args.slide, CASES[case], scratch)   # warm the page cache
            for _ in range(args.repeat):
                for label, src in trees.items():
                    runs[label].append(one_run(src, args.slide, CASES[case], scratch))
            results[case] = {label: {"median": summarise(r), "runs": r} for label, r in runs.items()}
            for label in trees:
                m = results[case][label]["median"]
                print(f"{case:<40} {label:>7}: first batch {m['first_batch_s']:.2f} s, wall {m['wall_s']:.2f} s, "
                      f"work {m['work_s']} s, peak RSS {m['peak_rss_mb']:.0f} MB "
                      f"(at first batch {m['peak_at_first_batch_mb']:.0f}), torchvision={m['torchvision']}",
                      flush=True)
    payload = {"slide": str(args.slide), "repeat": args.repeat, "trees": {k: str(v) for k, v in trees.items()},
               "load_average": [load_start, [round(x, 2) for x in os.getloadavg()]], "machine": machine(),
               "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=1) + "\n")
    header = ["encoder", "tree", "first batch s", "wall s", "extract stage s", "start-up + teardown share",
              "peak RSS MB (process)", "peak RSS MB at first batch", "torchvision imported"]
    rows = []
    for case, by_tree in results.items():
        for label, r in by_tree.items():
            m = r["median"]
            share = "" if not m["work_s"] else f"{1 - m['work_s'] / m['wall_s']:.0%}"
            rows.append([case, label, f"{m['first_batch_s']:.2f}", f"{m['wall_s']:.2f}", m["work_s"], share,
                         f"{m['peak_rss_mb']:.0f}", f"{m['peak_at_first_batch_mb']:.0f}", m["torchvision"]])
    table = md_table(header, rows)
    note = (f"\n\nSlide {args.slide.name}; medians of {args.repeat} fresh processes per tree, trees interleaved run "
            f"by run. Machine: {machine_line(payload['machine'])}; load average start/end {payload['load_average']}. "
            "Where the encoder loads in a background thread, 'extract stage s' includes the part of the load "
            "that tiling did not hide; compare first batch and wall.\n")
    args.out.with_name(f"{args.out.stem}_table.md").write_text(table + note)
    print(table + note)


if __name__ == "__main__":
    main()
