"""Export features to the ``.h5`` layouts that CLAM and TRIDENT (and tools built on them) read.

TRIDENT layout: ``features`` (N, D) float32 with attrs ``name``, ``savetodir``, ``encoder``;
``coords`` (N, 2) int64 level-0 top-left with ``patch_size`` (px at the target), ``patch_size_level0``,
``level0_magnification``, ``target_magnification``, ``overlap``, ``name``, ``savetodir``,
``level0_width``, ``level0_height``. CLAM layout: what CLAM's ``extract_features_fp.py`` writes
and its training dataset reads, ``DEST/h5_files/<id>.h5`` (``features`` float32 and ``coords``
int32, no attributes) and ``DEST/pt_files/<id>.pt`` (the features tensor, ``torch.save``). Our
extra provenance goes into file attrs under ``slidestream_*`` keys, which neither tool reads and
neither minds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import h5py
import numpy as np

from slidestream.atomic import atomic_path
from slidestream.store.slide_store import SlideStore

Layout = Literal["trident", "clam"]


def magnification_for(mpp: float | None) -> float | None:
    """The conventional magnification of a resolution (10 / mpp: 0.5 um/px is 20x)."""
    return None if not mpp else 10.0 / mpp


def _integral(value: float) -> float | int:
    """TRIDENT writes magnifications as ints (20, not 20.0); keep fractional ones as they are."""
    return round(value) if abs(value - round(value)) < 1e-6 else float(value)


def export_h5(store: SlideStore, encoder: str, dest: str | Path, layout: Layout = "trident") -> Path:
    """Write ``dest`` (a file, or a folder receiving ``<slide_id>.h5``) from ``features/<encoder>``.

    For the CLAM layout a folder ``dest`` receives ``h5_files/<id>.h5`` and ``pt_files/<id>.pt``.
    """
    features, coords, attrs = store.read_features(encoder)
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
            slide_mpp = (slide.get("mpp_x") or 0.0)
            level0_mag = slide.get("objective_power") or magnification_for(slide_mpp)
            c.attrs.update({
                "patch_size": int(tiles_attrs["tile_size_px"]),
                "patch_size_level0": int(tiles_attrs["level0_size"][0]),
                "level0_magnification": _integral(float(level0_mag)) if level0_mag else "None",  # TRIDENT's None
                "target_magnification": _integral(float(magnification_for(tiles_attrs["target_mpp"]))),
                "overlap": int(tiles_attrs["overlap_px"]),
                "name": store.slide_id,
                "savetodir": str(path.parent),
                "level0_width": int(slide.get("width", 0)),
                "level0_height": int(slide.get("height", 0)),
            })
        else:
            raise ValueError(f"unknown h5 layout {layout!r}; choose trident or clam")
        h5.attrs["slidestream_provenance"] = json.dumps({"features": attrs, "tiles": tiles_attrs}, default=str)
        h5.attrs["slidestream_target_mpp"] = float(tiles_attrs["target_mpp"])
    return path


def _write_pt(features: np.ndarray, path: Path) -> None:
    """CLAM's ``pt_files`` entry: the (N, D) float32 tensor; torch is imported only here."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32)), tmp)
