"""Where bags come from: the :class:`BagSource` protocol and its two implementations.

Training code only needs "give me the features and coordinates of slide X", so that is the whole
interface. Tests feed synthetic bags from memory; real runs read the slide stores through
``slidestream.store.load_features`` (imported lazily, so ``mil`` can be imported and tested on
its own). A source never subsamples: that is a training decision (see ``batching``).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from slidestream.errors import StoreError

Bag = tuple[np.ndarray, np.ndarray]
"""``(features float32 (N, D), coords int64 (N, 2))``."""


@runtime_checkable
class BagSource(Protocol):
    """A collection of bags addressed by slide id."""

    @property
    def slide_ids(self) -> Sequence[str]: ...

    def load(self, slide_id: str) -> Bag: ...


def check_bag(features: np.ndarray, coords: np.ndarray, where: str | Path | None) -> Bag:
    """Normalise dtypes and reject bags no model can use (empty, ragged, wrong rank)."""
    features = np.asarray(features)
    coords = np.asarray(coords)
    if features.ndim != 2:
        raise StoreError(where, f"features must be 2-D (N, D), got shape {features.shape}")
    if features.shape[0] == 0:
        raise StoreError(where, "the bag has no tiles")
    if coords.shape != (features.shape[0], 2):
        raise StoreError(
            where, f"coords shape {coords.shape} does not match features {features.shape}"
        )
    return features.astype(np.float32, copy=False), coords.astype(np.int64, copy=False)


class InMemoryBagSource:
    """Bags held in a dict ``slide_id -> (features, coords)``; coords default to ``(i, 0)``."""

    def __init__(self, bags: Mapping[str, np.ndarray | Bag]):
        self._bags: dict[str, Bag] = {}
        for slide_id, bag in bags.items():
            if isinstance(bag, tuple):
                feats, coords = bag
            else:
                feats = bag
                coords = np.stack([np.arange(len(bag)), np.zeros(len(bag))], axis=1)
            self._bags[str(slide_id)] = check_bag(feats, coords, slide_id)

    @property
    def slide_ids(self) -> list[str]:
        return list(self._bags)

    def load(self, slide_id: str) -> Bag:
        try:
            return self._bags[slide_id]
        except KeyError:
            raise StoreError(None, f"no bag for slide {slide_id!r}") from None


class StoreBagSource:
    """Bags read from slide stores ``<slide_id>.zarr`` for one encoder.

    ``cache=True`` keeps every loaded bag in RAM: cross-validation reads each bag once per epoch
    per fold, and feature bags (N × D float32) are usually far smaller than the slides.
    """

    def __init__(self, store_paths: Iterable[str | Path], encoder: str, cache: bool = False):
        self.encoder = encoder
        self._paths: dict[str, Path] = {}
        for p in map(Path, store_paths):
            if p.stem in self._paths:
                raise StoreError(p, f"two stores share the slide id {p.stem!r}")
            self._paths[p.stem] = p
        self._cache: dict[str, Bag] | None = {} if cache else None

    @classmethod
    def from_folder(cls, folder: str | Path, encoder: str, cache: bool = False) -> StoreBagSource:
        """All ``*.zarr`` stores directly inside ``folder`` (sorted, so ids are reproducible)."""
        folder = Path(folder)
        if not folder.is_dir():
            raise StoreError(folder, "the stores folder does not exist")
        paths = sorted(folder.glob("*.zarr"))
        if not paths:
            raise StoreError(folder, "no *.zarr slide stores in this folder")
        return cls(paths, encoder, cache=cache)

    @property
    def slide_ids(self) -> list[str]:
        return list(self._paths)

    def path(self, slide_id: str) -> Path:
        try:
            return self._paths[slide_id]
        except KeyError:
            raise StoreError(None, f"no store for slide {slide_id!r}") from None

    def load(self, slide_id: str) -> Bag:
        if self._cache is not None and slide_id in self._cache:
            return self._cache[slide_id]
        path = self.path(slide_id)
        load_features = _store_loader(path)
        features, coords = load_features(path, self.encoder)  # a damaged chunk is a StoreError there
        bag = check_bag(features, coords, path)
        if self._cache is not None:
            self._cache[slide_id] = bag
        return bag


def _store_loader(path: Path):
    try:
        store = importlib.import_module("slidestream.store")
        return store.load_features
    except (ImportError, AttributeError):
        raise StoreError(path, "slidestream.store.load_features is not available") from None
