"""Start-up cost: ``import slidestream``, ``slidestream --help`` and light commands, each in a fresh process.

Every Snakemake job and every ``slidestream`` call pays this before any work, so it is measured as
a user meets it: a new interpreter, wall time of the whole process, median of ``--repeat`` runs
(default 5), plus the number of modules an import loads and the biggest cumulative entries of
``python -X importtime``. ``--src`` points at the source tree to measure (default: this checkout's
``src``), so two checkouts can be compared on the same machine in one sitting::

    python benchmarks/startup.py --label after
    python benchmarks/startup.py --src /path/to/other/src --label before

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
    "slidestream --help": ["-c", CLI, "--help"],
    "slidestream tile --help": ["-c", CLI, "tile", "--help"],
    "slidestream info SLIDE": ["-c", CLI, "info", str(SMALL_SLIDE)],
    "slidestream encoders": ["-c", CLI, "encoders"],
}
COUNT_MODULES = {
    "import slidestream": "import slidestream",
    "import slidestream.encoders": "import slidestream.encoders",
    "slidestream --help (modules)": "import slidestream.cli",
}


def env_for(src: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(src)
    env.pop("PYTHONSTARTUP", None)
    return env


def wall(args: list[str], env: dict[str, str], repeat: int) -> dict[str, float | int]:
    times = []
    code = 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, *args], env=env, capture_output=True, cwd=REPO)
        times.append(time.perf_counter() - t0)
        code = proc.returncode
    return {"median_s": round(statistics.median(times), 3), "min_s": round(min(times), 3),
            "max_s": round(max(times), 3), "exit_code": code}


def modules_loaded(statement: str, env: dict[str, str]) -> dict[str, int | bool]:
    probe = f"import sys; base = set(sys.modules); {statement}; new = set(sys.modules) - base; " \
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
    parser.add_argument("--label", default="current", help="name of this measurement in the results file")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS / "startup.json")
    args = parser.parse_args()
    env = env_for(args.src.resolve())
    for statement in ("import slidestream", "import slidestream.cli"):  # warm the file cache once
        subprocess.run([sys.executable, "-c", statement], env=env, capture_output=True, cwd=REPO)
    result = {
        "src": str(args.src.resolve()),
        "repeat": args.repeat,
        "wall": {name: wall(case, env, args.repeat) for name, case in CASES.items()},
        "modules": {name: modules_loaded(stmt, env) for name, stmt in COUNT_MODULES.items()},
        "importtime_top": {name: importtime_top(stmt, env) for name, stmt in COUNT_MODULES.items()},
    }
    for name, row in result["wall"].items():
        print(f"{args.label:>8}  {name:<32} {row['median_s']:6.3f} s  (min {row['min_s']:.3f}, exit {row['exit_code']})")
    for name, row in result["modules"].items():
        print(f"{args.label:>8}  {name:<32} {row['modules']:5d} modules  "
              + ", ".join(k for k in ("torch", "torchvision", "pandas", "zarr") if row[k]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    data = json.loads(args.out.read_text()) if args.out.exists() else {}
    data.setdefault("runs", {})[args.label] = result
    data["machine"] = machine()
    args.out.write_text(json.dumps(data, indent=1) + "\n")
    print(f"→ {args.out}")


if __name__ == "__main__":
    main()
