"""Slide encoders over a directory of slide stores: read features, embed, write, tabulate.

The only module of this package that touches stores. ``slidestream.store`` is imported inside the
functions, so the array-level API (``panther``, ``cobra``, ``mean``) works without it, and tests can
substitute the two store functions used here:
``load_features(store_path, encoder) -> (features (N, D) float32, coords (N, 2) int64)`` and
``write_slide_embedding(store_path, method, embedding, attrs)``; per-tile outputs (PANTHER's
prototype assignment) go through :func:`write_tile_scores`, which tests may replace as well.

:func:`encode_stores` is a batch boundary: a slide that fails with a :class:`SlideStreamError`
becomes a table row with ``status="failed"`` and the reason, and the cohort goes on. Prototype
fitting (:func:`fit_cohort_prototypes`) likewise skips a store it cannot read and records it.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from slidestream.atomic import atomic_path
from slidestream.errors import ConfigError, SlideStreamError, StoreError

if TYPE_CHECKING:  # torch-backed types; imported lazily at run time
    from slidestream.slide_encoders.cobra import Cobra
    from slidestream.slide_encoders.prototypes import Prototypes

__all__ = [
    "EncoderSpec",
    "align_by_coords",
    "cobra_slide_fn",
    "encode_stores",
    "find_stores",
    "fit_cohort_prototypes",
    "iter_store_features",
    "load_bag",
    "mean_slide_fn",
    "panther_slide_fn",
    "store_features",
    "write_cohort_table",
    "write_tile_scores",
]

TileScores = dict[str, tuple[np.ndarray, dict[str, Any]]]
"""Per-tile outputs of a slide encoder: ``{name: (values (N,), attrs)}``, rows in bag order."""

SlideFn = Callable[
    [dict[str, np.ndarray]],
    tuple[np.ndarray, dict[str, Any]] | tuple[np.ndarray, dict[str, Any], TileScores],
]
"""``bag -> (embedding, attrs)`` or ``(embedding, attrs, tile_scores)``."""

PROTOTYPE_SCORES = "panther_prototype"


@dataclass(frozen=True)
class EncoderSpec:
    """A patch encoder as named in the stores, and as named by the slide model (often the same).

    Parsed from ``NAME`` or ``NAME=MODEL_NAME`` (e.g. ``uni_v1=uni`` to feed a store's ``uni_v1``
    features to the ``uni`` projection of a released COBRA).
    """

    store_name: str
    model_name: str

    @classmethod
    def parse(cls, text: str) -> EncoderSpec:
        store_name, _, model_name = text.partition("=")
        if not store_name:
            raise ConfigError(None, f"--encoder {text!r}: expected NAME or NAME=MODEL_NAME")
        return cls(store_name, model_name or store_name)


def find_stores(root: str | Path) -> list[Path]:
    """``root`` itself if it is a ``.zarr`` store, else its ``*.zarr`` children, sorted."""
    root = Path(root)
    if root.suffix == ".zarr" and root.is_dir():
        return [root]
    stores = sorted(p for p in root.glob("*.zarr") if p.is_dir())
    if not stores:
        raise ConfigError(root, "no <slide_id>.zarr stores found")
    return stores


def slide_id(store: Path) -> str:
    return store.name.removesuffix(".zarr")


def _load(store: Path, encoder: str) -> tuple[np.ndarray, np.ndarray]:
    """Features and coords of one store; a damaged chunk is a :class:`StoreError` (the store
    turns codec errors into it), which batch loops record before going on."""
    from slidestream.store import load_features  # lazy: stores are optional for the array API

    feats, coords = load_features(store, encoder)
    return np.asarray(feats, np.float32), np.asarray(coords, np.int64)


def write_tile_scores(store: Path, name: str, values: np.ndarray, attrs: dict[str, Any]) -> None:
    """``tile_scores/<name>`` of one store (rows aligned with ``features/<attrs['encoder']>``)."""
    from slidestream.store import SlideStore

    SlideStore.open(store).write_tile_scores(name, values, attrs)


def iter_store_features(stores: Sequence[Path], encoder: str) -> Iterator[tuple[str, np.ndarray]]:
    """``(slide_id, features)`` one store at a time (what prototype fitting consumes)."""
    for store in stores:
        yield slide_id(store), _load(store, encoder)[0]


class StoreFeatures(Sequence):
    """Lazy ``len``-able view so :func:`~.sampling.sample_cohort` can apply PANTHER's cap.

    Iterating skips a store that cannot be read (missing encoder, damaged chunks) and records
    why in :attr:`skipped`: one bad slide should not stop prototype fitting on a cohort of
    thousands. Indexing (``view[i]``) still raises, for callers that want the error.
    """

    def __init__(self, stores: Sequence[Path], encoder: str) -> None:
        self.stores, self.encoder = list(stores), encoder
        self.skipped: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self.stores)

    def __getitem__(self, i):  # type: ignore[override]
        return slide_id(self.stores[i]), _load(self.stores[i], self.encoder)[0]

    def __iter__(self) -> Iterator[tuple[str, np.ndarray]]:
        self.skipped = {}
        for store in self.stores:
            try:
                feats = _load(store, self.encoder)[0]
            except SlideStreamError as exc:
                self.skipped[slide_id(store)] = exc.reason
                continue
            if len(feats) == 0:
                self.skipped[slide_id(store)] = f"no tiles with features for {self.encoder}"
                continue
            yield slide_id(store), feats


def store_features(stores: Sequence[Path], encoder: str) -> StoreFeatures:
    """Like :func:`iter_store_features`, but with a length, re-iterable, skipping bad stores."""
    return StoreFeatures(stores, encoder)


def fit_cohort_prototypes(
    stores: Sequence[Path], encoder: str, k: int = 16, **options: Any
) -> Prototypes:
    """PANTHER prototypes of the readable stores; the unreadable ones are listed in provenance.

    ``options`` go to :func:`~.prototypes.fit_prototypes`. Raises :class:`ConfigError` when no
    store can be read or the readable ones hold fewer than ``k`` tiles.
    """
    from slidestream.slide_encoders.prototypes import fit_prototypes

    view = store_features(stores, encoder)
    try:
        protos = fit_prototypes(view, k, encoder=encoder, **options)
    except ValueError as exc:
        where = Path(stores[0]).parent if stores else None
        skipped = (
            f" ({len(view.skipped)} store(s) unreadable: {_few(view.skipped)})"
            if view.skipped
            else ""
        )
        raise ConfigError(where, f"cannot fit {k} prototypes: {exc}{skipped}") from None
    protos.provenance["skipped"] = dict(view.skipped)
    return protos


def _few(skipped: Mapping[str, str], n: int = 3) -> str:
    items = [f"{k}: {v}" for k, v in list(skipped.items())[:n]]
    return "; ".join(items) + (f"; ... ({len(skipped)} in all)" if len(skipped) > n else "")


def _coord_keys(coords: np.ndarray) -> np.ndarray:
    c = np.asarray(coords, np.int64).reshape(-1, 2)
    if len(c) and (c.min() < 0 or c.max() >= 1 << 31):
        raise ValueError("tile coordinates outside [0, 2**31) cannot be matched")
    return (c[:, 0] << 32) | c[:, 1]


def align_by_coords(coords: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Row indices into each coordinate array selecting the tiles common to all.

    Different patch encoders of one slide may cover slightly different tile sets; COBRA matches
    them by identical coordinates. The common tiles keep the *first* encoder's order (store order),
    so a one-encoder and a two-encoder bag see the tiles in the same sequence; the reference
    re-sorts them by coordinate bytes instead, an order with no spatial meaning.
    """
    keys = [_coord_keys(c) for c in coords]
    common = keys[0]
    for k in keys[1:]:
        common = common[np.isin(common, k)]
    out = []
    for k in keys:
        order = np.argsort(k, kind="stable")
        out.append(order[np.searchsorted(k[order], common)])
    return out


def load_bag(store: Path, encoders: Sequence[EncoderSpec]) -> dict[str, np.ndarray]:
    """``{model name: (N, d)}`` of one store, tiles aligned across encoders when there are several."""
    loaded = [_load(store, spec.store_name) for spec in encoders]
    if len(loaded) == 1:
        return {encoders[0].model_name: loaded[0][0]}
    picks = align_by_coords([coords for _, coords in loaded])
    return {
        spec.model_name: f[idx] for spec, (f, _), idx in zip(encoders, loaded, picks, strict=True)
    }


def panther_slide_fn(
    prototypes: Prototypes,
    *,
    em_iter: int = 1,
    tau: float = 0.001,
    eps: float = 0.1,
    out_type: str = "allcat",
) -> SlideFn:
    """PANTHER on the single encoder of the bag; attrs record the EM settings and prototypes."""
    from slidestream.slide_encoders.panther import map_em, panther_embedding

    digest = hashlib.sha256(np.ascontiguousarray(prototypes.centers).tobytes()).hexdigest()[:16]

    def run(bag: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, Any], TileScores]:
        (feats,) = bag.values()
        fit = map_em(feats, prototypes.centers, em_iter=em_iter, tau=tau, eps=eps)
        assignment = fit.assignment
        attrs = {
            "k": prototypes.k,
            "em_iter": em_iter,
            "tau": tau,
            "eps": eps,
            "out_type": out_type,
            "prototypes_sha256_16": digest,
            "prototype_counts": np.bincount(assignment, minlength=prototypes.k).tolist(),
        }
        score_attrs = {
            "kind": "categorical",
            "method": "panther",
            "k": prototypes.k,
            "prototypes_sha256_16": digest,
            "em_iter": em_iter,
            "tau": tau,
            "eps": eps,
        }
        return (
            panther_embedding(fit, out_type),
            attrs,
            {PROTOTYPE_SCORES: (assignment, score_attrs)},
        )

    return run


def cobra_slide_fn(
    model: Cobra, *, aggregate: str | None = None, top_k: int | None = None, device: str = "cpu"
) -> SlideFn:
    """COBRA inference (:func:`~.cobra.embed`) on the aligned bag."""
    from slidestream.slide_encoders.cobra import embed

    def run(bag: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, Any]]:
        z = embed(model, bag, aggregate=aggregate, top_k=top_k, device=device)
        return z, {"aggregate": aggregate or next(iter(bag)), "top_k": top_k}

    return run


class StoreBags(Sequence):
    """The cohort's bags (``{model_name: (N, d)}``), read from the stores on demand.

    COBRA pre-training draws views from random slides for many epochs; holding every slide's
    features would need the cohort in RAM, so a few recently used bags are cached instead.
    Unreadable stores are left out up front and listed in :attr:`skipped`.
    """

    def __init__(self, stores: Sequence[Path], encoders: Sequence[EncoderSpec], cache: int = 32) -> None:
        self.encoders = list(encoders)
        self.skipped: dict[str, str] = {}
        self.stores: list[Path] = []
        self._cache: OrderedDict[int, dict[str, np.ndarray]] = OrderedDict()
        self._cache_size = cache
        for store in stores:
            try:
                bag = load_bag(store, self.encoders)
                if len(bag[self.encoders[0].model_name]) == 0:
                    raise StoreError(store, "no tiles with features")
            except SlideStreamError as exc:
                self.skipped[slide_id(store)] = exc.reason
                continue
            self.stores.append(store)
            self._remember(len(self.stores) - 1, bag)  # the check's read is the first use's too

    def _remember(self, i: int, bag: dict[str, np.ndarray]) -> None:
        self._cache[i] = bag
        self._cache.move_to_end(i)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def __len__(self) -> int:
        return len(self.stores)

    def __getitem__(self, i):  # type: ignore[override]
        i = int(i)
        bag = self._cache.get(i)
        if bag is None:
            bag = load_bag(self.stores[i], self.encoders)
        self._remember(i, bag)
        return bag

    def dims(self) -> dict[str, int]:
        """Feature width of every patch encoder, from the first readable store."""
        first = self[0]
        return {name: int(feats.shape[1]) for name, feats in first.items()}


def fit_cobra(
    stores: Sequence[Path],
    encoders: Sequence[EncoderSpec],
    make_config: Callable[[dict[str, int]], Any] | None = None,
    **pretrain: Any,
) -> tuple[Cobra, dict[str, Any]]:
    """Pre-train a COBRA-style encoder on the stores (one view pool per slide); the model and
    provenance. ``make_config(widths)`` gives the architecture (default: COBRA II's, with the
    stores' feature widths); ``pretrain`` are :class:`~.cobra_train.PretrainConfig` fields."""
    from slidestream.slide_encoders.cobra import cobra_ii_config
    from slidestream.slide_encoders.cobra_train import PretrainConfig, train_cobra

    bags = StoreBags(stores, encoders)
    where = Path(stores[0]).parent if stores else None
    if len(bags) < 2:
        raise ConfigError(where, f"COBRA pre-training needs at least 2 readable stores, found {len(bags)}"
                                 + (f" ({_few(bags.skipped)})" if bags.skipped else ""))
    config = (make_config or cobra_ii_config)(bags.dims())
    settings = PretrainConfig(**pretrain)
    result = train_cobra(bags, config, settings)
    provenance = {"pretrained_on": len(bags), "skipped": dict(bags.skipped), "epochs": settings.epochs,
                  "final_loss": result.epoch_losses[-1] if result.epoch_losses else None, "seed": settings.seed}
    return result.model, provenance


def mean_slide_fn(mode: str = "mean") -> SlideFn:
    """Mean (or mean+max) pooling of the single encoder of the bag."""
    from slidestream.slide_encoders.mean import mean_embedding

    def run(bag: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, Any]]:
        (feats,) = bag.values()
        return mean_embedding(feats, mode), {"mode": mode}  # type: ignore[arg-type]

    return run


def encode_stores(
    stores: Sequence[Path],
    method: str,
    encoders: Sequence[EncoderSpec],
    slide_fn: SlideFn,
    *,
    provenance: Mapping[str, Any] | None = None,
    write: bool = True,
    reader: Callable[[Path, Sequence[EncoderSpec]], dict[str, np.ndarray]] | None = None,
) -> pd.DataFrame:
    """Embed every store, write ``slide_embeddings/<method>`` into it, return one row per slide.

    ``reader(store, encoders)`` replaces :func:`load_bag` for methods that need more than the
    features (a slide foundation encoder checks the store's records and takes coordinates); its
    bag's first entry must be the ``(N, D)`` features.
    """
    if write:
        from slidestream.store import write_slide_embedding
    rows = []
    for store in stores:
        row: dict[str, Any] = {
            "slide_id": slide_id(store),
            "store": str(store),
            "method": method,
            "encoder": ",".join(s.store_name for s in encoders),
        }
        try:
            bag = (reader or load_bag)(store, encoders)
            n_tiles = len(next(iter(bag.values())))
            if n_tiles == 0:
                raise StoreError(store, "no tiles with features for " + row["encoder"])
            embedding, attrs, *rest = slide_fn(bag)
            tile_scores: TileScores = rest[0] if rest else {}
            attrs = {
                "method": method,
                "encoder": row["encoder"],
                "n_tiles": n_tiles,
                "dim": int(embedding.shape[-1]),
                **(provenance or {}),
                **attrs,
            }
            if write:
                write_slide_embedding(store, method, embedding, attrs)
                for name, (values, score_attrs) in (
                    tile_scores.items() if len(encoders) == 1 else ()
                ):
                    # rows follow the encoder's feature rows, as a one-encoder bag does
                    write_tile_scores(
                        store, name, values, {"encoder": encoders[0].store_name, **score_attrs}
                    )
            row.update(
                n_tiles=n_tiles,
                dim=int(embedding.shape[-1]),
                status="ok",
                error="",
                embedding=embedding.astype(np.float32),
            )
        except SlideStreamError as exc:
            row.update(n_tiles=0, dim=0, status="failed", error=exc.reason, embedding=None)
        rows.append(row)
    return pd.DataFrame(rows)


def write_cohort_table(table: pd.DataFrame, path: str | Path) -> Path:
    """Parquet, one row per slide; ``embedding`` is a list<float32> column (``np.stack`` it back)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = {c: table[c].tolist() for c in table.columns if c != "embedding"}
    arrays = {c: pa.array(v) for c, v in columns.items()}
    arrays["embedding"] = pa.array(
        [None if e is None else np.asarray(e, np.float32) for e in table["embedding"]],
        type=pa.list_(pa.float32()),
    )
    with atomic_path(path) as tmp:
        pq.write_table(pa.table(arrays), tmp)
    return path
