"""Typed errors shared by every stage.

Each error carries the file it is about, so that the one place that catches errors (the batch
boundary) can write a manifest row and a one-line summary without guessing which slide failed.
"""

from __future__ import annotations

from pathlib import Path


class SlideStreamError(Exception):
    """Base class: a problem with one input that the batch reports and skips."""

    def __init__(self, path: str | Path | None, reason: str) -> None:
        self.path = None if path is None else Path(path)
        self.reason = reason
        # the path as given: a URL keeps its "//", which Path would squeeze to one slash
        super().__init__(f"{path}: {reason}" if path is not None else reason)


class SlideOpenError(SlideStreamError):
    """The file cannot be opened as a slide: unreadable, truncated, empty or not a slide."""


class MissingMppError(SlideStreamError):
    """The slide carries no physical resolution and the caller gave no ``mpp=`` override."""


class SlideReadError(SlideStreamError):
    """A region could not be decoded (corrupt tile data, file vanished mid-run)."""


class ResolutionError(SlideStreamError):
    """The requested resolution cannot be served without upsampling (or is otherwise impossible)."""


class StoreError(SlideStreamError):
    """A slide store is missing, incomplete, or inconsistent with what is asked of it."""


class WeightsError(SlideStreamError):
    """Encoder weights are missing, or do not match the architecture (wrong keys or shapes)."""


class ConfigError(SlideStreamError):
    """A configuration value is invalid; the message names the key and the allowed values."""


class NoTissueWarning(UserWarning):
    """Tissue detection found nothing; downstream stages get an empty tile list, not a crash."""


class EmptyBagError(SlideStreamError):
    """A slide with no tiles (no tissue) has no bag to export: CLAM and TRIDENT write no file for
    it, and MIL models crash on a (0, D) bag. Batch exports report it as skipped, with this reason."""
