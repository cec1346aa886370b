"""Tile reading against the exact JPEG decode limit and hs2p's readers, in one run (issue 15, goal 3).

Per slide (0.5 um/px, 224 px tiles of slidestream's own tile table, the first ``--tiles``):

- **ours**: ``open_tile_reader(fast=True)`` with 1 and 2 threads, batches of 64, a fresh reader
  (fresh decoded-tile cache) per run; also how many JPEG tiles it decoded over the minimum;
- **decode limit**: the JPEG tiles those output tiles need, each exactly once (the windows'
  JPEG tiles, computed window by window with :meth:`JpegPyramid.tiles_touched`), read into memory
  beforehand and decoded at the reader's DCT scale by each decoder available (OpenCV, imagecodecs
  at full size, simplejpeg, Pillow), split over 1 and 2 threads; the fastest decoder is the
  limit, in output tiles/s. Nothing a reader does besides decoding (I/O, planning, assembly,
  sub-pixel blends) is in it, so no reader reaches 1.0;
- **fidelity**: mean absolute difference of our tiles to openslide's ``read_region`` + resize
  (the backend reader), grey levels per channel;
- **hs2p**: its tile stream over its own tiles of the slide (``--peer-python``, the interpreter
  of its own environment), openslide and cuCIM backends, with and without supertiles; best kept.

Every reader runs once per round, rounds interleaved (the order reversed every other round), so a
shared machine's load falls on all alike; tables give the best of ``--repeat`` rounds and the
median, and the ratios to the limit and to hs2p's best in the same run.

    python benchmarks/bench_read_limit.py --peer-python /tmp/benchvenv/bin/python \
        /work/scratch/slides/mosaic-20k.svs /work/scratch/slides/mosaic-20k-x4.svs
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DEFAULT_SLIDES, machine, machine_line, md_table, median, run_json, save_results

HERE = Path(__file__).resolve().parent
HS2P_WORKER = HERE / "_hs2p_read_worker.py"
MPP, TILE, BATCH = 0.5, 224, 64
HS2P_READERS = [("openslide", "plain"), ("openslide", "supertiles"), ("cucim", "plain"), ("cucim", "supertiles")]


def decoders(scale: int, tile_w: int, tile_h: int) -> dict[str, Callable[[bytes], np.ndarray]]:
    """Every JPEG decoder importable here that can decode at 1/``scale`` (each returns RGB)."""
    import cv2
    from PIL import Image

    w, h = -(-tile_w // scale), -(-tile_h // scale)
    reduce = {1: 0, 2: cv2.IMREAD_REDUCED_GRAYSCALE_2, 4: cv2.IMREAD_REDUCED_GRAYSCALE_4, 8: cv2.IMREAD_REDUCED_GRAYSCALE_8}[scale]
    flags = reduce | cv2.IMREAD_COLOR_RGB | cv2.IMREAD_IGNORE_ORIENTATION

    def pillow(data: bytes) -> np.ndarray:
        image = Image.open(io.BytesIO(data))
        if scale > 1:
            image.draft("RGB", (w, h))
        return np.asarray(image.convert("RGB") if image.mode != "RGB" else image)

    out: dict[str, Callable[[bytes], np.ndarray]] = {
        "opencv": lambda data: cv2.imdecode(np.frombuffer(data, np.uint8), flags), "pillow": pillow}
    try:
        import imagecodecs

        if scale == 1:
            out["imagecodecs"] = imagecodecs.jpeg8_decode
    except ImportError:
        pass
    try:
        import simplejpeg

        out["simplejpeg"] = lambda data: simplejpeg.decode_jpeg(data, colorspace="RGB", min_width=w, min_height=h)
    except ImportError:
        pass
    return out


def decode_all(decode: Callable[[bytes], np.ndarray], datas: list[bytes], pool: ThreadPoolExecutor | None, threads: int) -> float:
    """Seconds to decode every stream once, split evenly over ``threads``."""
    start = time.perf_counter()
    if threads == 1:
        for data in datas:
            decode(data)
    else:
        list(pool.map(lambda part: [decode(d) for d in part], [datas[i::threads] for i in range(threads)]))
    return time.perf_counter() - start


def bench_slide(slide_path: Path, args: argparse.Namespace) -> dict:
    from slidestream.extraction import open_tile_reader
    from slidestream.io import open_slide
    from slidestream.io.jpeg_batch import tiles_for_windows
    from slidestream.tiling.grid import tile_slide
    from slidestream.tissue.detect import detect_tissue

    print(f"== {slide_path.name}", file=sys.stderr, flush=True)
    with open(slide_path, "rb") as fh:      # warm the page cache: every reader then reads from RAM
        while fh.read(1 << 24):
            pass
    with open_slide(slide_path) as slide:
        grid = tile_slide(slide, detect_tissue(slide).geometry, mpp=MPP, tile_size=TILE)
        spec = slide.spec
    coords = np.asarray(grid.coords[:args.tiles])
    attrs = grid.attrs()
    n = len(coords)

    # the exact decode set, window by window through the pyramid's own geometry
    probe = open_tile_reader(spec, attrs, fast=True, workers=1)
    pyramid, scale, level_index = probe.pyramid, probe.scale, attrs["read_level"]
    level = pyramid.levels[level_index]
    needed: set[tuple[int, int]] = set()
    for x0, y0 in coords:
        x, y, w, h, _, _ = pyramid.window(int(x0) / probe.downsample, int(y0) / probe.downsample, probe.read_w, probe.read_h, scale)
        needed.update(pyramid.tiles_touched(level_index, x, y, w, h))
    assert needed == tiles_for_windows(pyramid, level_index, coords[:, 0] / probe.downsample, coords[:, 1] / probe.downsample,
                                       probe.read_w, probe.read_h, scale)
    order = sorted(needed, key=lambda t: (t[1], t[0]))
    datas = [pyramid._jpeg_bytes(level, ty * level.tiles_across + tx) for tx, ty in order
             if level.counts[ty * level.tiles_across + tx] > 0]
    reader_name = probe.name
    probe.close()
    # fidelity: the fast reader's tiles against openslide's read_region + resize (the backend reader)
    fast, slow = open_tile_reader(spec, attrs, fast=True, workers=2), open_tile_reader(spec, attrs, fast=False, workers=2)
    try:
        diffs = [np.abs(fast.read_batch(coords[i:i + BATCH]).astype(np.int16) - slow.read_batch(coords[i:i + BATCH])).mean()
                 for i in range(0, n, BATCH)]
    finally:
        fast.close()
        slow.close()
    decs = decoders(scale, level.tile_w, level.tile_h)
    rec: dict = {"slide": slide_path.name, "tiles": n, "read_level": level_index, "read_size": list(attrs["read_size"]),
                 "reader": reader_name, "dct_scale": scale, "jpeg_tile_px": [level.tile_w, level.tile_h],
                 "jpeg_tiles_needed": len(needed), "jpeg_tiles_per_output_tile": round(len(needed) / max(1, n), 3),
                 "mean_abs_diff_vs_openslide": round(float(np.mean(diffs)), 4),
                 "runs": {}}
    pool2 = ThreadPoolExecutor(2)

    def ours(threads: int) -> dict:
        reader = open_tile_reader(spec, attrs, fast=True, workers=threads)
        try:
            start = time.perf_counter()
            for i in range(0, n, BATCH):
                reader.read_batch(coords[i:i + BATCH])
            seconds = time.perf_counter() - start
            return {"tiles_per_s": n / seconds, "decodes_over_minimum": reader.pyramid.cache.misses / max(1, len(needed))}
        finally:
            reader.close()

    def limit(name: str, threads: int) -> dict:
        return {"tiles_per_s": n / decode_all(decs[name], datas, pool2, threads)}

    def hs2p(backend: str, mode: str) -> dict:
        return run_json([args.peer_python, str(HS2P_WORKER), str(slide_path), str(n), backend, mode])

    jobs: list[tuple[str, Callable[[], dict]]] = []
    for threads in (1, 2):
        jobs.append((f"ours, {threads} thread{'s' * (threads > 1)}", lambda t=threads: ours(t)))
        for name in decs:
            jobs.append((f"decode {name}, {threads} thread{'s' * (threads > 1)}", lambda d=name, t=threads: limit(d, t)))
    if args.peer_python:
        for backend, mode in HS2P_READERS:
            jobs.append((f"hs2p {backend}" + (", supertiles" if mode == "supertiles" else ""), lambda b=backend, m=mode: hs2p(b, m)))
    for rnd in range(args.repeat):
        for key, job in (jobs if rnd % 2 == 0 else jobs[::-1]):
            result = job()
            rec["runs"].setdefault(key, []).append(result)
            print(f"  round {rnd + 1} {key}: {result}", file=sys.stderr, flush=True)
    pool2.shutdown()

    summary: dict = {}
    for key, runs in rec["runs"].items():
        rates = [r["tiles_per_s"] for r in runs if "tiles_per_s" in r]
        summary[key] = {"best": round(max(rates), 1), "median": round(median(rates), 1)} if rates else \
            {"error": runs[-1].get("error", "no result")}
        if key.startswith("ours"):
            summary[key]["decodes_over_minimum"] = round(max(r["decodes_over_minimum"] for r in runs), 3)
    rec["summary"] = summary
    rec.update(ratios(summary))
    return rec


def ratios(summary: dict) -> dict:
    """The limit and hs2p's best, separately for best-of-rounds and medians (each statistic takes
    its own fastest decoder and peer, so neither flatters us), and our ratios to them."""
    out: dict = {}
    for threads in (1, 2):
        suffix = f"{threads} thread{'s' * (threads > 1)}"
        decs = {k: v for k, v in summary.items() if k.startswith("decode ") and k.endswith(suffix) and "best" in v}
        mine = summary[f"ours, {suffix}"]
        lim = {}
        for stat in ("best", "median"):
            key = max(decs, key=lambda k, st=stat: decs[k][st])
            lim[stat] = decs[key][stat]
            lim[f"{stat}_decoder"] = key.split(",")[0].removeprefix("decode ")
        out[f"limit_{threads}"] = lim
        out[f"ours_over_limit_{threads}"] = {st: round(mine[st] / lim[st], 3) for st in ("best", "median")}
    peers = {k: v for k, v in summary.items() if k.startswith("hs2p") and "best" in v}
    if peers:
        best = {}
        for stat in ("best", "median"):
            key = max(peers, key=lambda k, st=stat: peers[k][st])
            best[stat], best[f"{stat}_reader"] = peers[key][stat], key
        out["hs2p_best"] = best
        out["ours_over_hs2p_best"] = {st: round(summary["ours, 2 threads"][st] / best[st], 3) for st in ("best", "median")}
    return out


def summary_table(payload: dict) -> str:
    """One row per slide: ours, the decode limit, hs2p's best, and the ratios (the README's table)."""
    rows = []
    for rec in payload["slides"]:
        s = rec["summary"]
        rec = {**rec, **ratios(s)}
        lim, mine = rec["limit_2"], s["ours, 2 threads"]
        peer = rec.get("hs2p_best")
        rows.append([
            f"{rec['slide']} (level {rec['read_level']}, {rec['read_size'][0]} px → {TILE}, {rec['reader']})",
            f"{rec['tiles']} / {rec['jpeg_tiles_needed']}",
            f"{mine['best']:,.0f} ({mine['median']:,.0f})",
            f"{lim['best']:,.0f} ({lim['median']:,.0f}) {lim['best_decoder']}"
            + (f" ({lim['median_decoder']})" if lim["median_decoder"] != lim["best_decoder"] else ""),
            f"{rec['ours_over_limit_2']['best']:.2f} ({rec['ours_over_limit_2']['median']:.2f})",
            (f"{peer['best']:,.0f} ({peer['median']:,.0f}) {peer['best_reader']}"
             + (f" ({peer['median_reader']})" if peer["median_reader"] != peer["best_reader"] else "")) if peer else "—",
            f"{rec['ours_over_hs2p_best']['best']:.2f} ({rec['ours_over_hs2p_best']['median']:.2f})" if peer else "—",
            f"{s['ours, 1 thread']['best']:,.0f} / {rec['limit_1']['best']:,.0f} ({rec['ours_over_limit_1']['best']:.2f})",
            f"{mine['decodes_over_minimum']:.2f}",
            f"{rec['mean_abs_diff_vs_openslide']:.3f}",
        ])
    table = md_table(["slide (read)", "tiles / JPEG tiles needed", "ours, 2 threads: tiles/s best (median)",
                      "decode limit, 2 threads", "ours / limit", "hs2p best, 2 threads", "ours / hs2p",
                      "1 thread: ours / limit (ratio)", "JPEG decodes / minimum",
                      "mean abs diff vs openslide"], rows)
    return table


def render(payload: dict) -> str:
    table = summary_table(payload)
    per_reader = []
    for rec in payload["slides"]:
        per_reader += [[rec["slide"], k, f"{v['best']:,.0f}" if "best" in v else "n/a",
                        f"{v['median']:,.0f}" if "median" in v else v.get("error", "")] for k, v in rec["summary"].items()]
    m = payload["machine"]
    return (f"Tile reading, 0.5 um/px, 224 px tiles: best of {payload['repeat']} interleaved rounds (median in brackets). "
            f"Load average at start {m['load_avg_at_start']}, at end {m['load_avg_at_end']} ({m['cores_usable']} cores, "
            "shared machine).\n\n" + table + "\n\nEvery reader and decoder:\n\n"
            + md_table(["slide", "reader", "tiles/s best", "median"], per_reader) + f"\n\nMachine: {machine_line(m)}.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("slides", type=Path, nargs="*",
                        default=[DEFAULT_SLIDES / "mosaic-20k.svs", DEFAULT_SLIDES / "mosaic-20k-x4.svs"])
    parser.add_argument("--tiles", type=int, default=2000, help="First N tiles of each slide (row-major).")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--peer-python", help="interpreter of hs2p's environment (cuCIM for its fastest reader)")
    parser.add_argument("--name", default="read_limit")
    parser.add_argument("--render", action="store_true", help="Only recompute the ratios and tables of results/NAME.json.")
    args = parser.parse_args(argv)
    if args.render:   # ratios and tables again from the raw runs (after a change to how they are summarised)
        path = HERE / "results" / f"{args.name}.json"
        payload = json.loads(path.read_text())
        for rec in payload["slides"]:
            rec.update(ratios(rec["summary"]))
        path.write_text(json.dumps(payload, indent=2) + "\n")
        (path.parent / f"{args.name}_table.md").write_text(render(payload) + "\n")
        print(render(payload))
        return 0
    info = machine()
    slides = [bench_slide(s, args) for s in args.slides]
    info["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    payload = {"benchmark": "tile reading vs the exact JPEG decode limit and hs2p (issue 15, goal 3)",
               "machine": info, "repeat": args.repeat, "settings": {"mpp": MPP, "tile_size": TILE, "batch": BATCH},
               "slides": slides}
    path = save_results(args.name, payload)
    table = render(payload)
    (path.parent / f"{args.name}_table.md").write_text(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
