"""Seconds per slide of each tissue method on the CPU: classical, GrandQC, HEST, GrandQC artifacts.

Random-init weights (``random_init=True``): the forward cost of a network does not depend on its
weight values, so the timings hold for the released weights; the masks do not (do not read the
tissue areas printed here as results). Each method runs once per slide, after a warm-up
(model build and a first small forward are done before, reported as ``build_s``). Tile QC (``tiling/qc``)
is timed too, on a 0.5 um/px grid of 224 px tiles (the slide's own mpp when coarser).

    PYTHONPATH=src python benchmarks/bench_tissue_methods.py                  # the shared slides
    PYTHONPATH=src python benchmarks/bench_tissue_methods.py --mosaic /work/scratch/slides/mosaic-10240.tif

The shared slides without an mpp get the values the tests assume (0.5, 0.5, 2.0 um/px).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, machine_line, md_table, save_results

from slidestream.io import open_slide
from slidestream.tiling import tile_slide
from slidestream.tissue import TissueParams, segment_tissue

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "slides"
SLIDES = [(SHARED / "CMU-1-Small-Region.svs", None), (SHARED / "tcga-cr-7395-01a-01-ts1.svs", 0.5),
          (SHARED / "TCGA-XK-AAJU-pen-marks.tif", 0.5), (SHARED / "kidney-48-5.tif", 2.0)]
METHODS = {
    "classical": TissueParams(),
    "grandqc (10 um/px)": TissueParams(method="grandqc", random_init=True),
    "hest fast (2 um/px)": TissueParams(method="hest", random_init=True, model_mpp=2.0),
    "hest (1 um/px)": TissueParams(method="hest", random_init=True),
    "classical + grandqc artifacts (1 um/px)": TissueParams(artifacts=True, random_init=True),
}


def warm_up(params: TissueParams) -> None:
    """Build the method's models into the process cache and run one 64 px forward through each."""
    from slidestream.tissue.segment import _model

    names = ([params.method] if params.method != "classical" else []) + (["grandqc_artifact"] if params.run_artifacts else [])
    for name in names:
        model, _, _ = _model(name, None, True, "cpu")
        with torch.inference_mode():
            model(torch.zeros(1, 3, 64, 64))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mosaic", type=Path, action="append", default=[], help="extra slides (e.g. make_slides.py mosaics)")
    ap.add_argument("--methods", nargs="*", default=list(METHODS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", nargs="*", default=None, help="only slides whose file name starts with one of these")
    ap.add_argument("--name", default="tissue_methods", help="results/<name>.json and results/<name>_table.md")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    slides = SLIDES + [(p, None) for p in args.mosaic]
    if args.only:
        slides = [(p, m) for p, m in slides if p.name.startswith(tuple(args.only))]
    rows, records = [], []
    for name in args.methods:  # build every model once (and one forward), off the clock
        t = time.perf_counter()
        warm_up(METHODS[name])
        records.append({"method": name, "build_s": time.perf_counter() - t})
    for path, mpp in slides:
        with open_slide(path, default_mpp=mpp) as slide:
            area = slide.width * slide.mpp[0] * slide.height * slide.mpp[1] / 1e6
            row: list[object] = [path.name, f"{slide.width}x{slide.height}", round(area, 1)]
            for name in args.methods:
                t, c = time.perf_counter(), time.process_time()
                result = segment_tissue(slide, METHODS[name])
                dt, dc = time.perf_counter() - t, time.process_time() - c
                records.append({"slide": path.name, "method": name, "seconds": dt, "cpu_seconds": dc, "mm2": area,
                                "tissue_fraction": float(result.mask.mean())})
                row.append(f"{dt:.2f} ({dc:.1f})")
                print(f"  {path.name} {name}: {dt:.2f} s wall, {dc:.1f} s CPU", flush=True)
            tile_mpp = max(0.5, float(min(slide.mpp)))  # kidney is 2 um/px: no upsampling
            t = time.perf_counter()
            grid = tile_slide(slide, segment_tissue(slide, METHODS["classical"]).geometry, mpp=tile_mpp, tile_size=224,
                              tile_qc=True)
            with_qc = time.perf_counter() - t
            t = time.perf_counter()
            tile_slide(slide, segment_tissue(slide, METHODS["classical"]).geometry, mpp=tile_mpp, tile_size=224)
            row.append(f"{len(grid)} tiles: +{max(with_qc - (time.perf_counter() - t), 0):.2f}")
            rows.append(row)
            print(row, flush=True)
    m = machine()
    table = md_table(["slide", "level-0 px", "mm²", *args.methods, "tile QC cost (s)"], rows)
    text = (f"Seconds per slide, wall (CPU seconds of all threads), CPU ({args.threads} threads), random-init "
            f"weights (timing only).\n"
            f"{machine_line(m)}\n\n{table}\n")
    print(text)
    save_results(args.name, {"machine": m, "records": records, "threads": args.threads})
    (Path(__file__).resolve().parent / "results" / f"{args.name}_table.md").write_text(text)


if __name__ == "__main__":
    main()
