"""Reading throughput of a remote slide (HTTP range requests via fsspec + tiffslide) against the
same file read locally, through ``slidestream.open_slide``.

The server is the range-capable local server of the tests (``tests/io/range_server.py``) on
127.0.0.1, so this measures the protocol and request overhead, not a network: real object
stores add their latency per request on top. Keep runs short (default 60 regions).

    PYTHONPATH=src:. python benchmarks/bench_remote.py [--regions 60] [--out benchmarks/results/remote.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from tests.io.range_server import serve

from slidestream.io import open_slide

SHARED = Path(__file__).resolve().parents[2] / "shared"
FILES = ["slides/CMU-1-Small-Region.svs", "slides/TCGA-XK-AAJU-pen-marks.tif", "formats/tcga-cr-7395.ome.tif"]
SIZE = 256


def throughput(path: str | Path, n: int, seed: int = 0) -> dict:
    t = time.perf_counter()
    with open_slide(path, backend="tiffslide") as slide:
        opened = time.perf_counter() - t
        rng = np.random.default_rng(seed)
        w, h = slide.dimensions
        locs = [(int(rng.integers(0, w - SIZE)), int(rng.integers(0, h - SIZE))) for _ in range(n)]
        t = time.perf_counter()
        for loc in locs:
            slide.read_region(loc, 0, (SIZE, SIZE))
        elapsed = time.perf_counter() - t
    return {"open_s": round(opened, 3), "regions_per_s": round(n / elapsed, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--regions", type=int, default=60)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    rows = []
    with serve(SHARED) as base:
        for name in FILES:
            local = throughput(SHARED / name, args.regions)
            remote = throughput(f"{base}/{name}", args.regions)
            row = {"file": name, "local": local, "http_127.0.0.1": remote,
                   "remote_over_local": round(remote["regions_per_s"] / local["regions_per_s"], 3)}
            print(json.dumps(row))
            rows.append(row)
    if args.out:
        args.out.write_text(json.dumps({"regions": args.regions, "size": SIZE, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
