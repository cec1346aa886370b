"""Assemble ``results/README_table.md`` (the README's performance section) from the results JSON.

    python benchmarks/make_table.py     # prints the Markdown and writes results/README_table.md
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, machine_line, md_table


def summary_extract(payload: dict) -> str:
    """One line per slide and encoder: the headline ratios of the extraction benchmark."""
    rows = []
    for rec in payload["slides"]:
        read = rec["read"]
        floor = read["floor: openslide level 0 + resize"]["tiles_per_s"]
        ours = max((v["tiles_per_s"], k) for k, v in read.items() if k.startswith("slidestream fast"))
        peers = [(v["tiles_per_s"], k) for k, v in read.items() if k.startswith("hs2p") and "tiles_per_s" in v]
        best_peer = max(peers) if peers else None
        for key, r in rec["ratios"].items():
            if not isinstance(r, dict) or "fast" not in key:
                continue
            rows.append([rec["slide"], f"{rec['read_level']} ({rec['read_size'][0]} px)", floor,
                         f"{ours[0]:,.0f} ({ours[1].removeprefix('slidestream fast, ')})",
                         f"{best_peer[0]:,.0f} ({best_peer[1]})" if best_peer else "n/a",
                         key.split(",")[0], r["forward_tiles_per_s"], r["pipeline_tiles_per_s"],
                         r["pipeline_over_min_read_forward"]])
    return md_table(["slide", "read level", "floor tiles/s", "slidestream read tiles/s", "best hs2p read tiles/s",
                     "encoder (CPU)", "forward tiles/s", "pipeline tiles/s", "pipeline / min(read, fwd)"], rows)


def main() -> int:
    parts = ["## Performance", ""]
    extract = RESULTS / "extract.json"
    tiling = RESULTS / "tiling.json"
    machines: list[tuple[str, dict]] = []
    if extract.exists():
        payload = json.loads(extract.read_text())
        machines.append(("extraction", payload["machine"]))
        parts += ["### Tile reading and feature extraction (0.5 um/px, 224 px tiles)", "",
                  "Floor: a plain sequential `openslide.read_region` of the level-0 footprint + PIL resize. "
                  "The pipeline is `slidestream extract` as a user runs it (seconds from the run manifest). "
                  "`-x4` slides have levels 1/4/16, so 0.5 um/px is read from level 0 (slidestream decodes the "
                  "JPEG tiles at DCT scale 1/2). Full per-reader tables: `benchmarks/results/extract_table.md`.", "",
                  summary_extract(payload), ""]
    read_limit = RESULTS / "read_limit.json"
    if read_limit.exists():
        from bench_read_limit import summary_table

        payload = json.loads(read_limit.read_text())
        machines.append(("reading vs decode limit", payload["machine"]))
        parts += ["### Tile reading against the exact JPEG decode limit and hs2p (0.5 um/px, 224 px tiles)", "",
                  "Decode limit: the JPEG tiles the tile set needs, each decoded once from memory by the fastest "
                  "decoder available, in output tiles/s; hs2p: its tile stream, best of its openslide/cuCIM readers "
                  f"with and without supertiles. Best of {payload['repeat']} interleaved rounds, medians in brackets; "
                  "per-reader figures: `benchmarks/results/read_limit_table.md`.", "", summary_table(payload), ""]
    if tiling.exists():
        from bench_tiling import render

        payload = json.loads(tiling.read_text())
        machines.append(("tiling", payload["machine"]))
        table = render(payload).rsplit("\n\nMachine:", 1)[0]   # one machine line for the whole section
        parts += ["### Tissue detection + tiling across slide sizes, against the peers", "", table, ""]
    if not machines:
        raise SystemExit("no results yet: run bench_extract.py and bench_tiling.py first")
    parts += ["Slides: mosaics of real H&E tissue built by `benchmarks/make_slides.py` (pyramidal JPEG TIFF/SVS, "
              "0.25 um/px). Reproduce with the commands in `benchmarks/README.md`.",
              f"Machine: {machine_line(machines[0][1]).split('; load average')[0]}; load average at the start "
              "of each benchmark (a shared machine): "
              + ", ".join(f"{name} {m['load_avg_at_start'][0]}" for name, m in machines) + "."]
    text = "\n".join(parts) + "\n"
    (RESULTS / "README_table.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
