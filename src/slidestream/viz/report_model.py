"""What the run report shows, as plain data: one :class:`SlideReport` per slide, one :class:`RunReport`.

Kept apart from the collecting (:mod:`slidestream.viz.report`) and the drawing
(:mod:`slidestream.viz.report_html`, :mod:`slidestream.viz.report_images`) so that those three
import these types from here and never each other: collecting calls the renderers, and the
renderers only need the data.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slidestream._version import __version__

if TYPE_CHECKING:
    from slidestream.store.slide_store import SlideStore

REPORT_DIR = "report"
STATUS_RANK = {"damaged": -1, "failed": 0, "no record": 1, "skipped": 2, "ok": 3}
# Stage params that describe the slide rather than the run's configuration.
PER_SLIDE_PARAMS = ("slide_mpp",)


@dataclass
class StageRecord:
    """One manifest row: what the latest batch of ``stage`` did to this slide."""

    stage: str
    status: str
    reason: str = ""
    error_type: str = ""
    seconds: float = 0.0
    finished: str = ""
    run_id: str = ""
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class Figure:
    """A picture in a slide's section; ``file`` is relative to the report folder."""

    title: str
    file: str
    caption: str = ""
    legend: list[tuple[str, str]] = field(default_factory=list)  # (css colour, label)
    colorbar: tuple[list[str], str, str] | None = None  # (css colour stops, low label, high label)


@dataclass
class SlideReport:
    """Everything the page shows about one slide (from the manifest and its store, if any)."""

    slide_id: str
    path: str = ""
    records: list[StageRecord] = field(default_factory=list)
    store: SlideStore | None = None
    info: dict[str, Any] = field(default_factory=dict)
    tissue: dict[str, Any] | None = None  # tissue node attrs (without the GeoJSON)
    tiles: dict[str, Any] | None = None
    selections: dict[str, dict[str, Any]] = field(default_factory=dict)
    features: dict[str, dict[str, Any]] = field(default_factory=dict)
    embeddings: dict[str, dict[str, Any]] = field(default_factory=dict)
    tile_scores: dict[str, dict[str, Any]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    damage: list[str] = field(default_factory=list)  # what ``slidestream verify --quick`` finds wrong
    stages: dict[str, Any] = field(default_factory=dict)  # the store root's per-stage records (params)
    store_version: str | None = None  # the slidestream version that created the store
    figures: list[Figure] = field(default_factory=list)
    no_picture: str = ""  # why there is no picture, when there is none

    @property
    def status(self) -> str:
        """``damaged`` when the store does not verify; else the worst stage outcome: failed > ok >
        skipped; ``no record`` for stores outside the manifest."""
        if self.damage:
            return "damaged"
        statuses = {r.status for r in self.records}
        if "failed" in statuses:
            return "failed"
        if "ok" in statuses:
            return "ok"
        if "skipped" in statuses:
            return "skipped"
        return "no record"

    @property
    def failures(self) -> list[StageRecord]:
        return [r for r in self.records if r.status == "failed"]

    @property
    def reason(self) -> str:
        """The failure reason(s), or the note of the stage that has one (e.g. no tiles)."""
        failed = self.failures
        if failed:
            if len({r.reason for r in failed}) == 1:
                return failed[0].reason
            return "; ".join(f"{r.stage}: {r.reason}" for r in failed)
        notes = [r.reason for r in self.records if r.reason]
        return notes[-1] if notes else ""

    @property
    def seconds(self) -> float:
        return sum(r.seconds for r in self.records)

    @property
    def n_tiles(self) -> int | None:
        return None if self.tiles is None else int(self.tiles.get("n_tiles", 0))

    @property
    def mpp(self) -> float | None:
        return self.info.get("mpp_x")


@dataclass
class StageConfig:
    """The parameters one stage ran with; several variants when slides disagree."""

    stage: str
    variants: list[tuple[dict[str, Any], list[str]]]  # (params, slide ids)


@dataclass
class RunReport:
    out: Path
    slides: list[SlideReport]
    config: list[StageConfig]
    generated: str = field(default_factory=lambda: time.strftime("%Y-%m-%d %H:%M:%S %z"))
    version: str = __version__
    problems: list[str] = field(default_factory=list)  # run-level: unreadable manifest, ...
    run_config: str = ""  # OUT/run-config.yaml of the latest ``slidestream run``, verbatim
    slide_cache: dict[str, Any] = field(default_factory=dict)  # per-slide store data, for the next report

    def count(self, status: str) -> int:
        return sum(1 for s in self.slides if s.status == status)

    @property
    def run_ids(self) -> list[tuple[str, str, str]]:
        """(run id, stage, finished) of every batch whose rows are still in the manifest."""
        seen = {(r.run_id, r.stage, r.finished) for s in self.slides for r in s.records if r.run_id}
        return sorted(seen, key=lambda t: (t[2], t[0]))


def stage_order(stage: str) -> tuple[int, str]:
    head = stage.split("/")[0]
    order = {"tissue": 0, "tiles": 1, "selections": 2, "features": 3, "tile_scores": 4, "slide_embeddings": 5}
    return order.get(head, 9), stage
