"""Open a SpatialData export the way a LazySlide user does and dump what the tools see.

Run by ``test_spatialdata_export.py`` under the interpreter that has spatialdata and wsidata
(``SLIDESTREAM_INTEROP_PYTHON``, the ``.venv-interop`` that ``.ci/run`` builds, because
spatialdata pins pandas<3 and an older dask than the main environment). It imports neither
slidestream nor the test suite: everything it reports comes from ``spatialdata.read_zarr`` and
``wsidata.open_wsi`` and their accessors. The test (in the main environment) compares the dump
with the slide store the export came from.

Usage: ``python _spatialdata_reader.py EXPORT.zarr SLIDE FEATURE OUT.npz``
"""

from __future__ import annotations

import json
import sys

import numpy as np
import spatialdata
import wsidata
from spatialdata.models import get_table_keys
from spatialdata.transformations import Identity, get_transformation


def main(export: str, slide: str, feature: str, out: str) -> None:
    sdata = spatialdata.read_zarr(export)
    tissues = sdata.shapes["tissues"]
    tiles = sdata.shapes["tiles"]
    table = sdata.tables[f"{feature}_tiles"]
    region, region_key, instance_key = get_table_keys(table)
    identity = all(isinstance(get_transformation(el, "global"), Identity) for el in (tissues, tiles))

    wsi = wsidata.open_wsi(slide, store=export)
    fetched = wsi.fetch.features_anndata(feature, tile_key="tiles", tile_graph=False)
    spec = wsi.tile_spec("tiles")
    first_tile = next(wsi.iter.tile_images("tiles"))
    contours = list(wsi.iter.tissue_contours("tissues"))
    meta = {
        "shapes": sorted(sdata.shapes), "tables": sorted(sdata.tables),
        "wsi_shapes": sorted(wsi.shapes), "wsi_tables": sorted(wsi.tables),
        "region": region, "region_key": region_key, "instance_key": instance_key,
        "identity_global": identity,
        "n_tissue": int(wsi.fetch.n_tissue("tissues")), "n_tiles": int(wsi.fetch.n_tiles("tiles")),
        "tile_spec": {**spec.to_dict(), "base_width": spec.base_width, "base_stride_width": spec.base_stride_width},
        "first_tile_shape": list(first_tile.image.shape),
        "tissue_ids": [int(c.tissue_id) for c in contours],
        "slide_shape": [int(v) for v in wsi.properties.shape],  # (height, width)
        "versions": {"spatialdata": spatialdata.__version__, "wsidata": wsidata.__version__},
    }
    np.savez(
        out,
        meta=np.array(json.dumps(meta)),
        tile_xy=tiles[["x", "y"]].to_numpy(),
        tile_bounds=tiles.geometry.bounds.to_numpy(),
        tile_ids=tiles["tile_id"].to_numpy(),
        tissue_outer_areas=np.array([c.contour.area for c in contours]),
        tissue_hole_areas=np.array([sum(h.area for h in c.holes) for c in contours]),
        table_x=np.asarray(table.X),
        table_tile_ids=table.obs[instance_key].to_numpy(),
        fetched_x=np.asarray(fetched.X),
        fetched_xy=np.asarray(fetched.obsm["spatial"]),
    )


if __name__ == "__main__":
    main(*sys.argv[1:5])
