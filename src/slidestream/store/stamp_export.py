"""Export features to the ``.h5`` layout KatherLab's STAMP reads (``stamp preprocess`` output).

What STAMP's ``get_coords`` / ``BagDataset`` need (``src/stamp/modeling/data.py``, STAMP 2.5):
``feats`` (N, D) float16, ``coords`` (N, 2) float level-0 top-left corners **in micrometres**, and
file attrs ``unit="um"``, ``tile_size_um``, ``tile_size_px``, ``feat_type="tile"``, ``extractor``
and ``stamp_version``. Without ``tile_size_um`` STAMP falls back to its historic 256 um / 224 px
format and silently rescales the coordinates, so a renamed TRIDENT file is worse than none.

``stamp_version`` is compared by STAMP against the installed STAMP, and files stamped newer are
refused; we write the oldest release whose ``stamp preprocess`` writes this very layout
(``tile_size_um`` since 2.1.0), so every STAMP that can read the file accepts it.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from slidestream.errors import StoreError
from slidestream.store.h5export import read_bag
from slidestream.store.slide_store import SlideStore

STAMP_LAYOUT_VERSION = "2.1.0"
# Our registry names whose embedding is the one STAMP's extractor of that name computes; the
# others are written as ``slidestream-<name>`` so STAMP's slide encoders never mistake them.
STAMP_EXTRACTOR = {"uni": "uni", "uni2-h": "uni2", "gigapath": "gigapath", "h-optimus-0": "h-optimus-0",
                   "h-optimus-1": "h-optimus-1", "virchow": "virchow-full"}


def stamp_extractor(encoder: str) -> str:
    """STAMP's ``extractor`` attr for one of our encoders."""
    return STAMP_EXTRACTOR.get(encoder, f"slidestream-{encoder}")


def export_stamp(store: SlideStore, encoder: str, dest: str | Path) -> Path:
    """Write ``dest/<slide_id>.h5`` (or the file ``dest``) in STAMP's tile-feature layout.

    A slide without tiles raises :class:`~slidestream.errors.EmptyBagError` and writes nothing
    (``stamp preprocess`` also skips slides without tiles).
    """
    features, coords, attrs = read_bag(store, encoder)
    tiles_attrs = store.node_attrs("tiles")
    slide = store.slide_info
    mpp_x, mpp_y = slide.get("mpp_x"), slide.get("mpp_y") or slide.get("mpp_x")
    if not mpp_x:
        raise StoreError(store.path, "the slide has no mpp recorded: STAMP needs coordinates in micrometres")
    dest = Path(dest)
    path = dest if dest.suffix == ".h5" else dest / f"{store.slide_id}.h5"
    path.parent.mkdir(parents=True, exist_ok=True)
    coords_um = coords.astype(np.float64) * np.array([mpp_x, mpp_y], dtype=np.float64)
    tmp = path.with_name(path.name + ".partial")
    with h5py.File(tmp, "w") as h5:
        h5.create_dataset("feats", data=features.astype(np.float16))
        h5.create_dataset("coords", data=coords_um.astype(np.float32))
        h5.attrs.update({
            "stamp_version": STAMP_LAYOUT_VERSION,
            "extractor": stamp_extractor(encoder),
            "unit": "um",
            "tile_size_um": float(tiles_attrs["tile_size_px"]) * float(tiles_attrs["target_mpp"]),
            "tile_size_px": int(tiles_attrs["tile_size_px"]),
            "feat_type": "tile",
            "slidestream_encoder": encoder,
            "slidestream_provenance": json.dumps({"features": attrs, "tiles": tiles_attrs}, default=str),
        })
    tmp.replace(path)
    return path
