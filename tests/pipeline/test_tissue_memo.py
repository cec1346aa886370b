"""The tile stage reuses the tissue geometry detected in the same process, never a stale one."""

from __future__ import annotations

from slidestream.pipeline import stages
from slidestream.pipeline.stages import SlideSource, run_tiles, run_tissue, tissue_geometry
from slidestream.store import SlideStore
from slidestream.tiling.params import TilingParams
from slidestream.tissue import TissueParams
from slidestream.tissue.geojson import geometry_from_feature_collection
from tests.conftest import CMU


def test_geometry_in_memory_matches_the_store_and_follows_a_rewrite(tmp_path):
    source = SlideSource(CMU)
    run_tiles(source, tmp_path, TilingParams(), write_images=False)
    store = SlideStore.open(tmp_path / f"{source.slide_id}.zarr")
    parsed = geometry_from_feature_collection(store.read_tissue_geojson())
    remembered = tissue_geometry(store)
    assert remembered.symmetric_difference(parsed).area < 1e-6 * parsed.area

    # another detection rewrites the node: the memo must not serve the old geometry
    run_tissue(source, tmp_path, TissueParams(closing_um=0, min_object_um2=200_000), overwrite=True,
               write_images=False)
    rewritten = geometry_from_feature_collection(store.read_tissue_geojson())
    assert rewritten.symmetric_difference(parsed).area > 0
    assert tissue_geometry(store).symmetric_difference(rewritten).area < 1e-6 * rewritten.area
    # a memo whose stamp is not the node's (another process wrote it) is ignored
    stages._TISSUE_MEMO[str(store.path)] = ((*stages._tissue_stamp(store)[:2], -1), parsed, None)
    assert tissue_geometry(store).equals(rewritten)
