"""Export features to the ``.h5`` layouts that CLAM and TRIDENT (and tools built on them) read.

TRIDENT layout: ``features`` (N, D) float32 with attrs ``name``, ``savetodir``, ``encoder``;
``coords`` (N, 2) int64 level-0 top-left with ``patch_size`` (px at the target), ``patch_size_level0``,
``level0_magnification``, ``target_magnification``, ``overlap``, ``name``, ``savetodir``,
``level0_width``, ``level0_height``, with TRIDENT's own magnification rule (see
:func:`trident_magnification`) so TRIDENT re-reads the tile size the file states. CLAM layout: what CLAM's ``extract_features_fp.py`` writes
and its training dataset reads, ``DEST/h5_files/<id>.h5`` (``features`` float32 and ``coords``
int32, no attributes) and ``DEST/pt_files/<id>.pt`` (the features tensor, ``torch.save``). Our
extra provenance goes into file attrs under ``slidestream_*`` keys, which neither tool reads and
neither minds. A slide without tiles gets no file (:class:`EmptyBagError`), as in both tools.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import h5py
import numpy as np

from slidestream.atomic import atomic_path
from slidestream.errors import EmptyBagError
from slidestream.store.slide_store import SlideStore

Layout = Literal["trident", "clam"]
# TRIDENT's WSI._fetch_magnification (mahmoodlab/TRIDENT, trident/wsi_objects/WSI.py): the mpp
# (rounded to 4 decimals) is binned to a conventional objective, whatever the scanner recorded;
# the objective power is used only when there is no mpp. (upper mpp bound, magnification)
TRIDENT_MPP_BINS = ((0.16, 80), (0.2, 60), (0.3, 40), (0.6, 20), (1.2, 10), (2.4, 5))


def magnification_for(mpp: float | None) -> float | None:
    """The conventional magnification of a resolution (10 / mpp: 0.5 um/px is 20x)."""
    return None if not mpp else 10.0 / mpp


def trident_magnification(mpp: float | None, objective_power: float | None = None) -> int | float | None:
    """The level-0 magnification TRIDENT assigns a slide: 40 for 0.2527 um/px (not 39.57).

    TRIDENT re-reads a tile as ``round(patch_size * level0_mag / target_mag)`` level-0 pixels, so
    the export must state the magnification TRIDENT itself would. Beyond TRIDENT's bins (mpp >=
    2.4, which TRIDENT refuses) the plain 10 / mpp is kept.
    """
    if mpp:
        mpp = round(float(mpp), 4)
        for bound, magnification in TRIDENT_MPP_BINS:
            if mpp < bound:
                return magnification
        return _integral(10.0 / mpp)
    return int(objective_power) if objective_power else None


def read_bag(store: SlideStore, encoder: str) -> tuple[np.ndarray, np.ndarray, dict]:
    """Features, level-0 coords and attrs of ``features/<encoder>``; an empty bag is an
    :class:`EmptyBagError` (no tissue, so no tiles), which exports report as a skipped slide."""
    features, coords, attrs = store.read_features(encoder)
    if len(features) == 0:
        raise EmptyBagError(store.path, f"no tiles (no tissue found), so no bag for {encoder}: "
                                        "no file written, as CLAM and TRIDENT do")
    return features, coords, attrs


def _integral(value: float) -> float | int:
    """TRIDENT writes magnifications as ints (20, not 20.0); keep fractional ones as they are."""
    return round(value) if abs(value - round(value)) < 1e-6 else float(value)


def export_h5(store: SlideStore, encoder: str, dest: str | Path, layout: Layout = "trident") -> Path:
    """Write ``dest`` (a file, or a folder receiving ``<slide_id>.h5``) from ``features/<encoder>``.

    For the CLAM layout a folder ``dest`` receives ``h5_files/<id>.h5`` and ``pt_files/<id>.pt``.
    A slide without tiles raises :class:`EmptyBagError` and writes nothing.
    """
    if layout not in ("trident", "clam"):
        raise ValueError(f"unknown h5 layout {layout!r}; choose trident or clam")
    features, coords, attrs = read_bag(store, encoder)
    tiles_attrs = store.node_attrs("tiles")
    slide = store.slide_info
    dest = Path(dest)
    if layout == "clam" and dest.suffix != ".h5":
        _write_pt(features, dest / "pt_files" / f"{store.slide_id}.pt")
        dest = dest / "h5_files"
    path = dest / f"{store.slide_id}.h5" if dest.suffix != ".h5" else dest
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as h5:
        if layout == "clam":
            h5.create_dataset("features", data=features.astype(np.float32))
            h5.create_dataset("coords", data=coords.astype(np.int32))
        elif layout == "trident":
            f = h5.create_dataset("features", data=features.astype(np.float32))
            f.attrs.update({"name": store.slide_id, "savetodir": str(path.parent), "encoder": encoder})
            c = h5.create_dataset("coords", data=coords.astype(np.int64))
            patch_size = int(tiles_attrs["tile_size_px"])
            level0_mag = trident_magnification(slide.get("mpp_x"), slide.get("objective_power"))
            target_mag = _integral(float(magnification_for(tiles_attrs["target_mpp"])))
            # TRIDENT's coords_to_h5: patch_size * level0_mag // target_mag (what it re-reads)
            level0_patch = int(patch_size * level0_mag // target_mag) if level0_mag else int(tiles_attrs["level0_size"][0])
            c.attrs.update({
                "patch_size": patch_size,
                "patch_size_level0": level0_patch,
                "level0_magnification": level0_mag if level0_mag else "None",  # TRIDENT's None
                "target_magnification": target_mag,
                "overlap": int(tiles_attrs["overlap_px"]),
                "name": store.slide_id,
                "savetodir": str(path.parent),
                "level0_width": int(slide.get("width", 0)),
                "level0_height": int(slide.get("height", 0)),
            })
        h5.attrs["slidestream_provenance"] = json.dumps({"features": attrs, "tiles": tiles_attrs}, default=str)
        h5.attrs["slidestream_target_mpp"] = float(tiles_attrs["target_mpp"])
        # the exact level-0 footprint our tiles were read with (TRIDENT's patch_size_level0 is its
        # own rounding of the magnification, e.g. 448 where 0.2527 um/px tiles span 443 px)
        h5.attrs["slidestream_level0_size"] = [int(v) for v in tiles_attrs["level0_size"]]
    return path


def _write_pt(features: np.ndarray, path: Path) -> None:
    """CLAM's ``pt_files`` entry: the (N, D) float32 tensor; torch is imported only here."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32)), tmp)
