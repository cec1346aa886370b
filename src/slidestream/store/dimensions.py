"""Name the axes of arrays in stores written before arrays carried ``dimension_names``.

New stores name every axis when they are written (see ``slide_store.py``); this gives older
stores the same names, so ``xr.open_zarr`` opens them too, without rewriting any data: only each
array's ``zarr.json`` gains ``dimension_names`` (one atomic file replace per array).
"""

from __future__ import annotations

import json
from pathlib import Path

from slidestream.atomic import atomic_write_text
from slidestream.store.slide_store import TILE_DIM, SlideStore, selection_dim


def _names(store: SlideStore, group: str, name: str, ndim: int) -> tuple[str, ...]:
    """The names a current writer would give ``group/name``."""
    if group == "tiles":
        names: tuple[str, ...] = (TILE_DIM, "xy") if name == "coords" else (TILE_DIM,)
    elif group == "selections":
        names = (selection_dim(name),)
    elif group == "features":
        selection = store.node_attrs(f"features/{name}").get("selection")
        names = (selection_dim(selection) if selection else TILE_DIM, f"{name}_feature")
    elif group == "tile_scores":
        rows = store.node_attrs(f"tile_scores/{name}").get("rows", "tiles")
        selection = store.node_attrs(rows).get("selection") if rows.startswith("features/") else None
        names = (selection_dim(selection) if selection else TILE_DIM,)
    elif group == "slide_embeddings":
        names = (f"{name}_feature",) if ndim == 1 else ()
    else:
        names = ()
    names = names[:ndim]
    return names + tuple(f"{name}_dim{i}" for i in range(len(names), ndim))


def name_dimensions(store: SlideStore | str | Path) -> list[str]:
    """Add ``dimension_names`` to every complete array of ``store`` that lacks them; returns the
    arrays changed (``tiles/coords``, ``features/uni``, ...). Arrays that have names are left alone."""
    store = store if isinstance(store, SlideStore) else SlideStore.open(store)
    changed = []
    for group in ("tiles", "selections", "features", "tile_scores", "slide_embeddings"):
        if group == "tiles":
            arrays = ["coords", "tissue_fraction", "focus"] if store.has("tiles") else []
            paths = {a: store.path / "tiles" / a / "zarr.json" for a in arrays}
        else:
            paths = {n: store.path / group / n / "zarr.json" for n in store.list_nodes(group)}
        for name, meta_path in paths.items():
            if not meta_path.exists():
                continue
            meta = json.loads(meta_path.read_text())
            if meta.get("node_type") != "array" or meta.get("dimension_names"):
                continue
            meta["dimension_names"] = list(_names(store, group, name, len(meta["shape"])))
            atomic_write_text(meta_path, json.dumps(meta, indent=2))
            changed.append(f"{group}/{name}")
    return changed
