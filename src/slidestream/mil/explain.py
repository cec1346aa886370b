"""Per-tile evidence of a prediction, written back into the slide stores.

``predict`` returns one score per tile (the ensemble's mean attention, or instance score for the
pooling baselines) in bag order, which is the row order of ``features/<encoder>``. Storing them as
``tile_scores/<name>`` keeps the evidence next to the features it explains, so heatmaps, QuPath
exports and later analyses read it without re-running the model. The store is imported lazily,
as in :mod:`.bags`, so ``mil`` stays usable on in-memory bags.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from slidestream.errors import SlideStreamError, StoreError
from slidestream.mil.bags import StoreBagSource
from slidestream.mil.predict import MILPredictions

__all__ = ["run_facts", "write_tile_scores"]


def run_facts(run: str | Path) -> dict[str, Any]:
    """Model, task and encoder of a run folder (from its ``config.json``), for provenance."""
    run = Path(run)
    config = run / "config.json" if run.is_dir() else run.parent.parent / "config.json"
    facts: dict[str, Any] = {"run": str(run.resolve())}
    if config.is_file():
        try:
            data = json.loads(config.read_text())
        except (OSError, ValueError):
            return facts
        facts.update({k: data.get(k) for k in ("model", "task", "encoder", "seed")})
    return facts


def write_tile_scores(
    predictions: MILPredictions,
    source: StoreBagSource,
    *,
    name: str = "attention",
    run: str | Path | None = None,
) -> dict[str, str]:
    """Write each slide's tile scores to ``tile_scores/<name>`` of its store.

    Rows are aligned with ``features/<source.encoder>`` (checked against the store's coordinates,
    so scores can never be attached to the wrong tiles). The slide's prediction (``pred`` and the
    class probabilities or risk) is recorded in the attrs. Returns ``{slide_id: reason}`` for the
    stores that could not be written; the others are written regardless.
    """
    from slidestream.store import SlideStore

    facts = run_facts(run) if run is not None else {}
    table = predictions.table.set_index("slide_id")
    failures: dict[str, str] = {}
    for slide_id, scores in predictions.scores.items():
        try:
            store = SlideStore.open(source.path(slide_id))
            coords = _feature_coords(store, source.encoder)
            if not np.array_equal(coords, predictions.coords[slide_id]):
                raise StoreError(
                    store.path, f"features/{source.encoder} changed since the prediction"
                )
            row = {k: _plain(v) for k, v in table.loc[slide_id].items()}
            attrs = {
                **facts,  # the run's own record first: it must not override the rows' encoder
                "encoder": source.encoder,
                "kind": "continuous",
                "source": "slidestream predict",
                "prediction": row,
            }
            store.write_tile_scores(name, np.asarray(scores, np.float32), attrs)
        except SlideStreamError as exc:
            failures[slide_id] = exc.reason
    return failures


def _feature_coords(store: Any, encoder: str) -> np.ndarray:
    """Coordinates of the feature rows, without reading the features themselves."""
    attrs = store.node_attrs(f"features/{encoder}")
    coords = store.read_tiles().coords
    if attrs.get("selection"):
        coords = coords[store.read_selection(attrs["selection"])]
    return coords


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value
