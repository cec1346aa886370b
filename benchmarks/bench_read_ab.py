"""Fast-reader tiles/s before/after a change, interleaved in one run (issue 15, goal 3).

The tree at ``--before`` (git ref) and the working tree each read the same first ``--tiles``
tiles of each slide (``_read_ab_worker.py``: 1 and 2 threads, best of 3), in alternating order
over ``--repeat`` rounds; medians and after/before ratios go to ``results/read_ab.json`` and
``results/read_ab_table.md``. Ratios, not absolute tiles/s, are what survives a loaded machine.

    python benchmarks/bench_read_ab.py --before main /work/scratch/slides/mosaic-20k.tif
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, md_table, median, run_json, save_results
from bench_tiling_ab import REPO, extract_tree

WORKER = Path(__file__).resolve().parent / "_read_ab_worker.py"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("slides", nargs="+", type=Path)
    parser.add_argument("--before", default="main")
    parser.add_argument("--tiles", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    env = machine()
    tmp = Path(tempfile.mkdtemp(prefix="ab-tree-"))
    trees = {"before": extract_tree(args.before, tmp), "after": REPO / "src"}
    rows, results = [], []
    for slide in args.slides:
        runs: dict[str, list[dict]] = {"before": [], "after": []}
        for rep in range(args.repeat):
            for variant in (("before", "after") if rep % 2 == 0 else ("after", "before")):
                runs[variant].append(run_json([sys.executable, str(WORKER), str(slide), str(args.tiles)],
                                              env={"PYTHONPATH": str(trees[variant])}))
        rec = {"slide": slide.name, "before_ref": args.before, "runs": runs, "read_level": runs["after"][0]["read_level"]}
        row = [slide.name, rec["read_level"], runs["after"][0]["tiles"]]
        for w in (1, 2):
            b = median([r[f"tiles_per_s_{w}"] for r in runs["before"]])
            a = median([r[f"tiles_per_s_{w}"] for r in runs["after"]])
            rec[f"threads_{w}"] = {"before": b, "after": a, "ratio": a / b}
            row.append(f"{b:,.0f} → {a:,.0f} ({a / b:.2f}×)")
        results.append(rec)
        rows.append(row)
        print(row, flush=True)
    shutil.rmtree(tmp, ignore_errors=True)
    env["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    table = md_table(["slide", "read level", "tiles", "1 thread tiles/s before → after", "2 threads tiles/s before → after"], rows)
    save_results("read_ab", {"machine": env, "repeat": args.repeat, "results": results})
    (Path(__file__).resolve().parent / "results" / "read_ab_table.md").write_text(
        f"Load average at start {env['load_avg_at_start']}, at end {env['load_avg_at_end']} "
        f"({env['cores_usable']} cores); medians of {args.repeat} interleaved rounds, each the best of 3.\n\n{table}\n")
    print(table)


if __name__ == "__main__":
    main()
