"""Tiles/s of slidestream's fast reader for one source tree (run by ``bench_read_ab.py``).

Tiles the slide in memory (0.5 um/px, 224 px), then reads the first ``n`` tiles in batches of 64
with 1 and 2 threads, best of 3 each (a fresh reader, so a fresh decoded-tile cache, per run).
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np


def main() -> None:
    slide_path, n = sys.argv[1], int(sys.argv[2])
    from slidestream.extraction import open_tile_reader
    from slidestream.io import open_slide
    from slidestream.tiling.grid import tile_slide
    from slidestream.tissue.detect import detect_tissue

    with open_slide(slide_path) as slide:
        grid = tile_slide(slide, detect_tissue(slide).geometry)
        spec = slide.spec
    coords = np.asarray(grid.coords[:n])
    attrs = grid.attrs()
    record = {"tiles": len(coords), "read_level": grid.read_level}
    for workers in (1, 2):
        best = 0.0
        for _ in range(3):
            reader = open_tile_reader(spec, attrs, fast=True, workers=workers)
            try:
                start = time.perf_counter()
                for i in range(0, len(coords), 64):
                    reader.read_batch(coords[i:i + 64])
                best = max(best, len(coords) / (time.perf_counter() - start))
                record["reader"] = reader.name
            finally:
                reader.close()
        record[f"tiles_per_s_{workers}"] = best
    sys.stdout.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
