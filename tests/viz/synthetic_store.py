"""Small real slide stores (the zarr format, no slide file needed) for viz, MIL and encoder tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from slidestream.store import SlideStore

TILE = 224


def make_store(
    out: Path,
    slide_id: str,
    *,
    grid: tuple[int, int] = (6, 5),
    dim: int = 6,
    encoder: str = "uni",
    seed: int = 0,
    slide_path: Path | None = None,
    size: tuple[int, int] | None = None,
    features: np.ndarray | None = None,
) -> SlideStore:
    """A store with tissue (one rectangle), a ``grid`` of tiles and ``features/<encoder>``.

    ``slide_path`` defaults to a file that does not exist, so pictures fall back to a blank canvas.
    """
    cols, rows = grid
    width, height = size or (cols * TILE + 2 * TILE, rows * TILE + TILE)
    info = {
        "path": str(slide_path or out / f"{slide_id}.missing.svs"),
        "width": width,
        "height": height,
    }
    store = SlideStore.create(out, slide_id, info)
    x0, y0 = TILE, TILE // 2
    ring = [
        [x0, y0],
        [x0 + cols * TILE, y0],
        [x0 + cols * TILE, y0 + rows * TILE],
        [x0, y0 + rows * TILE],
        [x0, y0],
    ]
    tissue = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "geometry": {"type": "Polygon", "coordinates": [ring]},
                "properties": {"objectType": "annotation"},
            }
        ],
    }
    store.write_tissue(tissue, {}, {})
    xs, ys = np.meshgrid(np.arange(cols) * TILE + x0, np.arange(rows) * TILE + y0)
    coords = np.stack([xs.ravel(), ys.ravel()], 1).astype(np.int64)
    store.write_tiles(
        coords, np.ones(len(coords)), {"level0_size": [TILE, TILE], "target_mpp": 0.5}, {}
    )
    if features is None:
        features = np.random.default_rng(seed).normal(size=(len(coords), dim)).astype(np.float32)
    writer = store.feature_writer(encoder, len(coords), features.shape[1], {"encoder": encoder})
    writer.write(0, features)
    writer.commit()
    return store
