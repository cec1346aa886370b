"""Readers per format: open time, region throughput and pixel agreement with the source slide.

For each file in ../shared/formats (and the source slides they were made from) and each backend
that opens it: seconds to open, 256x256 regions per second at level 0 and at the coarsest level
(random positions, fixed seed, a fresh handle per backend so no reader profits from another's
cache), and the mean absolute difference to the source slide read through openslide at the
same level-0 location (JPEG re-encoding noise is ~3-4).

``fastslide`` (PyPI) is measured when importable; install it in a separate environment
(``python -m venv --system-site-packages v && v/bin/pip install fastslide``) and run this script
with that interpreter.

    python benchmarks/bench_formats.py [--regions 200] [--out benchmarks/results/formats.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from slidestream.io import open_slide

SHARED = Path(__file__).resolve().parents[2] / "shared"
SOURCE = SHARED / "slides" / "tcga-cr-7395-01a-01-ts1.svs"
PEN = SHARED / "slides" / "TCGA-XK-AAJU-pen-marks.tif"
CASES = [  # (file, backends, source, source level for level 0 of the file, source mpp)
    (SHARED / "formats" / "tcga-cr-7395-dicom", ["openslide", "wsidicom", "fastslide"], SOURCE, 0),
    (SHARED / "formats" / "tcga-cr-7395.ome.tif", ["tiffslide", "openslide", "fastslide"], SOURCE, 0),
    (SHARED / "formats" / "TCGA-XK-AAJU-pen-marks.czi", ["czi", "fastslide"], PEN, 1),
    (SOURCE, ["openslide", "tiffslide", "fastslide"], SOURCE, 0),
    (SHARED / "slides" / "CMU-1-Small-Region.svs", ["openslide", "tiffslide", "fastslide"], SHARED / "slides" / "CMU-1-Small-Region.svs", 0),
]
SIZE = 256


class FastSlideReader:
    """fastslide behind the three calls this benchmark needs."""

    def __init__(self, path: Path) -> None:
        import fastslide

        target = path
        if path.is_dir():  # fastslide takes one DICOM file and finds the series
            target = sorted(path.glob("*.dcm"), key=lambda p: -p.stat().st_size)[0]
        self._s = fastslide.FastSlide.from_file_path(str(target))
        self.level_dimensions = tuple(tuple(d) for d in self._s.level_dimensions)
        self.level_downsamples = tuple(self._s.level_downsamples)

    def read_region(self, loc, level, size):
        # fastslide takes level coordinates (rounded down here: it has no sub-pixel sampling)
        down = self.level_downsamples[level]
        loc = (int(loc[0] / down), int(loc[1] / down))
        region = np.asarray(self._s.read_region(location=loc, level=level, size=size).numpy())
        return region[..., :3] if region.ndim == 3 else np.repeat(region[..., None], 3, 2)

    def close(self) -> None:
        self._s.close()


def _open(path: Path, backend: str):
    if backend == "fastslide":
        return FastSlideReader(path)
    return open_slide(path, backend=backend)


def measure(path: Path, backend: str, source: Path, source_level: int, n: int) -> dict:
    row: dict = {"file": path.name, "backend": backend}
    try:
        t = time.perf_counter()
        slide = _open(path, backend)
        row["open_s"] = round(time.perf_counter() - t, 4)
    except Exception as exc:
        row["error"] = f"{type(exc).__name__}: {exc}"[:300]
        return row
    row["levels"] = len(slide.level_dimensions)
    rng = np.random.default_rng(0)
    with open_slide(source, backend="openslide") as ref:
        sdown = ref.level_downsamples[source_level]
        for level in sorted({0, len(slide.level_dimensions) - 1}):
            lw, lh = slide.level_dimensions[level]
            down = slide.level_downsamples[level]
            if lw < SIZE or lh < SIZE:
                continue
            locs = [(int(rng.integers(0, lw - SIZE) * down), int(rng.integers(0, lh - SIZE) * down)) for _ in range(n)]
            t = time.perf_counter()
            try:
                regions = [slide.read_region(loc, level, (SIZE, SIZE)) for loc in locs]
            except Exception as exc:
                row[f"level{level}_error"] = f"{type(exc).__name__}: {exc}"[:300]
                continue
            row[f"level{level}_regions_per_s"] = round(n / (time.perf_counter() - t), 1)
            # the same place in the source: its level whose downsample matches (level 0 scaled by
            # the file's own downsample)
            ref_level = min(range(ref.level_count), key=lambda i: abs(ref.level_downsamples[i] - down * sdown))
            if abs(ref.level_downsamples[ref_level] - down * sdown) / (down * sdown) > 0.01:
                continue  # no source level at this scale: pixels not comparable without resampling
            diffs = [np.abs(np.asarray(r[..., :3], float) - ref.read_region((int(x * sdown), int(y * sdown)), ref_level, (SIZE, SIZE)).astype(float)).mean()
                     for r, (x, y) in zip(regions[:20], locs[:20], strict=True)]
            row[f"level{level}_mean_abs_diff_vs_source"] = round(float(np.mean(diffs)), 3)
    slide.close()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--regions", type=int, default=200)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    rows = [measure(path, b, src, lvl, args.regions) for path, backends, src, lvl in CASES for b in backends]
    for row in rows:
        print(json.dumps(row))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"regions": args.regions, "size": SIZE, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
