"""Extract one slide's features into its store: stream tiles, embed, write, resumable."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from slidestream.errors import StoreError
from slidestream.extraction.loader import iter_batches
from slidestream.extraction.reader import open_tile_reader
from slidestream.io import SlideSpec
from slidestream.store import SlideStore, selection_digest

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class ExtractOptions:
    batch_size: int = 64
    workers: int = 4            # threads reading/decoding tiles
    prefetch: int = 2           # batches read ahead of the model
    fast_read: bool = True      # JPEG-tile reader where the file allows it
    dtype: str = "float32"      # stored feature dtype (float16 halves the size)
    chunk_rows: int = 1024      # rows per zarr chunk, and per resumable write
    selection: str | None = None
    device_feed: bool | None = None  # pinned, asynchronous feeding (device_feed.py); None: on for CUDA


class FeaturesDone(Exception):  # noqa: N818 - a signal, not an error
    """The store already holds these features with the same provenance."""

    def __init__(self, rows: int) -> None:
        super().__init__("features already extracted")
        self.rows = rows


def feature_provenance(encoder: Any, tiles_attrs: dict[str, Any], options: ExtractOptions, reader_name: str,
                       selection_rows: np.ndarray | None = None) -> dict[str, Any]:
    """What makes two feature arrays interchangeable; differing provenance is never mixed."""
    prov = encoder.provenance()
    return {
        "encoder": prov["name"],
        "weights_sha256": prov["weights_sha256"],
        "random_init": prov["weights_sha256"] == "random-init",
        "dim": prov["dim"],
        "precision": prov["precision"],
        "encoder_provenance": prov,
        "mpp": tiles_attrs["target_mpp"],
        "tile_size": tiles_attrs["tile_size_px"],
        "read_level": tiles_attrs["read_level"],
        "n_tiles": tiles_attrs["n_tiles"],
        "selection": options.selection,
        "selection_digest": selection_digest(selection_rows) if options.selection and selection_rows is not None else None,
        "reader": reader_name,
        "dtype": options.dtype,
    }


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    keys = ("encoder", "weights_sha256", "dim", "precision", "mpp", "tile_size", "read_level", "n_tiles",
            "selection", "selection_digest", "reader", "dtype")
    return all(a.get(k) == b.get(k) for k in keys)


def extract_store(spec: SlideSpec, store: SlideStore, encoder: Any, options: ExtractOptions, *,
                  overwrite: bool = False, progress: Progress | None = None) -> dict[str, Any]:
    """Embed the store's tiles (or a selection) with ``encoder`` into ``features/<encoder>``.

    Resumes a partial run from its last written chunk; raises :class:`FeaturesDone` when the
    same features are already complete, and refuses to replace different ones unless ``overwrite``.
    """
    tiles = store.read_tiles()
    rows = store.read_selection(options.selection) if options.selection else np.arange(len(tiles))
    coords = tiles.coords[rows]
    name = encoder.spec.name
    rel = f"features/{name}"
    span0 = int(np.ptp(coords[:, 0]) + tiles.attrs["level0_size"][0]) if len(coords) else None
    reader = open_tile_reader(spec, tiles.attrs, fast=options.fast_read, workers=options.workers, span0=span0)
    try:
        provenance = feature_provenance(encoder, tiles.attrs, options, reader.name, rows)
        if store.has(rel):
            if _same(store.node_attrs(rel), provenance) and not overwrite:
                raise FeaturesDone(len(coords))
            if not overwrite:
                raise StoreError(store.path, f"holds features/{name} made differently (other weights, tiles, selection, "
                                 "precision or reader); use --overwrite to replace them")
        writer = store.feature_writer(name, len(coords), encoder.embed_dim, provenance, dtype=options.dtype,
                                      chunk_rows=options.chunk_rows)
        done = writer.rows_done
        if progress:
            progress(done, len(coords))
        pending: list[np.ndarray] = []
        pending_rows = 0
        for _, features in _embedded(encoder, options,
                                     iter_batches(reader, coords[done:], options.batch_size, prefetch=options.prefetch,
                                                  first_row=done)):
            if not np.isfinite(features).all():
                raise StoreError(store.path, f"{name} produced non-finite features (check weights and precision)")
            pending.append(features.astype(options.dtype, copy=False))
            pending_rows += len(features)
            if pending_rows >= options.chunk_rows:
                block = np.concatenate(pending)
                writer.write(done, block)
                done += len(block)
                pending, pending_rows = [], 0
            if progress:
                progress(done + pending_rows, len(coords))
        if pending:
            block = np.concatenate(pending)
            writer.write(done, block)
            done += len(block)
        writer.commit()
    finally:
        reader.close()
    return {"features": len(coords), "dim": encoder.embed_dim, "reader": provenance["reader"],
            "note": scale_note(encoder.spec, tiles.attrs)}


def _embedded(encoder: Any, options: ExtractOptions, batches: Iterator[tuple[int, np.ndarray]]
              ) -> Iterator[tuple[int, np.ndarray]]:
    """``(row, features)`` per batch: through the device feeder on a GPU, else ``encoder(batch)``."""
    from slidestream.extraction.device_feed import (  # torch: only when extracting
        DeviceFeeder,
        use_device_feed,
    )

    if use_device_feed(encoder, options.device_feed):
        yield from DeviceFeeder(encoder, stage=True if options.device_feed else None).run(batches)
        return
    for row, batch in batches:
        yield row, encoder(batch)


def scale_note(spec: Any, tiles_attrs: dict[str, Any]) -> str:
    """Say so when the tiles are not what the encoder was trained on (it still runs)."""
    mpp, size = float(tiles_attrs["target_mpp"]), int(tiles_attrs["tile_size_px"])
    native = getattr(spec, "native_mpp", None)
    notes = []
    if native and abs(mpp - native) > 0.05 * native:
        notes.append(f"tiles at {mpp:g} um/px, {spec.name} was trained at {native:g}")
    if getattr(spec, "tile_size", None) and size != spec.tile_size:
        notes.append(f"tiles of {size} px are resized to the model's input ({spec.tile_size} px native)")
    return "; ".join(notes)
