"""Score maps for many stores: a PNG (and QuPath GeoJSON) of ``tile_scores/<name>`` per slide.

The batch form of :func:`slidestream.viz.heatmap.write_score_maps`, used by ``slidestream heatmap``,
``predict --heatmaps`` and ``slide-encode --maps`` alike: one store that cannot be drawn is a failed
row (:func:`~slidestream.pipeline.batch.run_batch`), never a lost batch. :func:`store_and_draw`
is what follows a MIL prediction: scores into each store, then the pictures.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slidestream.errors import ConfigError
from slidestream.pipeline.batch import BatchResult, run_batch

NORMALIZE = ("percentile", "minmax", "none")

__all__ = ["NORMALIZE", "StoredScores", "check_style", "draw_score_maps", "store_and_draw", "store_paths"]


def store_paths(stores: str | Path) -> list[Path]:
    """``stores`` itself when it is one store, else its ``*.zarr`` children."""
    stores = Path(stores)
    if (stores / "zarr.json").exists() and stores.suffix == ".zarr":
        return [stores]
    return sorted(p for p in stores.glob("*.zarr") if (p / "zarr.json").exists())


def check_style(*, cmap: str = "coolwarm", normalize: str = "percentile") -> None:
    """Refuse an unknown colour map or normalisation up front (not once per slide)."""
    from slidestream.viz.heatmap import colour_lut

    if normalize not in NORMALIZE:
        raise ConfigError(None, f"--normalize {normalize!r}: choose {', '.join(NORMALIZE)}")
    try:
        colour_lut(cmap)
    except ValueError as exc:
        raise ConfigError(None, f"--cmap: {exc}") from None


def draw_score_maps(
    stores: list[Path],
    name: str,
    out: str | Path,
    *,
    slides_dir: str | Path | None = None,
    max_size: int = 1024,
    geojson: bool = True,
    **style: Any,
) -> BatchResult:
    """One ``<slide_id>.<name>.png`` (+ ``.geojson``) per store into ``out``; failures are rows."""
    from slidestream.store import SlideStore
    from slidestream.viz.heatmap import write_score_maps

    def one(path: Path) -> dict[str, Any]:
        return write_score_maps(SlideStore.open(path), name, out, geojson=geojson, max_size=max_size,
                                slides_dir=slides_dir, **style)

    return run_batch(stores, one, description=f"maps {name}", show_progress=False)


@dataclass
class StoredScores:
    """What :func:`store_and_draw` did: stores that took the scores, ones that did not, pictures."""

    stored: list[str]
    failures: dict[str, str] = field(default_factory=dict)  # slide id -> reason
    drawn: BatchResult | None = None

    @property
    def problems(self) -> int:
        return len(self.failures) + (len(self.drawn.failed) if self.drawn is not None else 0)


def store_and_draw(
    predictions: Any,
    source: Any,
    run: str | Path,
    name: str = "attention",
    heatmaps: str | Path | None = None,
    *,
    slides_dir: str | Path | None = None,
    max_size: int = 1024,
) -> StoredScores:
    """``tile_scores/<name>`` of a MIL prediction into every store, then (``heatmaps``) the maps.

    ``predictions`` is :class:`~slidestream.mil.MILPredictions`, ``source`` the
    :class:`~slidestream.mil.StoreBagSource` it was predicted from, ``run`` the run folder or
    checkpoint (recorded with the scores).
    """
    from slidestream.mil.explain import write_tile_scores

    failures = write_tile_scores(predictions, source, name=name, run=Path(run))
    stored = [s for s in predictions.scores if s not in failures]
    result = StoredScores(stored, failures)
    if heatmaps is not None:
        result.drawn = draw_score_maps([source.path(s) for s in stored], name, heatmaps,
                                       slides_dir=slides_dir, max_size=max_size)
    return result
