"""Tissue detection + tiling across slide sizes, against the peers, with peak RSS per stage.

For every mosaic slide (``make_slides.py``) and every tool, each stage runs in a fresh process
(``_stage_worker.py``) so its peak RSS is its own; imports happen before the stage starts and are
not counted. Same slides, same target (0.5 um/px, 224 px tiles, a tile kept when >= 25 % tissue),
same reader (openslide) for every tool:

- slidestream: ``tissue`` (detect + store) then ``tiles`` (grid + store), as the CLI does
  (without the PNG overlays, which the peers do not draw either; ``--images`` adds them);
- hs2p: ``tile_slide`` (hsv segmentation at downsample 64 + tiling in one call);
- lazyslide: ``find_tissues`` then ``tile_tissues``.
  (slide2vec tiles by calling hs2p's ``tile_slides``: the same code as the hs2p row.)

Then ``slidestream extract`` of the first ``--extract-tiles`` tiles of each slide with the
``handcrafted`` encoder, to show that extraction speed and RSS do not depend on slide size.

Reports, per slide: seconds per stage (median of ``--repeat`` runs), time = a + b * tiles fits
per tool, peak RSS above the stage's start, ours/theirs time ratios, and tile-set agreement:
tiles kept by both (a tile of theirs matches one of ours when they overlap with IoU >= 0.5) and
the Jaccard index of the tiled areas.

    /work/benchvenv/bin/python benchmarks/bench_tiling.py --slides /work/scratch/slides
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    DEFAULT_SCRATCH,
    DEFAULT_SLIDES,
    machine,
    machine_line,
    md_table,
    median,
    run_json,
    save_results,
)

WORKER = Path(__file__).resolve().parent / "_stage_worker.py"
PEERS = ("hs2p", "lazyslide")


def peer_available(python: str, name: str) -> str | None:
    import subprocess

    proc = subprocess.run([python, "-c", f"import {name}"], capture_output=True, text=True)
    return None if proc.returncode == 0 else (proc.stderr.strip().splitlines() or ["import failed"])[-1]


# ---------------------------------------------------------------------------------- agreement
def agreement(ours: np.ndarray, ours_side: int, theirs: np.ndarray, theirs_side: int, extent: tuple[int, int]) -> dict:
    """How far two tile sets agree.

    ``same_tile``: tiles of theirs that are one of ours (one-to-one, IoU >= 0.5; depends on where
    each tool anchors its grid). ``*_covered_by_*``: share of one tool's tiles whose area is at
    least half covered by the other's tiles (independent of the grid phase): "both keep it".
    ``area_jaccard``: intersection over union of the tiled areas.
    """
    ours = np.asarray(ours).reshape(-1, 2)
    theirs = np.asarray(theirs).reshape(-1, 2)
    out = {"ours": len(ours), "theirs": len(theirs)}
    if not len(ours) or not len(theirs):
        return {**out, "same_tile": 0, "same_tile_share_of_ours": 0.0, "ours_covered_by_theirs": 0.0,
                "theirs_covered_by_ours": 0.0, "area_jaccard": 0.0}
    side = max(ours_side, theirs_side)
    # match on a hash of our tile origins: a tile of theirs can only match one whose origin is within a side
    index = {(int(x) // side, int(y) // side): [] for x, y in ours}
    for i, (x, y) in enumerate(ours):
        index[(int(x) // side, int(y) // side)].append(i)
    used = np.zeros(len(ours), bool)
    both = 0
    inter_needed = 0.5 * 2 * side * side / 1.5  # IoU >= 0.5 <=> intersection >= 2/3 of a tile
    for x, y in theirs:
        cx, cy = int(x) // side, int(y) // side
        best, best_inter = -1, 0.0
        for gx in (cx - 1, cx, cx + 1):
            for gy in (cy - 1, cy, cy + 1):
                for i in index.get((gx, gy), ()):
                    if used[i]:
                        continue
                    ix = max(0, min(ours[i, 0] + ours_side, x + theirs_side) - max(ours[i, 0], x))
                    iy = max(0, min(ours[i, 1] + ours_side, y + theirs_side) - max(ours[i, 1], y))
                    if ix * iy > best_inter:
                        best, best_inter = i, ix * iy
        if best >= 0 and best_inter >= inter_needed:
            used[best] = True
            both += 1
    # area Jaccard on a raster of 1/8 tile
    cell = max(1, side // 8)
    w, h = -(-extent[0] // cell) + 9, -(-extent[1] // cell) + 9

    def raster(coords: np.ndarray, s: int) -> np.ndarray:
        grid = np.zeros((h, w), bool)
        n = max(1, round(s / cell))
        for x, y in coords:
            gx, gy = int(x) // cell, int(y) // cell
            grid[gy:gy + n, gx:gx + n] = True
        return grid

    a, b = raster(ours, ours_side), raster(theirs, theirs_side)
    union = np.logical_or(a, b).sum()

    def covered(coords: np.ndarray, s: int, other: np.ndarray) -> float:
        """Share of these tiles whose area is at least half covered by the other tool's tiles."""
        table = np.pad(other.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
        n = max(1, round(s / cell))
        gx, gy = coords[:, 0] // cell, coords[:, 1] // cell
        gx1, gy1 = np.minimum(gx + n, w), np.minimum(gy + n, h)
        inside = table[gy1, gx1] - table[gy, gx1] - table[gy1, gx] + table[gy, gx]
        return round(float((inside >= 0.5 * n * n).mean()), 4)

    return {**out, "same_tile": both, "same_tile_share_of_ours": round(both / len(ours), 4),
            "ours_covered_by_theirs": covered(ours, ours_side, b),
            "theirs_covered_by_ours": covered(theirs, theirs_side, a),
            "area_jaccard": round(float(np.logical_and(a, b).sum() / union) if union else 0.0, 4)}


def linear_fit(tiles: list[int], seconds: list[float]) -> dict:
    """seconds = a + b * tiles by least squares; a is the per-slide constant."""
    x, y = np.asarray(tiles, float), np.asarray(seconds, float)
    if len(x) < 2 or np.ptp(x) == 0:
        return {}
    b, a = np.polyfit(x, y, 1)
    pred = a + b * x
    ss_res, ss_tot = float(((y - pred) ** 2).sum()), float(((y - y.mean()) ** 2).sum())
    return {"per_slide_s": round(float(a), 4), "ms_per_1000_tiles": round(float(b) * 1e6, 3),
            "r2": round(1 - ss_res / ss_tot, 4) if ss_tot else None}


# ---------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slides", type=Path, default=DEFAULT_SLIDES)
    parser.add_argument("--pattern", default="mosaic-*k.tif")
    parser.add_argument("--scratch", type=Path, default=DEFAULT_SCRATCH / "tiling")
    parser.add_argument("--python", default=sys.executable, help="Interpreter with slidestream and the peers installed.")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--extract-tiles", type=int, default=2000, help="0 skips the extraction part.")
    parser.add_argument("--images", action="store_true", help="slidestream also writes its PNG overlays (as the CLI does).")
    parser.add_argument("--name", default="tiling")
    args = parser.parse_args(argv)

    slides = sorted(args.slides.glob(args.pattern), key=lambda p: p.stat().st_size)
    if not slides:
        raise SystemExit(f"no slides matching {args.pattern} in {args.slides}; run benchmarks/make_slides.py first")
    info = machine()
    skipped = {name: why for name in PEERS if (why := peer_available(args.python, name))}
    peers = [p for p in PEERS if p not in skipped]
    print(f"machine: {machine_line(info)}\npeers: {peers}, skipped: {skipped}", file=sys.stderr)

    def worker(tool: str, stage: str, slide: Path, out: Path, coords: Path, *extra: str) -> dict:
        cmd = [args.python, str(WORKER), tool, stage, "--slide", str(slide), "--out", str(out), "--coords", str(coords),
               *(["--images"] if args.images and tool == "slidestream" else []), *extra]
        return run_json(cmd)

    records = []
    for slide in slides:
        from slidestream.io import open_slide

        with open_slide(slide) as s:
            extent = s.dimensions
        rec: dict = {"slide": slide.name, "width": extent[0], "height": extent[1], "bytes": slide.stat().st_size,
                     "runs": {}}
        work = args.scratch / slide.stem
        for rep in range(args.repeat):
            for tool in ["slidestream", *peers]:
                out = work / f"{tool}-{rep}"
                shutil.rmtree(out, ignore_errors=True)
                out.mkdir(parents=True)
                coords = work / f"{tool}.npz"
                if tool == "slidestream":
                    r1 = worker(tool, "tissue", slide, out, coords)
                    r2 = worker(tool, "tiles", slide, out, coords)
                    result = {"stages": r1["stages"] + r2["stages"], "n_tiles": r2["n_tiles"],
                              "rss_after_imports_mb": r1["rss_after_imports_mb"], "summary": {**r1["summary"], **r2["summary"]}}
                else:
                    result = worker(tool, "tiling", slide, out, coords)
                rec["runs"].setdefault(tool, []).append(result)
                print(f"{slide.name} rep {rep} {tool}: {result['n_tiles']} tiles, "
                      + ", ".join(f"{s['stage']} {s['seconds']:.3f}s/{s['peak_above_start_mb']:.0f}MB" for s in result["stages"]),
                      file=sys.stderr, flush=True)
        # summarise: median seconds per stage, max peak per stage
        summary = {}
        for tool, runs in rec["runs"].items():
            stages = {}
            for st in runs[0]["stages"]:
                name = st["stage"]
                secs = [next(s for s in r["stages"] if s["stage"] == name)["seconds"] for r in runs]
                peaks = [next(s for s in r["stages"] if s["stage"] == name)["peak_above_start_mb"] for r in runs]
                stages[name] = {"seconds": round(median(secs), 4), "peak_above_start_mb": max(peaks)}
            total = [sum(s["seconds"] for s in r["stages"]) for r in runs]
            summary[tool] = {"n_tiles": runs[0]["n_tiles"], "stages": stages, "total_seconds": round(median(total), 4),
                             "rss_after_imports_mb": runs[0]["rss_after_imports_mb"]}
        rec["summary"] = summary
        ours = np.load(work / "slidestream.npz")
        rec["agreement"] = {}
        for tool in peers:
            theirs = np.load(work / f"{tool}.npz")
            rec["agreement"][tool] = agreement(ours["xy"], int(ours["side"]), theirs["xy"], int(theirs["side"]), extent)
            rec["agreement"][tool]["ratio_time_ours_over_theirs"] = round(
                summary["slidestream"]["total_seconds"] / max(summary[tool]["total_seconds"], 1e-9), 3)
        if args.extract_tiles:
            out = work / "slidestream-0"
            r = worker("slidestream", "extract", slide, out, work / "x.npz", "--limit", str(args.extract_tiles),
                       "--encoder", "handcrafted")
            rec["extract"] = {k: r[k] for k in ("n_tiles", "reader", "tiles_per_s")} | {"stage": r["stages"][0]}
            print(f"{slide.name} extract: {r['n_tiles']} tiles {r['tiles_per_s']} tiles/s, "
                  f"peak {r['stages'][0]['peak_above_start_mb']:.0f} MB above start", file=sys.stderr, flush=True)
        records.append(rec)

    fits = {tool: linear_fit([r["summary"][tool]["n_tiles"] for r in records],
                             [r["summary"][tool]["total_seconds"] for r in records])
            for tool in ["slidestream", *peers]}
    fits["slidestream:tissue"] = linear_fit([r["summary"]["slidestream"]["n_tiles"] for r in records],
                                            [r["summary"]["slidestream"]["stages"]["tissue"]["seconds"] for r in records])
    fits["slidestream:tiles"] = linear_fit([r["summary"]["slidestream"]["n_tiles"] for r in records],
                                           [r["summary"]["slidestream"]["stages"]["tiles"]["seconds"] for r in records])
    info["load_avg_at_end"] = [round(x, 2) for x in __import__("os").getloadavg()]
    payload = {"benchmark": "tissue + tiling across slide sizes vs peers (issue 9)", "machine": info,
               "settings": {"mpp": 0.5, "tile_size": 224, "min_tissue": 0.25, "reader": "openslide",
                            "repeat": args.repeat, "images": args.images, "extract_encoder": "handcrafted",
                            "extract_tiles": args.extract_tiles},
               "peers_skipped": skipped | {"slide2vec": "tiles through hs2p.tile_slides (same code as the hs2p row)"},
               "slides": records, "fits": fits}
    path = save_results(args.name, payload)
    table = render(payload)
    (path.parent / f"{args.name}_table.md").write_text(table + "\n")
    print(table)
    print(f"\nwrote {path}", file=sys.stderr)
    return 0


def render(payload: dict) -> str:
    records = payload["slides"]
    peers = [t for t in records[0]["summary"] if t != "slidestream"]
    header = ["slide (level 0)", "tiles (ours)", "ours: tissue s", "ours: tiles s", "ours: peak MB (tissue/tiles)"]
    for p in peers:
        header += [f"{p}: tiles", f"{p}: s", f"ours/{p} time", f"both keep (ours / {p})", "area Jaccard"]
    header += ["extract tiles/s (handcrafted)", "extract peak MB"]
    rows = []
    for r in records:
        s = r["summary"]["slidestream"]
        row = [f"{r['width'] // 1000}k x {r['height'] // 1000}k", s["n_tiles"], s["stages"]["tissue"]["seconds"],
               s["stages"]["tiles"]["seconds"],
               f"{s['stages']['tissue']['peak_above_start_mb']:.0f} / {s['stages']['tiles']['peak_above_start_mb']:.0f}"]
        for p in peers:
            a = r["agreement"][p]
            row += [r["summary"][p]["n_tiles"], r["summary"][p]["total_seconds"], a["ratio_time_ours_over_theirs"],
                    f"{a['ours_covered_by_theirs']:.0%} / {a['theirs_covered_by_ours']:.0%}", a["area_jaccard"]]
        ex = r.get("extract")
        row += [ex["tiles_per_s"] if ex else "", f"{ex['stage']['peak_above_start_mb']:.0f}" if ex else ""]
        rows.append(row)
    fits = payload["fits"]
    fit_lines = [f"- {tool}: {f['per_slide_s']:.3f} s per slide + {f['ms_per_1000_tiles']:.1f} ms per 1000 tiles "
                 f"(R^2 {f['r2']})" for tool, f in fits.items() if f]
    return ("Tissue + tiling, 0.5 um/px, 224 px tiles, min tissue 0.25, openslide reader; seconds are medians of "
            f"{payload['settings']['repeat']} runs, each stage in a fresh process (imports not counted); peak MB = peak RSS "
            "above the stage's start; both keep = share of one tool's tiles at least half covered by the other's tiles.\n\n" + md_table(header, rows) + "\n\nTime = a + b x tiles (least squares over the sizes):\n"
            + "\n".join(fit_lines) + f"\n\nMachine: {machine_line(payload['machine'])}.")


if __name__ == "__main__":
    raise SystemExit(main())
