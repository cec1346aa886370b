"""Shared helpers for the benchmark scripts: machine description, peak RSS, results files.

Not part of the package: benchmarks import slidestream (and the peers) like any user would.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
RESULTS = BENCH_DIR / "results"
DEFAULT_SLIDES = Path(os.environ.get("SLIDESTREAM_BENCH_SLIDES", "/work/scratch/slides"))
DEFAULT_SCRATCH = Path(os.environ.get("SLIDESTREAM_BENCH_SCRATCH", "/work/scratch/bench"))

PACKAGES = ("slidestream", "numpy", "pillow", "torch", "timm", "openslide-python", "openslide-bin", "tiffslide",
            "tifffile", "imagecodecs", "opencv-python-headless", "opencv-python", "simplejpeg", "zarr", "hs2p", "lazyslide", "wsidata", "slide2vec", "psutil")


# ---------------------------------------------------------------------------------- machine
def machine() -> dict[str, Any]:
    """CPU model, cores, RAM, OS, Python and package versions, and the load when asked."""
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return {
        "cpu": cpu,
        "cores_online": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "ram_gib": round(mem_kb / 2**20, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "packages": versions,
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "disk": "local disk, files in the OS page cache after the first read (warm)",
    }


def machine_line(m: dict[str, Any]) -> str:
    p = m["packages"]
    return (f"{m['cpu']}, {m['cores_usable']} cores, {m['ram_gib']} GiB RAM, {m['os']}, Python {m['python']}, "
            f"torch {p.get('torch', '?')}, openslide-bin {p.get('openslide-bin', '?')}, slidestream {p.get('slidestream', '?')}; "
            f"load average at start {m['load_avg_at_start'][0]} (shared machine)")


# ---------------------------------------------------------------------------------- memory
def _status(field: str) -> float:
    """A VmXXX field of /proc/self/status in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def rss_mb() -> float:
    return _status("VmRSS")


def peak_rss_mb() -> float:
    return _status("VmHWM")


def reset_peak() -> None:
    """Reset VmHWM to the current RSS (Linux >= 4.0), so the next peak belongs to the next stage."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


class Stage:
    """Time a stage and record its peak RSS above the RSS it started with.

    ``with Stage("tissue") as st: ...`` then ``st.record`` = seconds, rss_start_mb, peak_rss_mb and
    peak_above_start_mb (what the stage itself needed).
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.record: dict[str, Any] = {"stage": name}

    def __enter__(self) -> Stage:
        import gc

        gc.collect()
        reset_peak()
        self.record["rss_start_mb"] = round(rss_mb(), 1)
        self._t = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.record["seconds"] = round(time.perf_counter() - self._t, 4)
        peak = peak_rss_mb()
        self.record["peak_rss_mb"] = round(peak, 1)
        self.record["peak_above_start_mb"] = round(peak - self.record["rss_start_mb"], 1)


# ---------------------------------------------------------------------------------- subprocesses
def run_json(cmd: list[str], timeout: float = 3600, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run a worker that prints one JSON object as its last stdout line; raise with its stderr on failure."""
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{tail}")
    lines = [line for line in proc.stdout.strip().splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"{' '.join(cmd)} printed no JSON:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return json.loads(lines[-1])


def emit(obj: dict[str, Any]) -> None:
    """Worker side of :func:`run_json`."""
    sys.stdout.write(json.dumps(obj, default=_default) + "\n")
    sys.stdout.flush()


def _default(o: Any) -> Any:
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:
        pass
    if isinstance(o, Path):
        return str(o)
    raise TypeError(type(o).__name__)


# ---------------------------------------------------------------------------------- results
def save_results(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, default=_default) + "\n")
    return path


def md_table(header: list[str], rows: list[list[Any]]) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 100 else f"{v:,.0f}"
        return str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def median(values: list[float]) -> float:
    s = sorted(values)
    n = len(s)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])
