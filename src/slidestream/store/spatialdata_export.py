"""Export a slide store as a SpatialData zarr that LazySlide / ``wsidata.open_wsi`` opens.

``spatialdata.read_zarr`` and ``wsidata.open_wsi`` see our own stores as empty (they look for
``shapes/``, ``tables/`` and ``images/`` elements), so this writes the elements the way
``wsidata.io`` does (``add_tissues``, ``add_tiles``, ``add_features``):

- ``shapes/tissues``: one polygon per tissue piece (``tissue_id``), level-0 pixels;
- ``shapes/tiles``: one box per tile (``tile_id``, ``x``, ``y``, ``tissue_id``), level-0 pixels,
  with ``attrs["tile_spec"]["tiles"]`` (wsidata's ``TileSpec``: tile size and stride at the
  tile mpp, the read level and the level-0 footprint);
- ``tables/<encoder>_tiles``: an AnnData of the features (``obs`` ``tile_id`` and
  ``library_id``), linked to ``tiles`` by SpatialData's table model (region ``tiles``).

The coordinate system is ``global`` with the identity transform (level-0 pixels), as wsidata
uses. Needs the optional ``spatialdata`` extra (``pip install 'slidestream[spatialdata]'``).
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from slidestream.errors import EmptyBagError, StoreError
from slidestream.store.slide_store import SlideStore

TISSUE_KEY = "tissues"
TILE_KEY = "tiles"
TILE_SPEC_KEY = "tile_spec"  # wsidata.WSIData.TILE_SPEC_KEY


class MissingDependencyError(StoreError):
    """The export needs a package this environment lacks; the message says what to install."""


def feature_key(encoder: str) -> str:
    """wsidata's name for the features of ``encoder`` on the ``tiles`` (``<feature>_<tile_key>``)."""
    return f"{encoder}_{TILE_KEY}"


def tile_spec(tiles_attrs: dict[str, Any]) -> dict[str, Any]:
    """wsidata's ``TileSpec.to_dict()`` for our tile grid."""
    size = int(tiles_attrs["tile_size_px"])
    stride = int(tiles_attrs.get("stride_px") or size - int(tiles_attrs.get("overlap_px", 0)))
    read = tiles_attrs.get("read_size") or tiles_attrs["level0_size"]
    return {
        "height": size, "width": size, "stride_height": stride, "stride_width": stride,
        "mpp": float(tiles_attrs["target_mpp"]),
        "ops_level": int(tiles_attrs.get("read_level", 0)), "ops_downsample": float(read[0]) / size,
        "base_level": 0, "base_downsample": float(tiles_attrs["level0_size"][0]) / size,
        "tissue_name": TISSUE_KEY,
    }


def require_spatialdata() -> Any:
    try:
        import spatialdata
    except ImportError as exc:
        raise MissingDependencyError(None, "the SpatialData export needs spatialdata: "
                                           "pip install 'slidestream[spatialdata]'") from exc
    return spatialdata


def export_spatialdata(store: SlideStore, dest: str | Path, encoders: list[str] | None = None) -> Path:
    """Write ``dest/<slide_id>.zarr`` (SpatialData) with tissues, tiles and each encoder's features.

    ``encoders`` defaults to every complete ``features/<encoder>``. A slide without tiles raises
    :class:`EmptyBagError` (nothing for LazySlide to open). Written under a temporary name and
    renamed into place, so a reader never meets a half-written export.
    """
    spatialdata = require_spatialdata()
    import anndata as ad
    import geopandas as gpd
    import pandas as pd
    import shapely
    from spatialdata.models import ShapesModel, TableModel

    if not store.has("tiles"):
        raise StoreError(store.path, "no tiles to export (run `slidestream tile` first)")
    tiles = store.read_tiles()
    if len(tiles) == 0:
        raise EmptyBagError(store.path, "no tiles (no tissue found): nothing for SpatialData/LazySlide, no file written")
    pieces = list(store.read_tissue_pieces()[0]) if store.has("tissue") else []
    tissues = gpd.GeoDataFrame({"tissue_id": np.arange(len(pieces)), "geometry": pieces}, geometry="geometry")

    w, h = (int(v) for v in tiles.attrs["level0_size"])
    xy = np.asarray(tiles.coords, dtype=np.int64)
    boxes = shapely.box(xy[:, 0], xy[:, 1], xy[:, 0] + w, xy[:, 1] + h)
    if len(tissues):  # the tissue piece each tile lies on (or is nearest to)
        _, nearest = tissues.sindex.nearest(shapely.centroid(boxes), return_all=False)
        tissue_ids = np.asarray(nearest, dtype=np.int64)
    else:
        tissue_ids = np.full(len(xy), -1, dtype=np.int64)
    tile_frame = gpd.GeoDataFrame({"tile_id": np.arange(len(xy)), "x": xy[:, 0], "y": xy[:, 1],
                                   "tissue_id": tissue_ids, "geometry": boxes}, geometry="geometry")

    shapes = {TILE_KEY: ShapesModel.parse(tile_frame)}
    if len(tissues):
        shapes[TISSUE_KEY] = ShapesModel.parse(tissues)
    tables = {}
    for encoder in encoders if encoders is not None else store.list_nodes("features"):
        features, _, attrs = store.read_features(encoder)
        rows = store.read_selection(attrs["selection"]) if attrs.get("selection") else np.arange(len(xy))
        obs = pd.DataFrame({"tile_id": rows.astype(np.int64),
                            "library_id": pd.Categorical([TILE_KEY] * len(rows))}, index=rows.astype(str))
        table = ad.AnnData(X=np.asarray(features, dtype=np.float32), obs=obs,
                           uns={"slidestream": {"encoder": encoder, "weights_sha256": attrs.get("weights_sha256"),
                                                "mpp": attrs.get("mpp"), "selection": attrs.get("selection")}})
        tables[feature_key(encoder)] = TableModel.parse(table, region=TILE_KEY, region_key="library_id",
                                                        instance_key="tile_id")
    sdata = spatialdata.SpatialData(shapes=shapes, tables=tables)
    sdata.attrs[TILE_SPEC_KEY] = {TILE_KEY: tile_spec(tiles.attrs)}
    sdata.attrs["slidestream"] = {"slide_id": store.slide_id, "store": str(store.path), "slide": store.slide_info}

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    final = dest / f"{store.slide_id}.zarr"
    if final.resolve() == store.path.resolve():
        raise StoreError(store.path, "the SpatialData export would replace the slide store itself; choose another --dest")
    tmp = dest / f".{final.name}.{uuid.uuid4().hex[:8]}.partial"
    try:
        sdata.write(tmp)
        if final.exists():
            trash = dest / f".{final.name}.{uuid.uuid4().hex[:8]}.trash"
            os.rename(final, trash)
            os.rename(tmp, final)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.rename(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final
