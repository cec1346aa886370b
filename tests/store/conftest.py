"""Synthetic slide stores with features, shaped like what ``slidestream extract`` writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from slidestream.store import SlideStore

MPP = 0.2527  # a 40x scan whose file has no objective power: 10 / mpp = 39.57
FOOTPRINT = round(224 * 0.5 / MPP)  # 443 level-0 px per 224 px tile at 0.5 um/px


def make_store(out: Path, slide_id: str, n_tiles: int, dim: int = 8, seed: int = 0, mpp: float = MPP,
               objective_power: float | None = None) -> SlideStore:
    """A store with ``n_tiles`` tiles on a 0.5 um/px grid and ``handcrafted`` features for each."""
    rng = np.random.default_rng(seed)
    info = {"path": f"/slides/{slide_id}.svs", "width": 20000, "height": 15000, "mpp_x": mpp, "mpp_y": mpp,
            "objective_power": objective_power}
    store = SlideStore.create(out, slide_id, info)
    footprint = round(224 * 0.5 / mpp)
    cols = np.arange(n_tiles) % 7
    rows = np.arange(n_tiles) // 7
    coords = np.stack([cols * footprint + 3 * footprint, rows * footprint + footprint], 1)
    store.write_tiles(coords, np.full(n_tiles, 0.9), {
        "target_mpp": 0.5, "tile_size_px": 224, "overlap_px": 0, "stride_px": 224, "level0_size": [footprint, footprint],
        "read_level": 0, "read_size": [footprint, footprint], "n_tiles": n_tiles}, {"mpp": 0.5, "tile_size": 224})
    writer = store.feature_writer("handcrafted", n_tiles, dim, {"encoder": "handcrafted", "dim": dim, "selection": None})
    if n_tiles:
        writer.write(0, rng.normal(size=(n_tiles, dim)).astype(np.float32))
    writer.commit()
    return store


@pytest.fixture
def stores(tmp_path) -> Path:
    """Two slides with tissue (20 and 9 tiles) and one without (0 tiles)."""
    out = tmp_path / "out"
    make_store(out, "slide-a", 20, seed=1)
    make_store(out, "slide-b", 9, seed=2)
    make_store(out, "blank", 0, seed=3)
    return out
