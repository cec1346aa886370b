"""One timed tissue + tiling run of one slidestream source tree (before or after a change).

Run by ``bench_tiling_ab.py`` with ``PYTHONPATH`` pointing at the tree to measure. Modes:
``api`` (``open_slide`` + ``detect_tissue`` + ``tile_slide``, given the detection result where the tree accepts it), ``stage`` (``run_tiles`` into a fresh store with
the PNGs, what ``slidestream tile`` does after its imports), ``pair`` (api and stage alternately,
5 pairs in one process after a warm-up of each: medians and the median per-pair stage / api ratio,
which a shared machine's load changes far less than it changes either time). One warm-up run first, so file
cache and lazy imports are not timed. Prints one JSON line: seconds, tiles, geometry as WKB hex. An optional third argument is
the default mpp for slides whose files carry none (api mode).
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    mode, slide_path = sys.argv[1], Path(sys.argv[2])
    default_mpp = float(sys.argv[3]) if len(sys.argv) > 3 else None  # for slides without mpp (shared ones)
    import inspect

    import shapely

    from slidestream.io import open_slide
    from slidestream.tiling.grid import tile_slide
    from slidestream.tissue.detect import detect_tissue

    # trees that take the detection result tile from its raster mask (the documented API);
    # older trees take the geometry
    takes_result = "TissueResult" in str(inspect.signature(tile_slide).parameters["tissue"].annotation)

    def api() -> tuple[float, float, float, object, np.ndarray]:
        t_open = time.perf_counter()
        with open_slide(slide_path, default_mpp=default_mpp) as slide:  # opening (with its integrity check) is timed: hs2p's call opens too
            t0 = time.perf_counter()
            result = detect_tissue(slide)
            t1 = time.perf_counter()
            grid = tile_slide(slide, result if takes_result else result.geometry)
            t2 = time.perf_counter()
        return t0 - t_open, t1 - t0, t2 - t1, result.geometry, grid.coords

    def stage() -> tuple[float, np.ndarray, object]:
        from slidestream.pipeline.stages import SlideSource, run_tiles
        from slidestream.store.slide_store import SlideStore
        from slidestream.tiling.params import TilingParams

        out = Path(tempfile.mkdtemp(prefix="ab-stage-"))
        try:
            source = SlideSource(slide_path)
            t0 = time.perf_counter()
            run_tiles(source, out, TilingParams())
            seconds = time.perf_counter() - t0
            coords = SlideStore.open(out / f"{source.slide_id}.zarr").read_tiles().coords
            return seconds, np.asarray(coords), None
        finally:
            shutil.rmtree(out, ignore_errors=True)

    if mode == "pair":  # api and stage alternately in one process: their ratio under the same load
        import statistics

        api(), stage()
        pairs = []
        for _ in range(5):
            open_s, tissue_s, tiling_s, _, coords = api()
            pairs.append((open_s + tissue_s + tiling_s, stage()[0]))
        record = {"api_s": statistics.median(a for a, _ in pairs), "stage_s": statistics.median(s for _, s in pairs),
                  "ratio": statistics.median(s / a for a, s in pairs), "pairs": pairs}
        record["seconds"] = record["ratio"]
    elif mode == "api":
        api()
        open_s, tissue_s, tiling_s, geometry, coords = api()
        record = {"open_s": open_s, "tissue_s": tissue_s, "tiling_s": tiling_s, "seconds": open_s + tissue_s + tiling_s,
                  "wkb": shapely.to_wkb(geometry, hex=True)}
    else:
        stage()
        seconds, coords, _ = stage()
        record = {"seconds": seconds}
    record.update(tiles=len(coords), coords=np.asarray(coords).tolist())
    sys.stdout.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
