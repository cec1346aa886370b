"""Tissue + tiling before/after a change, in one run, on the same slides (issue 15).

Measures the tree at ``--before`` (a git ref, extracted with ``git archive``) against the working
tree, each run in a fresh process (``_tiling_ab_worker.py``, one warm-up then one timed run),
**interleaved** (before, after, after, before, ...) so a shared machine's load falls on both
alike; reports medians and after/before ratios. Rows:

- ``api``: ``detect_tissue`` + ``tile_slide``;
- ``stage``: ``run_tiles`` into a fresh store with GeoJSON and PNGs (``slidestream tile`` after imports);
- ``pair``: ``api`` and ``stage`` alternately in one process (5 pairs), the median per-pair
  stage / api ratio: goal 2 of issue 15 measured under the same load for both;
- ``cli``: the ``slidestream tile`` command's wall time (fresh process, imports included);
- hs2p ``tile_slide`` (hsv) when ``--peer-python`` names an interpreter that imports hs2p.

Quality: IoU of the before/after tissue geometries (exact polygon areas) and the Jaccard index
of the kept tile sets. Results go to ``results/tiling_ab.json`` and ``results/tiling_ab_table.md``.

    python benchmarks/bench_tiling_ab.py --before main /work/scratch/slides/mosaic-40k.tif ...
    python benchmarks/bench_tiling_ab.py --before main --modes api --default-mpp 0.5 --name tiling_ab_shared \
        ../shared/slides/*.{svs,tif}     # tissue IoU on the shared slides (three carry no mpp)
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import shapely

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, md_table, median, run_json, save_results

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WORKER = HERE / "_tiling_ab_worker.py"
STAGE_WORKER = HERE / "_stage_worker.py"


def extract_tree(ref: str, dest: Path) -> Path:
    archive = subprocess.run(["git", "-C", str(REPO), "archive", ref, "src"], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest / "src"


def run_worker(src: Path, mode: str, slide: Path, default_mpp: float | None = None) -> dict:
    extra = [] if default_mpp is None else [str(default_mpp)]
    return run_json([sys.executable, str(WORKER), mode, str(slide), *extra], env={"PYTHONPATH": str(src)})


def run_cli(src: Path, slide: Path) -> float:
    out = Path(tempfile.mkdtemp(prefix="ab-cli-"))
    try:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "slidestream.cli", "tile", str(slide), "--out", str(out)], check=True,
                       capture_output=True, env={**os.environ, "PYTHONPATH": str(src)})
        return time.perf_counter() - t0
    finally:
        shutil.rmtree(out, ignore_errors=True)


def run_hs2p(python: str, slide: Path) -> float:
    with tempfile.TemporaryDirectory(prefix="ab-hs2p-") as tmp:
        rec = run_json([python, str(STAGE_WORKER), "hs2p", "tiling", "--slide", str(slide), "--out", tmp,
                        "--coords", str(Path(tmp) / "c.npz")], env={"PYTHONPATH": str(REPO / "src")})
        return float(rec["stages"][0]["seconds"])


def jaccard(a: list, b: list) -> float:
    sa, sb = {tuple(x) for x in a}, {tuple(x) for x in b}
    return len(sa & sb) / max(1, len(sa | sb))


def iou(wkb_a: str, wkb_b: str) -> float:
    a, b = shapely.from_wkb(wkb_a), shapely.from_wkb(wkb_b)
    union = shapely.union(a, b).area
    return 1.0 if union == 0 else float(shapely.intersection(a, b).area / union)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("slides", nargs="+", type=Path)
    parser.add_argument("--before", default="main", help="git ref of the baseline tree")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--modes", nargs="+", default=["api", "stage", "cli"], choices=["api", "stage", "pair", "cli"])
    parser.add_argument("--peer-python", help="interpreter with hs2p installed (its own venv)")
    parser.add_argument("--name", default="tiling_ab")
    parser.add_argument("--default-mpp", type=float,
                        help="mpp for slides whose files carry none (the shared slides; api mode only)")
    args = parser.parse_args()
    env = machine()
    tmp = Path(tempfile.mkdtemp(prefix="ab-tree-"))
    trees = {"before": extract_tree(args.before, tmp), "after": REPO / "src"}
    rows, results = [], []
    for slide in args.slides:
        rec: dict = {"slide": slide.name, "before_ref": args.before}
        times: dict[str, list[float]] = {}
        last: dict[str, dict] = {}
        for rep in range(args.repeat):
            order = ("before", "after") if rep % 2 == 0 else ("after", "before")
            for mode in args.modes:
                for variant in order:
                    if mode == "cli":
                        seconds = run_cli(trees[variant], slide)
                    else:
                        out = run_worker(trees[variant], mode, slide, args.default_mpp if mode == "api" else None)
                        seconds = out["seconds"]
                        last[f"{mode}/{variant}"] = out
                    times.setdefault(f"{mode}/{variant}", []).append(seconds)
            if args.peer_python:
                times.setdefault("hs2p", []).append(run_hs2p(args.peer_python, slide))
        med = {k: median(v) for k, v in times.items()}
        rec["seconds"] = {k: {"median": med[k], "all": v} for k, v in times.items()}
        if "api/before" in last:
            rec["geometry_iou"] = iou(last["api/before"]["wkb"], last["api/after"]["wkb"])
            rec["tiles"] = {"before": last["api/before"]["tiles"], "after": last["api/after"]["tiles"]}
            rec["tile_jaccard"] = jaccard(last["api/before"]["coords"], last["api/after"]["coords"])
        for mode in args.modes:
            rec[f"{mode}_after_over_before"] = med[f"{mode}/after"] / med[f"{mode}/before"]
        if "pair" in args.modes:
            rec["pair_runs"] = {v: {k: x for k, x in last[f"pair/{v}"].items() if k not in ("coords", "wkb")}
                                for v in ("before", "after")}
        if "cli" in args.modes and "api" in args.modes:
            rec["cli_over_api"] = {v: med[f"cli/{v}"] / med[f"api/{v}"] for v in ("before", "after")}
        if "stage" in args.modes and "api" in args.modes:
            rec["stage_over_api"] = {v: med[f"stage/{v}"] / med[f"api/{v}"] for v in ("before", "after")}
        if "hs2p" in med:
            rec["api_over_hs2p"] = {v: med[f"api/{v}"] / med["hs2p"] for v in ("before", "after") if f"api/{v}" in med}
        results.append(rec)
        row = [slide.name]
        for mode in args.modes:
            unit = "×" if mode == "pair" else ""
            row += [f"{med[f'{mode}/before']:.2f}{unit} → {med[f'{mode}/after']:.2f}{unit} ({rec[f'{mode}_after_over_before']:.2f}×)"]
        row += [f"{med['hs2p']:.2f}" if "hs2p" in med else "—",
                f"{rec['api_over_hs2p']['after']:.2f}" if "api_over_hs2p" in rec else "—",
                f"{rec['cli_over_api']['before']:.1f} → {rec['cli_over_api']['after']:.1f}" if "cli_over_api" in rec else "—",
                f"{rec.get('geometry_iou', float('nan')):.4f}",
                f"{rec['tiles']['before']} / {rec['tiles']['after']} ({rec['tile_jaccard']:.4f})" if "tiles" in rec else "—"]
        rows.append(row)
        print(row, flush=True)
    shutil.rmtree(tmp, ignore_errors=True)
    env["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    header = ["slide", *[("stage / api in one process, before → after (ratio)" if m == "pair" else
                          f"{m} s before → after (ratio)") for m in args.modes], "hs2p s", "api / hs2p (after)",
              "cli / api before → after", "tissue IoU before/after", "tiles before / after (Jaccard)"]
    table = md_table(header, rows)
    save_results(args.name, {"machine": env, "repeat": args.repeat, "results": results})
    (HERE / "results" / f"{args.name}_table.md").write_text(
        f"Load average at start {env['load_avg_at_start']}, at end {env['load_avg_at_end']} "
        f"({env['cores_usable']} cores); medians of {args.repeat} interleaved runs.\n\n{table}\n")
    print(table)


if __name__ == "__main__":
    main()
