"""Start-up cost: ``import slidestream``, ``slidestream --help`` and light commands, each in a fresh process.

Every Snakemake job and every ``slidestream`` call pays this before any work, so it is measured as
a user meets it: a new interpreter, wall time of the whole process, median of ``--repeat`` runs
(default 5), plus the number of modules an import loads and the biggest cumulative entries of
``python -X importtime``. ``--src`` points at the source tree to measure (default: this checkout's
``src``); ``--baseline OTHER_SRC`` measures a second tree alternately with it, run by run, so
both see the same machine load (on a shared machine the load swings within minutes)::

    python benchmarks/startup.py --baseline /path/to/main/src     # labels "before" and "after"

Results go to ``benchmarks/results/startup.json`` (one entry per label, replaced on rerun).
Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, machine

REPO = Path(__file__).resolve().parents[1]
SMALL_SLIDE = REPO / "src" / "slidestream" / "data" / "CMU-1-Small-Region.svs"

CLI = "from slidestream.cli import main; import sys; sys.argv[0] = 'slidestream'; main()"
CASES: dict[str, list[str]] = {
    "python (no import)": ["-c", "pass"],
    "import slidestream": ["-c", "import slidestream"],
    "import slidestream.encoders": ["-c", "import slidestream.encoders"],
    "from slidestream.encoders import load_encoder": ["-c", "from slidestream.encoders import load_encoder"],
    "slidestream --help": ["-c", CLI, "--help"],
    "slidestream tile --help": ["-c", CLI, "tile", "--help"],
    "slidestream info SLIDE": ["-c", CLI, "info", str(SMALL_SLIDE)],
}
HELP = ("import contextlib, io, sys; sys.argv = ['slidestream', '--help']\n"
        "from slidestream.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n    main()")
COUNT_MODULES = {
    "import slidestream": "import slidestream",
    "import slidestream.encoders": "import slidestream.encoders",
    "from slidestream.encoders import load_encoder": "from slidestream.encoders import load_encoder",
    "slidestream --help (modules)": HELP,
}


def env_for(src: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(src)
    env.pop("PYTHONSTARTUP", None)
    return env


def wall(args: list[str], envs: dict[str, dict[str, str]], repeat: int) -> dict[str, dict[str, float | int]]:
    """Median wall time per tree; the trees take turns, run by run."""
    times: dict[str, list[float]] = {label: [] for label in envs}
    codes: dict[str, int] = {}
    for _ in range(repeat):
        for label, env in envs.items():
            t0 = time.perf_counter()
            proc = subprocess.run([sys.executable, *args], env=env, capture_output=True, cwd=REPO)
            times[label].append(time.perf_counter() - t0)
            codes[label] = proc.returncode
    return {label: {"median_s": round(statistics.median(t), 3), "min_s": round(min(t), 3),
                    "max_s": round(max(t), 3), "exit_code": codes[label]} for label, t in times.items()}


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def modules_loaded(statement: str, env: dict[str, str]) -> dict[str, int | bool]:
    probe = f"import sys; base = set(sys.modules)\n{statement}\nnew = set(sys.modules) - base\n" \
            "print(len(new), int('torch' in sys.modules), int('torchvision' in sys.modules), " \
            "int('pandas' in sys.modules), int('zarr' in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True, cwd=REPO)
    n, torch, torchvision, pandas, zarr = map(int, out.stdout.split())
    return {"modules": n, "torch": bool(torch), "torchvision": bool(torchvision), "pandas": bool(pandas),
            "zarr": bool(zarr)}


def importtime_top(statement: str, env: dict[str, str], n: int = 12) -> list[tuple[str, float]]:
    """The ``n`` top-level packages with the largest cumulative import time (``-X importtime``)."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", statement], env=env, capture_output=True,
                          text=True, cwd=REPO)
    best: dict[str, float] = {}
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _self_us, cum_us, name = line[len("import time:"):].split("|")
        package = name.strip().split(".")[0]
        best[package] = max(best.get(package, 0.0), int(cum_us) / 1e6)
    return sorted(((k, round(v, 3)) for k, v in best.items()), key=lambda kv: -kv[1])[:n]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--src", type=Path, default=REPO / "src", help="source tree to measure (PYTHONPATH)")
    parser.add_argument("--label", default=None, help="name of this measurement (default: after, or current)")
    parser.add_argument("--baseline", type=Path, default=None, help="a second source tree, measured alternately")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS / "startup.json")
    parser.add_argument("--modules-only", action="store_true",
                        help="only re-count modules and -X importtime; keep the wall times on file")
    args = parser.parse_args()
    label = args.label or ("after" if args.baseline else "current")
    trees = {label: args.src.resolve()}
    if args.baseline is not None:
        trees = {"before": args.baseline.resolve(), **trees}
    envs = {name: env_for(src) for name, src in trees.items()}
    for env in envs.values():  # warm the file cache once
        for statement in ("import slidestream", "import slidestream.cli"):
            subprocess.run([sys.executable, "-c", statement], env=env, capture_output=True, cwd=REPO)
    load_before = load_average()
    data = json.loads(args.out.read_text()) if args.out.exists() else {}
    if args.modules_only:
        walls = {case: {name: data["runs"][name]["wall"][case] for name in trees} for case in CASES}
    else:
        walls = {name: wall(case, envs, args.repeat) for name, case in CASES.items()}
    results = {}
    for name, src in trees.items():
        env = envs[name]
        results[name] = {
            "src": str(src),
            "repeat": args.repeat,
            "wall": {case: walls[case][name] for case in CASES},
            "modules": {case: modules_loaded(stmt, env) for case, stmt in COUNT_MODULES.items()},
            "importtime_top": {case: importtime_top(stmt, env) for case, stmt in COUNT_MODULES.items()},
            "load_average": data["runs"][name]["load_average"] if args.modules_only else [load_before, load_average()],
        }
    for name, result in results.items():
        for case, row in result["wall"].items():
            print(f"{name:>8}  {case:<32} {row['median_s']:7.3f} s  (min {row['min_s']:.3f}, exit {row['exit_code']})")
        for case, row in result["modules"].items():
            print(f"{name:>8}  {case:<32} {row['modules']:5d} modules  "
                  + ", ".join(k for k in ("torch", "torchvision", "pandas", "zarr") if row[k]))
    print(f"load average (1, 5, 15 min) before/after: {load_before} / {load_average()}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    data.setdefault("runs", {}).update(results)
    data["machine"] = machine()
    args.out.write_text(json.dumps(data, indent=1) + "\n")
    print(f"→ {args.out}")


if __name__ == "__main__":
    main()
