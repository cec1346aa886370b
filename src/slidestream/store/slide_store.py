"""The slide store: one zarr v3 group per slide, written so that it never lies about being done.

Every stage's output (tissue, tiles, a selection, one encoder's features, a slide embedding) is a
node written under a temporary name and renamed into place when complete. A reader therefore sees
either the previous complete node or the new complete node, never a half-written one, whatever
happens to the writing process. See ``docs/format.md`` for the layout, field by field.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from slidestream._version import __version__
from slidestream.errors import StoreError
from slidestream.store import tissue_node
from slidestream.store.integrity import (
    Member,
    check_chunks,
    create_array,
    has_checksums,
    open_for_append,
    read_array,
    read_meta,
    seal,
    write_group,
)
from slidestream.store.root_doc import read_root, update_root

FORMAT_VERSION = "1.0"
STORE_SUFFIX = ".zarr"
PARTIAL_PREFIX = "_partial-"
TRASH_PREFIX = "_trash-"
# Axis names (zarr v3 ``dimension_names``) so xarray opens every group: rows of ``tiles`` are
# ``tile``; rows computed on a selection are ``selected_<name>``; feature columns ``<encoder>_feature``.
TILE_DIM = "tile"

# Which nodes depend on which: replacing tiles invalidates everything indexed by tile row.
DEPENDENTS = {"tissue": ("tiles", "selections", "features", "slide_embeddings", "tile_scores"),
              "tiles": ("selections", "features", "slide_embeddings", "tile_scores"),
              "features": ("slide_embeddings", "tile_scores")}


def selection_digest(indices: np.ndarray) -> str:
    """Content hash of a selection: features record it, so a changed selection is never mixed up."""
    return hashlib.sha256(np.ascontiguousarray(indices, dtype="<i8").tobytes()).hexdigest()[:16]


def store_path(out_dir: str | Path, slide_id: str) -> Path:
    return Path(out_dir) / f"{slide_id}{STORE_SUFFIX}"


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _jsonable(value: Any) -> Any:
    """Attrs must be plain JSON: convert numpy scalars/arrays and tuples, recursively."""
    return json.loads(json.dumps(value, default=_json_default))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


@dataclass
class Tiles:
    """The tile table of a store: what extraction reads and features align with."""

    coords: np.ndarray
    tissue_fraction: np.ndarray
    attrs: dict[str, Any]
    focus: np.ndarray | None = None  # sharpness per tile, when tiling measured it
    qc: np.ndarray | None = None     # (N, 3) white/black/grey shares per tile, when tiling measured them

    def __len__(self) -> int:
        return len(self.coords)


class SlideStore(tissue_node.TissueNodeMixin):
    """Read and write one slide's store. Create with :meth:`create`, open with :meth:`open`."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    # ------------------------------------------------------------------ creation
    @classmethod
    def create(cls, out_dir: str | Path, slide_id: str, slide_info: dict[str, Any]) -> SlideStore:
        """Create the store if absent (atomically); an existing store is opened, not touched."""
        path = store_path(out_dir, slide_id)
        if (path / "zarr.json").exists():
            return cls.open(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.partial")
        zarr.create_group(tmp, zarr_format=3, attributes=_jsonable({  # one metadata write
            "slidestream": {"format_version": FORMAT_VERSION, "version": __version__, "created": now_iso()},
            "slide_id": slide_id,
            "slide": slide_info,
            "stages": {},
        }))
        try:
            os.rename(tmp, path)
        except OSError:  # another process created it first: theirs is as good as ours
            shutil.rmtree(tmp, ignore_errors=True)
            if not (path / "zarr.json").exists():
                raise
        return cls(path)

    @classmethod
    def open(cls, path: str | Path) -> SlideStore:
        path = Path(path)
        meta = path / "zarr.json"
        if not meta.exists():
            raise StoreError(path, "not a slide store (no zarr.json)")
        try:
            attrs = json.loads(meta.read_text()).get("attributes", {})
        except (OSError, ValueError) as exc:
            raise StoreError(path, f"unreadable store metadata: {exc}") from exc
        version = attrs.get("slidestream", {}).get("format_version")
        if version is None:
            raise StoreError(path, "zarr group is not a slidestream store (no format_version)")
        if version.split(".")[0] != FORMAT_VERSION.split(".")[0]:
            raise StoreError(path, f"store format {version} is not readable by this slidestream ({FORMAT_VERSION})")
        return cls(path)

    # ------------------------------------------------------------------ basics
    @property
    def slide_id(self) -> str:
        return self.path.name[: -len(STORE_SUFFIX)] if self.path.name.endswith(STORE_SUFFIX) else self.path.stem

    def _root(self, mode: str = "r") -> zarr.Group:
        return zarr.open_group(self.path, mode=mode, zarr_format=3)

    @property
    def attrs(self) -> dict[str, Any]:
        """The root's attributes (parsed from its ``zarr.json``, see ``root_doc``)."""
        return read_root(self.path).get("attributes", {})

    @property
    def slide_info(self) -> dict[str, Any]:
        return dict(self.attrs.get("slide", {}))

    def update_slide_info(self, info: dict[str, Any]) -> None:
        """Replace the root's description of the slide (e.g. after an mpp override changed)."""
        info = _jsonable(info)
        if self.slide_info != info:
            update_root(self.path, lambda attrs: {"slide": info})

    def __repr__(self) -> str:
        return f"SlideStore({str(self.path)!r})"

    def has(self, rel: str) -> bool:
        """True when node ``rel`` (e.g. ``tiles``, ``features/uni``) exists, is complete and its
        metadata verifies. A damaged node is not "had": :meth:`node_attrs` says what is wrong."""
        if not (self.path / rel / "zarr.json").exists():
            return False
        try:
            return bool(read_meta(self.path, rel).get("attributes", {}).get("complete", False))
        except StoreError:
            return False

    def node_attrs(self, rel: str) -> dict[str, Any]:
        """The attrs of complete node ``rel``; a :class:`StoreError` naming the damage when its
        metadata is unreadable or altered, or saying it is absent or incomplete."""
        if not (self.path / rel / "zarr.json").exists():
            raise StoreError(self.path, f"no complete '{rel}' in this store")
        attrs = read_meta(self.path, rel).get("attributes", {})
        if not attrs.get("complete", False):
            raise StoreError(self.path, f"no complete '{rel}' in this store")
        return attrs

    def node_problem(self, rel: str, *, deep: bool = False) -> str | None:
        """None when node ``rel`` is complete and intact, else what is wrong, in one line.

        Always checked (cheap: metadata and one directory listing per array): metadata parses and
        matches its digest, the completion flag, every written chunk present. ``deep`` also
        decodes every chunk, so each crc32c checksum is verified (the cost of reading the node).
        """
        try:
            if not self.has(rel):
                self.node_attrs(rel)  # raises with the reason
            for arr_rel in self._arrays_of(rel):
                if deep:
                    read_array(self.path, arr_rel)
                else:
                    check_chunks(self.path, arr_rel, read_meta(self.path, arr_rel))
        except StoreError as exc:
            return exc.reason
        return None

    def _arrays_of(self, rel: str) -> list[str]:
        """The arrays that make up node ``rel`` (itself, or a group's members such as ``tiles/coords``)."""
        doc = read_meta(self.path, rel)
        if doc.get("node_type") == "array":
            return [rel]
        names = doc.get("attributes", {}).get("arrays")
        if names is None:  # written before the member list was recorded
            names = sorted(p.name for p in (self.path / rel).iterdir() if (p / "zarr.json").exists())
        return [f"{rel}/{name}" for name in names]

    def list_nodes(self, group: str) -> list[str]:
        """Names of complete nodes inside ``group`` (e.g. the encoders under ``features``)."""
        folder = self.path / group
        if not folder.is_dir():
            return []
        return sorted(p.name for p in folder.iterdir()
                      if p.is_dir() and not p.name.startswith((PARTIAL_PREFIX, TRASH_PREFIX))
                      and self.has(f"{group}/{p.name}"))

    # ------------------------------------------------------------------ atomic writing
    def _record_stage(self, rel: str, attrs: dict[str, Any]) -> None:
        record = _jsonable({"completed": attrs.get("completed"), "params": attrs.get("params", {})})
        update_root(self.path, lambda root: {"stages": {**root.get("stages", {}), rel: record}})

    def _forget_stage(self, prefix: str) -> None:
        update_root(self.path, lambda root: {"stages": {k: v for k, v in root.get("stages", {}).items()
                                                        if k != prefix and not k.startswith(prefix + "/")}})

    def write_node(self, rel: str, build: Callable[[zarr.Group, str], None], attrs: dict[str, Any]) -> None:
        """Write node ``rel`` atomically: ``build(parent, tmp_name)`` creates it under a temporary name.

        Once built, the node gets ``complete=True`` and is renamed into place, replacing any
        previous version. Readers never observe a partial node under the final name.
        """
        parent_rel, _, name = rel.rpartition("/")
        parent = self._root("a") if not parent_rel else zarr.open_group(self.path / parent_rel, mode="a", zarr_format=3)
        tmp_name = f"{PARTIAL_PREFIX}{name}-{uuid.uuid4().hex[:8]}"
        build(parent, tmp_name)
        tmp_path = self.path / parent_rel / tmp_name
        node = zarr.open(tmp_path, mode="r+", zarr_format=3)
        final_attrs = {**attrs, "completed": now_iso(), "slidestream_version": __version__, "complete": True}
        node.update_attributes(_jsonable(final_attrs))  # one metadata write (attrs.update rewrites per key)
        seal(tmp_path)
        self._swap_into_place(tmp_path, self.path / rel)
        self._record_stage(rel, final_attrs)

    def write_group_node(self, rel: str, members: dict[str, Member], attrs: dict[str, Any]) -> None:
        """:meth:`write_node` for a group of arrays whose data is at hand: the group, its final
        attributes and every member array are written in one round trip to zarr
        (:func:`~slidestream.store.integrity.write_group`), then sealed and renamed into place
        exactly as :meth:`write_node` does. ``attrs["arrays"]`` lists the members."""
        parent_rel, _, name = rel.rpartition("/")
        if parent_rel and not (self.path / parent_rel / "zarr.json").exists():
            raise StoreError(self.path, f"cannot write {rel}: group '{parent_rel}' does not exist")
        tmp_path = self.path / parent_rel / f"{PARTIAL_PREFIX}{name}-{uuid.uuid4().hex[:8]}"
        final_attrs = {**attrs, "arrays": list(members), "completed": now_iso(),
                       "slidestream_version": __version__, "complete": True}
        try:
            write_group(tmp_path, _jsonable(final_attrs), members)  # sealed as it is written
        except BaseException:
            shutil.rmtree(tmp_path, ignore_errors=True)  # e.g. a full disk: give the space back
            raise
        self._swap_into_place(tmp_path, self.path / rel)
        self._record_stage(rel, final_attrs)

    def _swap_into_place(self, tmp_path: Path, final: Path) -> None:
        trash = None
        if final.exists():
            trash = final.with_name(f"{TRASH_PREFIX}{final.name}-{uuid.uuid4().hex[:8]}")
            os.rename(final, trash)
        os.rename(tmp_path, final)
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)

    def write_array(self, rel: str, data: np.ndarray, attrs: dict[str, Any], chunks: tuple[int, ...] | None = None,
                    dims: tuple[str, ...] | None = None) -> None:
        """Write one array node atomically; ``dims`` names its axes (zarr v3 ``dimension_names``)."""
        data = np.asarray(data)
        dimension_names = _dimension_names(dims, data.ndim, rel.rpartition("/")[2])

        def build(parent: zarr.Group, tmp: str) -> None:
            arr = create_array(parent, tmp, data.shape, data.dtype, chunks or _chunks(data.shape),
                               dimension_names=dimension_names)
            if data.size:
                arr[...] = data

        self.write_node(rel, build, attrs)

    def delete(self, rel: str) -> None:
        """Remove a node (and its stage record); renaming first keeps the removal atomic."""
        target = self.path / rel
        if target.exists():
            trash = target.with_name(f"{TRASH_PREFIX}{target.name}-{uuid.uuid4().hex[:8]}")
            os.rename(target, trash)
            shutil.rmtree(trash, ignore_errors=True)
        self._forget_stage(rel)

    def invalidate_dependents(self, stage: str) -> list[str]:
        """Delete what was computed from ``stage`` (e.g. features after new tiles). Returns what went.

        ``features/<encoder>`` takes only the slide embeddings and tile scores made from that
        encoder's features: another encoder's results stay valid and are kept.
        """
        group, _, name = stage.partition("/")
        if group == "features" and name:
            return self._invalidate_encoder(name)
        removed = []
        for dep in DEPENDENTS.get(group, ()):
            if (self.path / dep).exists():
                self.delete(dep)
                removed.append(dep)
        return removed

    def _invalidate_encoder(self, encoder: str) -> list[str]:
        """Slide embeddings and tile scores computed from ``features/<encoder>``.

        A node whose record cannot be read is dropped too: it can no longer say what it came from.
        """
        removed = []
        for group in DEPENDENTS["features"]:
            for node in self._node_dirs(group):
                rel = f"{group}/{node}"
                try:
                    attrs = self.node_attrs(rel)
                except StoreError:
                    attrs = {}
                used = str(attrs.get("encoder", "")).split(",")
                if encoder in used or attrs.get("rows") == f"features/{encoder}" or not attrs:
                    self.delete(rel)
                    removed.append(rel)
        return removed

    def _node_dirs(self, group: str) -> list[str]:
        """Every node folder in ``group``, complete or not (leftovers of writes excluded)."""
        folder = self.path / group
        if not folder.is_dir():
            return []
        return sorted(p.name for p in folder.iterdir()
                      if p.is_dir() and not p.name.startswith((PARTIAL_PREFIX, TRASH_PREFIX)))

    def clean_partials(self, max_age_s: float = 0.0) -> int:
        """Remove leftovers of interrupted writes older than ``max_age_s`` seconds."""
        count = 0
        cutoff = time.time() - max_age_s
        for p in self.path.rglob("*"):
            if p.is_dir() and p.name.startswith((PARTIAL_PREFIX, TRASH_PREFIX)) and p.stat().st_mtime <= cutoff:
                shutil.rmtree(p, ignore_errors=True)
                count += 1
        return count

    # ------------------------------------------------------------------ stages
    def write_tiles(self, coords: np.ndarray, tissue_fraction: np.ndarray, attrs: dict[str, Any],
                    params: dict[str, Any], focus: np.ndarray | None = None, qc: np.ndarray | None = None) -> None:
        coords = np.asarray(coords, dtype=np.int64).reshape(-1, 2)
        fractions = np.asarray(tissue_fraction, dtype=np.float32).reshape(-1)
        if len(coords) != len(fractions):
            raise StoreError(self.path, f"{len(coords)} coords but {len(fractions)} tissue fractions")

        rows = max(1, min(len(coords), 65536))
        members = {"coords": Member(coords, (rows, 2), (TILE_DIM, "xy")),
                   "tissue_fraction": Member(fractions, (rows,), (TILE_DIM,))}
        if focus is not None:
            members["focus"] = Member(np.asarray(focus, dtype=np.float32).reshape(-1), (rows,), (TILE_DIM,))
        if qc is not None:
            members["qc"] = Member(np.asarray(qc, dtype=np.float32).reshape(-1, 3), (rows, 3), (TILE_DIM, "qc_metric"))
        for name, member in members.items():
            if len(member.data) != len(coords):
                raise StoreError(self.path, f"{len(coords)} coords but {len(member.data)} rows of {name}")
        self.write_group_node("tiles", members, {**attrs, "params": params, "n_tiles": len(coords)})

    def read_tiles(self) -> Tiles:
        """The tile table, checked: every member array intact, all of ``n_tiles`` rows."""
        attrs = self.node_attrs("tiles")
        arrays = {rel.rpartition("/")[2]: read_array(self.path, rel) for rel in self._arrays_of("tiles")}
        for name in ("coords", "tissue_fraction"):
            if name not in arrays:
                raise StoreError(self.path, f"tiles/{name}: array missing")
        n = int(attrs.get("n_tiles", len(arrays["coords"])))
        for name, values in arrays.items():
            if len(values) != n:
                raise StoreError(self.path, f"tiles/{name} has {len(values)} rows but the tiles record {n}")
        return Tiles(coords=arrays["coords"], tissue_fraction=arrays["tissue_fraction"], attrs=attrs,
                     focus=arrays.get("focus"), qc=arrays.get("qc"))

    def write_selection(self, name: str, indices: np.ndarray, attrs: dict[str, Any]) -> None:
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        n_tiles = self.node_attrs("tiles")["n_tiles"]
        if len(indices) and (indices.min() < 0 or indices.max() >= n_tiles):
            raise StoreError(self.path, f"selection '{name}' indexes outside the {n_tiles} tiles")
        digest = selection_digest(indices)
        rel = f"selections/{name}"
        if self.has(rel) and self.node_attrs(rel).get("digest") != digest:
            self._drop_features_on_selection(name)
        self._ensure_group("selections")
        self.write_array(rel, indices, {**attrs, "n_selected": len(indices), "n_tiles": n_tiles, "digest": digest},
                         dims=(selection_dim(name),))

    def _drop_features_on_selection(self, name: str) -> None:
        """A selection is being replaced: features computed on its old rows (and what was
        computed from those features) no longer line up with it, so they go."""
        stale = [enc for enc in self.list_nodes("features")
                 if self.node_attrs(f"features/{enc}").get("selection") == name]
        for enc in stale:
            self.delete(f"features/{enc}")
            self.invalidate_dependents(f"features/{enc}")

    def read_selection(self, name: str) -> np.ndarray:
        if not (self.path / "selections" / name / "zarr.json").exists():
            available = ", ".join(self.list_nodes("selections")) or "none"
            raise StoreError(self.path, f"no selection '{name}' (available: {available})")
        rows = read_array(self.path, f"selections/{name}")
        n_tiles = self.node_attrs(f"selections/{name}").get("n_tiles")
        if n_tiles is not None and len(rows) and (rows.min() < 0 or rows.max() >= int(n_tiles)):
            raise StoreError(self.path, f"selections/{name}: indices outside the {n_tiles} tiles")
        return rows

    def write_slide_embedding(self, method: str, embedding: np.ndarray, attrs: dict[str, Any]) -> None:
        self._ensure_group("slide_embeddings")
        embedding = np.asarray(embedding)
        dims = (f"{method}_feature",) if embedding.ndim == 1 else None
        self.write_array(f"slide_embeddings/{method}", embedding, attrs, dims=dims)

    def read_slide_embedding(self, method: str) -> tuple[np.ndarray, dict[str, Any]]:
        attrs = self.node_attrs(f"slide_embeddings/{method}")
        return read_array(self.path, f"slide_embeddings/{method}"), attrs

    def write_tile_scores(self, name: str, scores: np.ndarray, attrs: dict[str, Any]) -> None:
        """Per-tile values (attention, prototype ids, QC scores) under ``tile_scores/<name>``.

        Rows align with ``features/<attrs['encoder']>`` when given (whose rows may be a
        selection), otherwise with ``tiles``; ``attrs['rows']`` records which.
        """
        scores = np.asarray(scores)
        encoder = attrs.get("encoder")
        row_dim = TILE_DIM
        if encoder:
            feature_attrs = self.node_attrs(f"features/{encoder}")
            expected = int(feature_attrs["n_rows"])
            rows = f"features/{encoder}"
            row_dim = selection_dim(feature_attrs["selection"]) if feature_attrs.get("selection") else TILE_DIM
        else:
            expected = int(self.node_attrs("tiles")["n_tiles"])
            rows = "tiles"
        if len(scores) != expected:
            raise StoreError(self.path, f"tile_scores/{name} has {len(scores)} rows but {rows} has {expected}")
        self._ensure_group("tile_scores")
        self.write_array(f"tile_scores/{name}", scores, {**attrs, "rows": rows}, dims=(row_dim,))

    def read_tile_scores(self, name: str) -> tuple[np.ndarray, dict[str, Any]]:
        attrs = self.node_attrs(f"tile_scores/{name}")
        return read_array(self.path, f"tile_scores/{name}"), attrs

    def _ensure_group(self, rel: str) -> None:
        if not (self.path / rel / "zarr.json").exists():
            zarr.open_group(self.path / rel, mode="a", zarr_format=3)

    # ------------------------------------------------------------------ features
    def feature_writer(self, encoder: str, n_rows: int, dim: int, attrs: dict[str, Any], *,
                       dtype: str = "float32", chunk_rows: int = 2048) -> FeatureWriter:
        self._ensure_group("features")
        return FeatureWriter(self, encoder, n_rows, dim, attrs, dtype=dtype, chunk_rows=chunk_rows)

    def read_features(self, encoder: str) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        """Features (N, D), their level-0 coords (N, 2) and the node's attrs.

        Damage (a chunk missing or failing its crc32c checksum, altered metadata) is a
        :class:`StoreError` naming the store, the node and the chunk (see ``store/integrity.py``),
        so every batch or cohort loop records the slide and goes on instead of reading garbage.
        """
        rel = f"features/{encoder}"
        if not (self.path / rel / "zarr.json").exists():
            available = ", ".join(self.list_nodes("features")) or "none"
            raise StoreError(self.path, f"no complete features for encoder '{encoder}' (available: {available})")
        attrs = self.node_attrs(rel)
        features = read_array(self.path, rel)
        if "n_rows" in attrs and len(features) != int(attrs["n_rows"]):
            raise StoreError(self.path, f"{rel} has {len(features)} rows but records {attrs['n_rows']}")
        coords = self.read_tiles().coords
        if attrs.get("selection"):
            rows = self.read_selection(attrs["selection"])
            if attrs.get("selection_digest") not in (None, selection_digest(rows)):
                raise StoreError(self.path, f"features/{encoder} were computed on an earlier version of selection "
                                            f"'{attrs['selection']}'; extract them again")
            coords = coords[rows]
        if len(coords) != len(features):
            raise StoreError(self.path, f"features/{encoder} has {len(features)} rows but {len(coords)} tiles")
        return features, coords, attrs


def selection_dim(name: str) -> str:
    """The dimension of ``selections/<name>`` rows, shared by features computed on that selection."""
    return f"selected_{name}"


def _dimension_names(dims: tuple[str, ...] | None, ndim: int, name: str) -> tuple[str, ...]:
    """``dims`` padded to ``ndim`` with ``<name>_dim<i>``: every axis has a name xarray can use, and
    two arrays of one group never share a name by accident (xarray would demand equal sizes)."""
    given = tuple(dims or ())[:ndim]
    return given + tuple(f"{name}_dim{i}" for i in range(len(given), ndim))


def _chunks(shape: tuple[int, ...]) -> tuple[int, ...]:
    if not shape:
        return ()
    return (max(1, min(shape[0], 65536)), *shape[1:])


class FeatureWriter:
    """Writes one encoder's features row-chunk by row-chunk, resumable after a crash.

    Rows land in ``features/_partial-<encoder>``; after each chunk, ``rows_done`` is updated
    (zarr writes files atomically, so a chunk is either fully there or not). A new writer with
    the same provenance continues from ``rows_done``; with different provenance it starts over.
    Only :meth:`commit` renames the array to ``features/<encoder>`` with ``complete=True``.
    """

    def __init__(self, store: SlideStore, encoder: str, n_rows: int, dim: int, attrs: dict[str, Any], *,
                 dtype: str, chunk_rows: int) -> None:
        self.store = store
        self.encoder = encoder
        self.n_rows = int(n_rows)
        self.dim = int(dim)
        self.chunk_rows = int(chunk_rows)
        self.attrs = _jsonable(attrs)
        self.rel_partial = f"features/{PARTIAL_PREFIX}{encoder}"
        self.partial_path = store.path / self.rel_partial
        identity = {"n_rows": self.n_rows, "dim": self.dim, "dtype": dtype, "chunk_rows": self.chunk_rows,
                    "provenance": self.attrs}
        self.array = self._open_or_create(identity, dtype)

    def _open_or_create(self, identity: dict[str, Any], dtype: str) -> zarr.Array:
        if (self.partial_path / "zarr.json").exists():
            try:
                doc = read_meta(self.store.path, self.rel_partial)
                if doc["attributes"].get("identity") == identity and has_checksums(doc):
                    return open_for_append(self.partial_path)
            except Exception:  # an unreadable partial (or one without checksums) is just garbage to replace
                pass
            shutil.rmtree(self.partial_path, ignore_errors=True)
        selection = self.attrs.get("selection")
        arr = create_array(self.partial_path, None, (self.n_rows, self.dim), dtype,
                           (max(1, min(self.chunk_rows, self.n_rows)), self.dim), overwrite=True,
                           dimension_names=(selection_dim(selection) if selection else TILE_DIM,
                                            f"{self.encoder}_feature"))
        arr.attrs.update({"identity": identity, "rows_done": 0, "complete": False, "created": now_iso()})
        return arr

    @property
    def rows_done(self) -> int:
        return int(self.array.attrs.get("rows_done", 0))

    def write(self, start: int, rows: np.ndarray) -> None:
        """Write ``rows`` at ``start``; must continue exactly where the last write stopped."""
        if start != self.rows_done:
            raise StoreError(self.store.path, f"feature rows must be written in order: expected row {self.rows_done}, got {start}")
        rows = np.asarray(rows)
        if rows.ndim != 2 or rows.shape[1] != self.dim:
            raise StoreError(self.store.path, f"feature rows have shape {rows.shape}, expected (n, {self.dim})")
        end = start + len(rows)
        if end > self.n_rows:
            raise StoreError(self.store.path, f"writing rows up to {end} but the array has {self.n_rows}")
        self.array[start:end] = rows
        self.array.attrs["rows_done"] = end

    def commit(self) -> None:
        if self.rows_done != self.n_rows:
            raise StoreError(self.store.path, f"features/{self.encoder}: only {self.rows_done}/{self.n_rows} rows written")
        created = self.array.attrs.get("created")  # when the first row was written (a resume keeps it)
        final_attrs = {**self.attrs, "n_rows": self.n_rows, "dim": self.dim, "created": created, "completed": now_iso(),
                       "slidestream_version": __version__, "complete": True}
        self.array.attrs.put(final_attrs)  # replaces the resume bookkeeping (identity, rows_done)
        seal(self.partial_path)
        self.store._swap_into_place(self.partial_path, self.store.path / "features" / self.encoder)
        # The root's stage record keeps how to recompute these features should the node be damaged.
        recipe = {k: final_attrs.get(k) for k in ("encoder", "weights_sha256", "random_init", "precision", "dtype",
                                                  "selection", "mpp", "tile_size")}
        recipe["weights_path"] = (final_attrs.get("encoder_provenance") or {}).get("weights_path")
        self.store._record_stage(f"features/{self.encoder}", {**final_attrs, "params": recipe})


def iter_stores(out_dir: str | Path) -> Iterator[SlideStore]:
    """Every slide store directly inside ``out_dir``, sorted by slide id."""
    for path in sorted(Path(out_dir).glob(f"*{STORE_SUFFIX}")):
        if (path / "zarr.json").exists():
            yield SlideStore.open(path)
