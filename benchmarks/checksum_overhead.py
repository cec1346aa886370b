"""What the per-chunk crc32c checksums and the checked reads cost (issue 13).

A features node of ``--rows`` x ``--dim`` float32 (default 20,000 x 1,024: a large slide with a
ViT-L encoder, 78 MiB), written in 1,024-row chunks as extraction writes it, then read whole.
Each variant is timed ``--repeats`` times (median reported), alternating so that machine load
hits them alike:

- write ``plain``: zarr v3 with slidestream's compressor (zstd level 0) and no checksum;
- write ``crc32c``: ``slidestream.store.integrity.create_array`` (zstd + crc32c, empty chunks
  written) plus :func:`seal` (chunk count and metadata digest), i.e. what the store does;
- read ``plain``: ``zarr.open_array(...)[...]`` on the plain array (zarr's concurrent read);
- read ``checked``: ``read_array`` on the checksummed array (digest, chunk listing, chunk-by-chunk
  decode with crc32c), i.e. what every slidestream reader now does;
- ``quick check``: metadata digest + chunk presence (what the report does per node);
- ``crc32c only``: the checksum computation alone over every stored chunk (the intrinsic cost,
  which machine load does not blur as much as whole writes and reads).

Usage: ``python benchmarks/checksum_overhead.py [--rows 20000 --dim 1024 --repeats 5]``.
Writes ``benchmarks/results/checksum_overhead.json``. Not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import zarr
from zarr.codecs import ZstdCodec

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, median, save_results

from slidestream.store.integrity import check_chunks, create_array, read_array, read_meta, seal


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _since(start: tuple[float, float]) -> tuple[float, float]:
    wall, cpu = _clock()
    return wall - start[0], cpu - start[1]


def write(path: Path, data: np.ndarray, chunk_rows: int, checked: bool) -> tuple[float, float]:
    shutil.rmtree(path, ignore_errors=True)
    start = _clock()
    chunks = (chunk_rows, data.shape[1])
    if checked:
        arr = create_array(path, None, data.shape, data.dtype, chunks)
    else:
        arr = zarr.create_array(path, shape=data.shape, dtype=data.dtype, chunks=chunks, zarr_format=3,
                                compressors=[ZstdCodec(level=0, checksum=False)])
    for start_row in range(0, len(data), chunk_rows):  # one write per chunk, as FeatureWriter does
        arr[start_row:start_row + chunk_rows] = data[start_row:start_row + chunk_rows]
    arr.attrs.update({"complete": True})
    if checked:
        seal(path)
    return _since(start)


def read(path: Path, checked: bool) -> tuple[float, float]:
    start = _clock()
    if checked:
        out = read_array(path.parent, path.name)
    else:
        out = np.asarray(zarr.open_array(path, mode="r", zarr_format=3)[...])
    assert out.shape[0] > 0
    return _since(start)


def quick_check(path: Path) -> tuple[float, float]:
    start = _clock()
    check_chunks(path.parent, path.name, read_meta(path.parent, path.name))
    return _since(start)


def crc_only(path: Path) -> tuple[float, float]:
    """The checksum itself: CRC-32C (google_crc32c, what zarr's codec calls) over every chunk file in memory."""
    import google_crc32c

    blobs = [p.read_bytes() for p in sorted((path / "c").rglob("*")) if p.is_file()]
    start = _clock()
    for blob in blobs:
        google_crc32c.value(blob[:-4])
    return _since(start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--chunk-rows", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--scratch", type=Path, default=None)
    args = parser.parse_args()
    data = np.random.default_rng(0).normal(size=(args.rows, args.dim)).astype(np.float32)
    scratch = Path(tempfile.mkdtemp(dir=args.scratch))
    times: dict[str, list[tuple[float, float]]] = {"write_plain": [], "write_crc32c": [], "read_plain": [],
                                                   "read_checked": [], "quick_check": [], "crc32c_only": []}
    try:
        plain, checked = scratch / "plain", scratch / "checked"
        for _ in range(args.repeats):
            times["write_plain"].append(write(plain, data, args.chunk_rows, checked=False))
            times["write_crc32c"].append(write(checked, data, args.chunk_rows, checked=True))
            times["read_plain"].append(read(plain, checked=False))
            times["read_checked"].append(read(checked, checked=True))
            times["quick_check"].append(quick_check(checked))
            times["crc32c_only"].append(crc_only(checked))
        np.testing.assert_array_equal(read_array(scratch, "checked"), data)
        sizes = {name: sum(p.stat().st_size for p in (scratch / name).rglob("*") if p.is_file())
                 for name in ("plain", "checked")}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    med = {k: median([w for w, _ in v]) for k, v in times.items()}
    cpu = {k: median([c for _, c in v]) for k, v in times.items()}
    mib = data.nbytes / 2**20
    result = {
        "what": f"features node {args.rows} x {args.dim} float32 ({mib:.0f} MiB), {args.chunk_rows}-row chunks, "
                f"median of {args.repeats}; wall seconds and process CPU seconds (all threads): on a loaded, shared "
                "machine the CPU seconds are the steadier measure of cost",
        "seconds_median": {k: round(v, 4) for k, v in med.items()},
        "cpu_seconds_median": {k: round(v, 4) for k, v in cpu.items()},
        "seconds_all": {k: [round(w, 4) for w, _ in v] for k, v in times.items()},
        "cpu_seconds_all": {k: [round(c, 4) for _, c in v] for k, v in times.items()},
        "write_overhead": round(med["write_crc32c"] / med["write_plain"] - 1, 3),
        "read_overhead": round(med["read_checked"] / med["read_plain"] - 1, 3),
        "write_overhead_cpu": round(cpu["write_crc32c"] / cpu["write_plain"] - 1, 3),
        "read_overhead_cpu": round(cpu["read_checked"] / cpu["read_plain"] - 1, 3),
        "write_mib_per_s": {"plain": round(mib / med["write_plain"]), "crc32c": round(mib / med["write_crc32c"])},
        "read_mib_per_s": {"plain": round(mib / med["read_plain"]), "checked": round(mib / med["read_checked"])},
        "bytes_on_disk": sizes,
        "machine": machine(),
    }
    path = save_results("checksum_overhead", result)
    print(f"write: plain {med['write_plain']:.3f} s, crc32c+seal {med['write_crc32c']:.3f} s "
          f"({result['write_overhead']:+.1%}); read: plain {med['read_plain']:.3f} s, checked {med['read_checked']:.3f} s "
          f"({result['read_overhead']:+.1%}); CPU: write {cpu['write_plain']:.3f} -> {cpu['write_crc32c']:.3f} s "
          f"({result['write_overhead_cpu']:+.1%}), read {cpu['read_plain']:.3f} -> {cpu['read_checked']:.3f} s "
          f"({result['read_overhead_cpu']:+.1%}); CRC-32C alone {cpu['crc32c_only'] * 1e3:.1f} ms CPU; "
          f"quick check {med['quick_check'] * 1e3:.1f} ms; "
          f"disk {sizes['plain']:,} -> {sizes['checked']:,} bytes -> {path}")


if __name__ == "__main__":
    main()
