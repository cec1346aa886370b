"""One benchmark stage in its own process: ``python _stage_worker.py TOOL STAGE --slide S --out DIR ...``.

Prints one JSON line: per-stage seconds and peak RSS above the RSS the stage started with
(imports and model loading come before the stage starts, so they are not counted), plus where
the stage's tile coordinates were saved (``coords.npz``: level-0 x, y and the tile's level-0 side).

Tools and stages:
  slidestream tissue   detect tissue, write the store's tissue node (as ``slidestream tissue``)
  slidestream tiles    tile from the stored tissue, write the tile table (as ``slidestream tile``)
  slidestream extract  embed the first --limit tiles with --encoder into the store
  hs2p        tiling   hs2p.tile_slide (hsv segmentation at downsample 64 + tiling, one call)
  lazyslide   tiling   zs.pp.find_tissues then zs.pp.tile_tissues (two sub-stages)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Stage, emit, rss_mb


def slidestream_stage(args) -> dict:
    from slidestream.pipeline.stages import SlideSource, run_tiles, run_tissue
    from slidestream.store import SlideStore
    from slidestream.tiling.params import TilingParams
    from slidestream.tissue import TissueParams

    source = SlideSource(Path(args.slide))
    out = Path(args.out)
    tiling = TilingParams(mpp=args.mpp, tile_size=args.tile_size, min_tissue=args.min_tissue)
    result: dict = {"rss_after_imports_mb": round(rss_mb(), 1)}
    if args.stage == "tissue":
        with Stage("tissue") as st:
            summary = run_tissue(source, out, TissueParams(), overwrite=True, write_images=args.images)
        result["stages"] = [st.record]
        result["summary"] = summary
    elif args.stage == "tiles":
        with Stage("tiles") as st:
            summary = run_tiles(source, out, tiling, TissueParams(), write_images=args.images)
        result["stages"] = [st.record]
        store = SlideStore.open(out / f"{source.slide_id}.zarr")
        tiles = store.read_tiles()
        np.savez(Path(args.coords), xy=tiles.coords, side=int(tiles.attrs["level0_size"][0]))
        result["n_tiles"] = len(tiles)
        result["summary"] = {k: v for k, v in summary.items() if k != "note"}
    elif args.stage == "extract":
        from slidestream.encoders import get_spec, load_encoder
        from slidestream.extraction import ExtractOptions, extract_store

        encoder = load_encoder(args.encoder, random_init=get_spec(args.encoder).requires_weights)
        store = SlideStore.open(out / f"{source.slide_id}.zarr")
        n = len(store.read_tiles())
        rows = np.arange(min(n, args.limit))
        name = f"first{len(rows)}"
        if not store.has(f"selections/{name}"):
            store.write_selection(name, rows, {"method": "first", "params": {"count": len(rows)}})
        options = ExtractOptions(batch_size=args.batch_size, workers=args.workers, selection=name)
        with source.open() as slide:
            spec = slide.spec
        encoder(np.zeros((2, args.tile_size, args.tile_size, 3), np.uint8))  # warm-up outside the timing
        with Stage("extract") as st:
            info = extract_store(spec, store, encoder, options, overwrite=True)
        result["stages"] = [st.record]
        result["n_tiles"] = int(info["features"])
        result["reader"] = info["reader"]
        result["tiles_per_s"] = round(info["features"] / st.record["seconds"], 2)
    else:
        raise SystemExit(f"unknown slidestream stage {args.stage}")
    return result


def hs2p_stage(args) -> dict:
    from hs2p import (
        DEFAULT_MASK_SAMPLING,
        MaskSamplingConfig,
        SegmentationConfig,
        SlideSpec,
        TilingConfig,
        tile_slide,
    )

    masks = MaskSamplingConfig(pixel_mapping=dict(DEFAULT_MASK_SAMPLING.pixel_mapping),
                               colors=dict(DEFAULT_MASK_SAMPLING.colors),
                               min_coverage={"tissue": args.min_tissue})
    tiling = TilingConfig(requested_spacing_um=args.mpp, requested_tile_size_px=args.tile_size, tolerance=0.05,
                          overlap=0.0, backend="openslide", mask_backend="openslide")
    result: dict = {"rss_after_imports_mb": round(rss_mb(), 1)}
    with Stage("tiling") as st:
        res = tile_slide(SlideSpec(sample_id=Path(args.slide).stem, image_path=Path(args.slide)), tiling=tiling,
                         segmentation=SegmentationConfig(method="hsv"), masks=masks, num_workers=1)
    result["stages"] = [st.record]
    xy = np.column_stack([np.asarray(res.tiles.x), np.asarray(res.tiles.y)]).astype(np.int64)
    np.savez(Path(args.coords), xy=xy, side=int(res.tiles.tile_size_lv0))
    result["n_tiles"] = len(xy)
    result["summary"] = {"read_level": int(res.tiles.read_level), "seg_level": int(res.seg_level),
                         "seg_spacing_um": float(res.seg_spacing_um), "backend": res.backend}
    return result


def lazyslide_stage(args) -> dict:
    import warnings

    warnings.filterwarnings("ignore")
    import lazyslide as zs

    result: dict = {"rss_after_imports_mb": round(rss_mb(), 1)}
    with Stage("tissue") as st1:
        wsi = zs.open_wsi(args.slide, reader="openslide")
        zs.pp.find_tissues(wsi)
    with Stage("tiles") as st2:
        # background_fraction: a tile with more background than this is dropped (= 1 - min tissue)
        zs.pp.tile_tissues(wsi, args.tile_size, mpp=args.mpp, background_fraction=1.0 - args.min_tissue)
    result["stages"] = [st1.record, st2.record]
    tiles = wsi.shapes["tiles"]
    bounds = np.asarray(tiles.geometry.bounds)  # minx, miny, maxx, maxy in level-0 px
    xy = np.rint(bounds[:, :2]).astype(np.int64)
    side = round(float(np.median(bounds[:, 2] - bounds[:, 0]))) if len(bounds) else 0
    np.savez(Path(args.coords), xy=xy, side=side)
    result["n_tiles"] = len(xy)
    result["summary"] = {"tissue_pieces": len(wsi.shapes["tissues"]), "tile_spec": str(wsi.attrs.get("tile_spec", ""))[:200]}
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("tool", choices=["slidestream", "hs2p", "lazyslide"])
    parser.add_argument("stage")
    parser.add_argument("--slide", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--coords", default="coords.npz")
    parser.add_argument("--mpp", type=float, default=0.5)
    parser.add_argument("--tile-size", type=int, default=224)
    parser.add_argument("--min-tissue", type=float, default=0.25)
    parser.add_argument("--images", action="store_true", help="slidestream: also write the PNG overlays and GeoJSON")
    parser.add_argument("--encoder", default="handcrafted")
    parser.add_argument("--limit", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    t0 = time.perf_counter()
    worker = {"slidestream": slidestream_stage, "hs2p": hs2p_stage, "lazyslide": lazyslide_stage}[args.tool]
    result = worker(args)
    result.update(tool=args.tool, stage=args.stage, slide=args.slide, process_seconds=round(time.perf_counter() - t0, 3))
    emit(result)


if __name__ == "__main__":
    main()
