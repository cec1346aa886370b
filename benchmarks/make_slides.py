"""Build large pyramidal JPEG-tiled slides for benchmarks by mosaicking real tissue.

Each slide is a generic tiled TIFF (``<name>.tif``: TIFF resolution tags, 0.25 um/px at level 0)
and, with ``--svs``, an Aperio-style twin (``<name>.svs``: ``ImageDescription`` starting with
``Aperio`` and ``|AppMag = 40|MPP = 0.25``, a strip thumbnail as page 1, RGB-coded JPEG tiles as
Aperio scanners write them). Both have levels at downsamples 1, 2, 4, 8, ... down to < 512 px (``--level-step 4``: 1, 4, 16, ...,
the usual Aperio layout, where 0.5 um/px tiles must be read from level 0).

Content: 1024 x 1024 windows of real tissue cut from the shared slides (``../shared/slides``),
each under one of the 8 flips/rotations of the square, laid out on a block grid inside a few
irregular "tissue sections" on a near-white glass background. The source pixels are used as they
are (their true resolution is 0.25 to 0.5 um/px); only the tags say 0.25 um/px.

Memory stays small whatever the slide size: every JPEG tile of the levels where a block covers
whole tiles is encoded once into a bank and streamed to ``tifffile`` by a generator (pre-encoded
bytes, ``tile=(256, 256)``); coarser levels are composed tile by tile from per-block downsampled
images. A 100k x 100k slide is written in 6-10 s with a few hundred MB of RAM (all ten slides,
checks included, in about a minute).

After writing, the script asserts that openslide (vendor ``aperio`` / ``generic-tiff``),
tiffslide and ``slidestream.open_slide`` open every file with mpp 0.25, the expected levels, and
pixels matching the rendered source (JPEG error only), and that slidestream's fast JPEG path
accepts it.

    python benchmarks/make_slides.py --out /work/scratch/slides --sizes 10240 20480 40960 71680 102400 --svs
    python benchmarks/make_slides.py --out /work/scratch/slides --sizes 20480 --svs --level-step 4
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import imagecodecs
import numpy as np
import tifffile

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SOURCES = REPO.parent / "shared" / "slides"
BLOCK = 1024          # level-0 pixels per mosaic block (a multiple of TILE * 4)
TILE = 256            # JPEG tile side
MPP = 0.25            # level-0 um/px written into the tags
QUALITY = 80
MIN_LEVEL_SIDE = 512  # stop adding levels once the longest side is below this
BACKGROUND = 1        # block ids: 0 = glass, 1.. = tissue variants (index + 1)


# ---------------------------------------------------------------------------------- sources
def _tissue_and_pen(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cheap H&E tissue mask (saturated, not white) and pen mask (green/blue dominant)."""
    f = rgb.astype(np.int16)
    mx, mn = f.max(axis=2), f.min(axis=2)
    sat = (mx - mn) / np.maximum(mx, 1)
    tissue = (sat > 0.08) & (mx < 235)
    r, g, b = f[..., 0], f[..., 1], f[..., 2]
    pen = ((g > r + 8) | (b > r + 25)) & (mx < 240)
    return tissue, pen


def sample_windows(source_dir: Path, count: int, seed: int) -> list[np.ndarray]:
    """``count`` distinct BLOCK x BLOCK windows of real tissue (>= 60 % tissue, no pen), drawn
    round-robin from the shared slides so that every source contributes while it can."""
    from slidestream.io import open_slide

    names = ["tcga-cr-7395-01a-01-ts1.svs", "CMU-1-Small-Region.svs", "TCGA-XK-AAJU-pen-marks.tif"]
    rng = np.random.default_rng(seed)
    sources = []
    for name in names:
        path = source_dir / name
        if not path.exists():
            continue
        with open_slide(path, default_mpp=0.5) as slide:
            w, h = slide.dimensions
            if w < BLOCK or h < BLOCK:
                continue
            whole = slide.read_region((0, 0), 0, (w, h))  # the sources are small (< 50 MB decoded)
        tissue, pen = _tissue_and_pen(whole)
        # integral images: tissue / pen share of any window in O(1)
        ti = np.pad(tissue.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
        pi = np.pad(pen.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
        sources.append((whole, ti, pi))

    def share(table: np.ndarray, x: int, y: int) -> float:
        return float(table[y + BLOCK, x + BLOCK] - table[y, x + BLOCK] - table[y + BLOCK, x] + table[y, x]) / BLOCK**2

    windows: list[np.ndarray] = []
    taken: list[list[tuple[int, int]]] = [[] for _ in sources]
    for attempt in range(20000):
        if len(windows) >= count:
            break
        i = attempt % len(sources)
        whole, ti, pi = sources[i]
        h, w = whole.shape[:2]
        x, y = int(rng.integers(0, w - BLOCK + 1)), int(rng.integers(0, h - BLOCK + 1))
        # distinct: shifted by at least a quarter window from any already taken from this slide
        if any(abs(x - a) < BLOCK // 4 and abs(y - b) < BLOCK // 4 for a, b in taken[i]):
            continue
        if share(ti, x, y) >= 0.6 and share(pi, x, y) < 0.002:
            windows.append(np.ascontiguousarray(whole[y:y + BLOCK, x:x + BLOCK]))
            taken[i].append((x, y))
    if len(windows) < 4:
        raise SystemExit(f"found only {len(windows)} tissue windows in {source_dir}; need the shared slides")
    return windows


def dihedral(image: np.ndarray, k: int) -> np.ndarray:
    """The k-th of the 8 symmetries of the square (4 rotations, each optionally mirrored)."""
    out = np.rot90(image, k % 4)
    return np.ascontiguousarray(out[:, ::-1] if k >= 4 else out)


def glass(rng: np.random.Generator) -> np.ndarray:
    """A near-white background block with faint noise and tint (what empty glass scans like)."""
    base = rng.integers(239, 245)
    tint = rng.integers(-1, 2, size=3)
    noise = rng.normal(0, 1.5, size=(BLOCK // 8, BLOCK // 8, 1))
    noise = np.repeat(np.repeat(noise, 8, axis=0), 8, axis=1)
    return np.clip(base + tint + noise, 0, 255).astype(np.uint8)


def box_down(image: np.ndarray) -> np.ndarray:
    """2x box downsample (mean of 2 x 2), rounding: the pyramid's filter."""
    h, w = image.shape[0] // 2 * 2, image.shape[1] // 2 * 2
    f = image[:h, :w].astype(np.uint16)
    return ((f[0::2, 0::2] + f[1::2, 0::2] + f[0::2, 1::2] + f[1::2, 1::2] + 2) // 4).astype(np.uint8)


# ---------------------------------------------------------------------------------- layout
@dataclass
class Layout:
    """Which block goes where: ``ids[by, bx]`` is 0 for glass, v >= 1 for tissue variant v - 1."""

    ids: np.ndarray
    width: int
    height: int

    @property
    def tissue_fraction(self) -> float:
        return float((self.ids >= BACKGROUND).mean())


def make_layout(width: int, height: int, n_variants: int, seed: int, tissue_target: float = 0.35) -> Layout:
    """A few irregular elliptical sections covering ~``tissue_target`` of the slide."""
    rng = np.random.default_rng(seed)
    nbx, nby = -(-width // BLOCK), -(-height // BLOCK)
    yy, xx = np.mgrid[0:nby, 0:nbx].astype(np.float64)
    xx, yy = (xx + 0.5) / nbx, (yy + 0.5) / nby
    field = np.zeros((nby, nbx))
    for _ in range(int(rng.integers(2, 5))):
        cx, cy = rng.uniform(0.25, 0.75), rng.uniform(0.25, 0.75)
        rx, ry = rng.uniform(0.12, 0.3), rng.uniform(0.12, 0.3)
        angle = rng.uniform(0, np.pi)
        dx, dy = xx - cx, yy - cy
        u = (dx * np.cos(angle) + dy * np.sin(angle)) / rx
        v = (-dx * np.sin(angle) + dy * np.cos(angle)) / ry
        field = np.maximum(field, 1.0 - (u * u + v * v))
    field += rng.normal(0, 0.08, size=field.shape)       # ragged borders
    # threshold at the quantile that gives the target tissue share
    cut = np.quantile(field, 1.0 - tissue_target)
    tissue = field > cut
    # glass margin of one block so the sections never touch the slide edge
    tissue[0, :] = tissue[-1, :] = tissue[:, 0] = tissue[:, -1] = False
    ids = np.where(tissue, rng.integers(0, n_variants, size=field.shape) + BACKGROUND, 0).astype(np.int32)
    return Layout(ids, width, height)


# ---------------------------------------------------------------------------------- rendering
class Mosaic:
    """Per-variant block images at every level, and the tile renderer on top of them."""

    def __init__(self, windows: list[np.ndarray], n_levels: int, seed: int) -> None:
        rng = np.random.default_rng(seed + 1)
        self.n_glass = 4
        # variant 0..n_glass-1: glass; then windows x 8 symmetries
        blocks = [glass(rng) for _ in range(self.n_glass)]
        blocks += [dihedral(w, k) for w in windows for k in range(8)]
        self.n_tissue = len(blocks) - self.n_glass
        self.levels: list[list[np.ndarray]] = []   # levels[k][variant] -> (BLOCK >> k)^2 image
        current = blocks
        for k in range(n_levels):
            if k:
                current = [box_down(b) for b in current]
            self.levels.append(current)
        self._glass_pick = rng.integers(0, self.n_glass, size=1 << 16)

    def variant(self, layout_id: int, bx: int, by: int) -> int:
        if layout_id >= BACKGROUND:
            return self.n_glass + layout_id - BACKGROUND
        return int(self._glass_pick[(bx * 7919 + by * 104729) % len(self._glass_pick)])

    def render(self, layout: Layout, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        """Level pixels [x, x+w) x [y, y+h); outside the slide is white."""
        bs = BLOCK >> level
        out = np.full((h, w, 3), 255, np.uint8)
        lw, lh = -(-layout.width // (1 << level)), -(-layout.height // (1 << level))
        x1, y1 = min(x + w, lw), min(y + h, lh)
        for by in range(y // bs, (y1 - 1) // bs + 1 if y1 > y else y // bs):
            for bx in range(x // bs, (x1 - 1) // bs + 1 if x1 > x else x // bs):
                block = self.levels[level][self.variant(int(layout.ids[by, bx]), bx, by)]
                gx0, gy0 = max(bx * bs, x), max(by * bs, y)
                gx1, gy1 = min((bx + 1) * bs, x1), min((by + 1) * bs, y1)
                out[gy0 - y:gy1 - y, gx0 - x:gx1 - x] = block[gy0 - by * bs:gy1 - by * bs, gx0 - bx * bs:gx1 - bx * bs]
        return out


def encode(tile: np.ndarray, rgb_coded: bool) -> bytes:
    """One JPEG tile: YCbCr 4:2:0 (generic TIFF), or RGB-coded 4:4:4 without an Adobe marker (Aperio)."""
    if not rgb_coded:
        return bytes(imagecodecs.jpeg8_encode(tile, level=QUALITY, colorspace="RGB", outcolorspace="YCBCR",
                                              subsampling="420"))
    data = bytes(imagecodecs.jpeg8_encode(tile, level=QUALITY, colorspace="RGB", outcolorspace="RGB"))
    app14 = data.find(b"\xff\xee")
    if app14 > 0:  # Aperio writes no colour marker: the TIFF says RGB; readers must honour it
        length = int.from_bytes(data[app14 + 2:app14 + 4], "big")
        data = data[:app14] + data[app14 + 2 + length:]
    return data


class TileBank:
    """JPEG bytes of every (variant, level, sub-tile) where a block spans whole tiles: encode once."""

    def __init__(self, mosaic: Mosaic, rgb_coded: bool) -> None:
        self.mosaic = mosaic
        self.rgb_coded = rgb_coded
        self._bank: dict[tuple[int, int, int, int], bytes] = {}

    def get(self, level: int, variant: int, sx: int, sy: int) -> bytes:
        key = (level, variant, sx, sy)
        data = self._bank.get(key)
        if data is None:
            block = self.mosaic.levels[level][variant]
            data = encode(np.ascontiguousarray(block[sy * TILE:(sy + 1) * TILE, sx * TILE:(sx + 1) * TILE]), self.rgb_coded)
            self._bank[key] = data
        return data

    @property
    def nbytes(self) -> int:
        return sum(len(v) for v in self._bank.values())


def level_tiles(layout: Layout, mosaic: Mosaic, bank: TileBank, level: int):
    """Generator of the level's JPEG tiles, row-major, as tifffile wants them."""
    lw, lh = -(-layout.width // (1 << level)), -(-layout.height // (1 << level))
    bs = BLOCK >> level
    for ty in range(-(-lh // TILE)):
        for tx in range(-(-lw // TILE)):
            x, y = tx * TILE, ty * TILE
            if bs >= TILE and x + TILE <= lw and y + TILE <= lh:
                bx, by = x // bs, y // bs
                variant = mosaic.variant(int(layout.ids[by, bx]), bx, by)
                yield bank.get(level, variant, (x % bs) // TILE, (y % bs) // TILE)
            else:
                yield encode(mosaic.render(layout, level, x, y, TILE, TILE), bank.rgb_coded)


def pyramid(width: int, height: int, step: int = 2) -> list[tuple[int, tuple[int, int]]]:
    """The levels to write: (exponent e, (w, h)) at downsample 2**e, e = 0, s, 2s, ... (step = 2**s)."""
    s = {2: 1, 4: 2}[step]
    levels = [(0, (width, height))]
    while max(levels[-1][1]) >= MIN_LEVEL_SIDE * step and (BLOCK >> (levels[-1][0] + s)) >= 1:
        e = levels[-1][0] + s
        levels.append((e, (-(-width // (1 << e)), -(-height // (1 << e)))))
    return levels


def thumb_exponent(width: int, height: int) -> int:
    return next(e for e in range(32) if max(-(-width // (1 << e)), -(-height // (1 << e))) <= 1024)


def write_slide(path: Path, layout: Layout, mosaic: Mosaic, *, svs: bool, step: int = 2) -> dict:
    """Write one pyramid; returns what was written (for the metadata JSON)."""
    levels = pyramid(layout.width, layout.height, step)
    sizes = [size for _, size in levels]
    bank = TileBank(mosaic, rgb_coded=svs)
    tmp = path.with_name(path.name + ".partial")
    start = time.perf_counter()
    with tifffile.TiffWriter(tmp, bigtiff=True) as tif:
        for k, (e, (lw, lh)) in enumerate(levels):
            common = dict(shape=(lh, lw, 3), dtype=np.uint8, tile=(TILE, TILE), compression="jpeg",
                          metadata=None, software=False)
            if svs:
                desc = (f"Aperio Image Library v12.0.15 (slidestream benchmark mosaic)\r\n"
                        f"{layout.width}x{layout.height} [0,0 {layout.width}x{layout.height}] ({TILE}x{TILE})"
                        + (f" -> {lw}x{lh}" if k else "")
                        + f" JPEG/RGB Q={QUALITY}|AppMag = 40|MPP = {MPP}|Filename = {path.stem}")
                tif.write(level_tiles(layout, mosaic, bank, e), photometric="rgb", subsampling=(1, 1),
                          compressionargs={"outcolorspace": "RGB"}, description=desc, **common)
                if k == 0:  # Aperio page 1: a strip thumbnail (readers expect it before the levels)
                    thumb = mosaic.render(layout, thumb_exponent(layout.width, layout.height), 0, 0,
                                          -(-layout.width // (1 << thumb_exponent(layout.width, layout.height))),
                                          -(-layout.height // (1 << thumb_exponent(layout.width, layout.height))))
                    tif.write(thumb, photometric="rgb", compression="jpeg", rowsperstrip=16,
                              description=f"Aperio Image Library v12.0.15\r\n{layout.width}x{layout.height} -> "
                                          f"{thumb.shape[1]}x{thumb.shape[0]} - |AppMag = 40|MPP = {MPP}",
                              metadata=None, software=False)
            else:
                px_per_cm = 1e4 / (MPP * (1 << e))
                tif.write(level_tiles(layout, mosaic, bank, e), photometric="ycbcr", subsampling=(2, 2),
                          resolution=(px_per_cm, px_per_cm), resolutionunit="CENTIMETER",
                          subfiletype=1 if k else 0,
                          description=f"slidestream benchmark mosaic {layout.width}x{layout.height}" if k == 0 else None,
                          **common)
    tmp.replace(path)
    return {"file": path.name, "seconds": round(time.perf_counter() - start, 2), "bytes": path.stat().st_size,
            "levels": [list(s) for s in sizes], "bank_mb": round(bank.nbytes / 2**20, 1)}


# ---------------------------------------------------------------------------------- checks
def check_readers(path: Path, layout: Layout, mosaic: Mosaic, *, svs: bool, step: int = 2) -> dict:
    """Every real reader opens the file with the right mpp, levels and pixels; returns the evidence."""
    import openslide
    import tiffslide

    from slidestream.io import open_slide
    from slidestream.io.jpeg_tiles import JpegPyramid

    levels = pyramid(layout.width, layout.height, step)
    sizes = [size for _, size in levels]
    exps = [e for e, _ in levels]
    rng = np.random.default_rng(0)
    evidence: dict = {}
    with openslide.OpenSlide(str(path)) as osl:
        vendor = osl.properties.get("openslide.vendor")
        assert vendor == ("aperio" if svs else "generic-tiff"), f"{path}: openslide vendor {vendor}"
        assert float(osl.properties["openslide.mpp-x"]) == MPP, osl.properties.get("openslide.mpp-x")
        assert [tuple(d) for d in osl.level_dimensions] == sizes, (osl.level_dimensions, sizes)
        assert [round(d) for d in osl.level_downsamples] == [1 << e for e in exps]
        if svs:
            assert osl.properties.get("openslide.objective-power") == "40"
        evidence["openslide"] = {"vendor": vendor, "mpp": osl.properties["openslide.mpp-x"], "levels": len(sizes)}
        with tiffslide.TiffSlide(path) as tsl:
            assert abs(float(tsl.properties["tiffslide.mpp-x"]) - MPP) < 1e-9, tsl.properties.get("tiffslide.mpp-x")
            assert [tuple(d) for d in tsl.level_dimensions] == sizes, (tsl.level_dimensions, sizes)
            evidence["tiffslide"] = {"vendor": tsl.properties.get("tiffslide.vendor"),
                                     "mpp": tsl.properties["tiffslide.mpp-x"]}
            worst = 0.0
            for level in (0, min(2, len(sizes) - 1), len(sizes) - 1):
                lw, lh = sizes[level]
                e = exps[level]
                for _ in range(3):
                    # a region on tissue when possible (the layout's tissue blocks)
                    by, bx = np.argwhere(layout.ids >= BACKGROUND)[rng.integers(0, int((layout.ids >= BACKGROUND).sum()))]
                    size = min(300, lw, lh)
                    x = int(min(max(0, bx * (BLOCK >> e) - 37), lw - size))
                    y = int(min(max(0, by * (BLOCK >> e) - 53), lh - size))
                    a = np.asarray(osl.read_region((x << e, y << e), level, (size, size)).convert("RGB"))
                    b = np.asarray(tsl.read_region((x << e, y << e), level, (size, size), as_array=True))[..., :3]
                    want = mosaic.render(layout, e, x, y, size, size)
                    assert np.abs(a.astype(int) - b).mean() < 1.0, f"{path}: openslide and tiffslide disagree at level {level}"
                    err = float(np.abs(a.astype(int) - want).mean())
                    assert err < 10.0, f"{path}: level {level} pixels differ from the source by {err:.1f} on average"
                    worst = max(worst, err)
            evidence["mean_abs_error_vs_source"] = round(worst, 2)
    with open_slide(path) as slide:
        assert abs(slide.mpp[0] - MPP) < 1e-9 and slide.level_count == len(sizes), slide
        jp = JpegPyramid.open(path, list(slide.level_dimensions))
        assert jp is not None, f"{path}: slidestream's fast JPEG path does not accept the file"
        assert jp.levels[0].rgb_coded == svs
        a = jp.read(0, 4096 % sizes[0][0], 4096 % sizes[0][1], 256, 256)
        b = slide.read_region((4096 % sizes[0][0], 4096 % sizes[0][1]), 0, (256, 256))
        assert np.abs(a.astype(int) - b).mean() < 1.0, f"{path}: fast JPEG path disagrees with {slide.backend_name}"
        jp.close()
        evidence["slidestream"] = {"backend": slide.backend_name, "mpp_source": slide.resolution.source,
                                   "vendor": slide.vendor}
    return evidence


# ---------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("/work/scratch/slides"))
    parser.add_argument("--sizes", type=int, nargs="+", default=[10240, 20480, 40960, 102400],
                        help="Level-0 side lengths (rounded up to a multiple of 1024); each slide is square.")
    parser.add_argument("--svs", action="store_true", help="Also write the Aperio-style .svs twin of each slide.")
    parser.add_argument("--windows", type=int, default=32, help="Distinct tissue windows (x8 symmetries).")
    parser.add_argument("--tissue", type=float, default=0.35, help="Share of the slide covered by tissue.")
    parser.add_argument("--sources", type=Path, default=DEFAULT_SOURCES)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--force", action="store_true", help="Rewrite files that already exist.")
    parser.add_argument("--level-step", type=int, choices=[2, 4], default=2,
                        help="Downsample between levels: 2 (1, 2, 4, 8, ...) or 4 (1, 4, 16, ...: the usual Aperio "
                             "layout, where 0.5 um/px must be read from level 0); 4 adds '-x4' to the names.")
    args = parser.parse_args(argv)

    args.out.mkdir(parents=True, exist_ok=True)
    windows = sample_windows(args.sources, args.windows, args.seed)
    records = []
    for size in args.sizes:
        side = -(-size // BLOCK) * BLOCK
        name = f"mosaic-{side // 1024}k" + ("-x4" if args.level_step == 4 else "")
        levels = pyramid(side, side, args.level_step)
        sizes = [size for _, size in levels]
        mosaic = Mosaic(windows, max(levels[-1][0], thumb_exponent(side, side)) + 1, args.seed)
        layout = make_layout(side, side, mosaic.n_tissue, seed=args.seed + side)
        for svs in ([False, True] if args.svs else [False]):
            path = args.out / f"{name}.{'svs' if svs else 'tif'}"
            if path.exists() and not args.force:
                info = {"file": path.name, "bytes": path.stat().st_size, "levels": [list(s) for s in sizes], "reused": True}
            else:
                info = write_slide(path, layout, mosaic, svs=svs, step=args.level_step)
            info.update(width=side, height=side, mpp=MPP, tissue_block_fraction=round(layout.tissue_fraction, 4),
                        tissue_blocks=int((layout.ids >= BACKGROUND).sum()), svs=svs)
            info["readers"] = check_readers(path, layout, mosaic, svs=svs, step=args.level_step)
            records.append(info)
            print(json.dumps(info), flush=True)
    index = args.out / "slides.json"
    previous = json.loads(index.read_text())["slides"] if index.exists() else []
    records = [r for r in previous if r["file"] not in {n["file"] for n in records}] + records
    index.write_text(json.dumps({"block": BLOCK, "tile": TILE, "mpp": MPP, "slides": records}, indent=2))
    print(f"wrote {len(records)} slides to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
