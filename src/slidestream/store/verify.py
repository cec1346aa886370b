"""Check whole stores: is everything a store says it holds there, intact, and consistent?

``slidestream verify OUT`` runs :func:`verify_out`. For each ``<slide_id>.zarr`` it checks the
root metadata and provenance, then every node (tissue, tiles, selections, features, tile scores,
slide embeddings): metadata against its sealed digest, completion flag, every written chunk
present and (``deep``) decoded with its crc32c checksum, shapes, and the row alignment between
nodes (coords / tissue fraction / focus, selections in range, features and tile scores against
the rows they describe). A node the root's ``stages`` record says was written but that is gone
is damage too. Nodes written before checksums, and provenance attrs missing from intact metadata
(written that way, so untraceable rather than damaged), are warnings.

Store logic only: recomputing damaged nodes needs the pipeline (``pipeline/repair.py``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slidestream.errors import StoreError
from slidestream.store.integrity import INTEGRITY_KEY, LEGACY, read_meta
from slidestream.store.slide_store import (
    PARTIAL_PREFIX,
    STORE_SUFFIX,
    TRASH_PREFIX,
    SlideStore,
    selection_digest,
)

GROUPS = ("selections", "features", "tile_scores", "slide_embeddings")
# Attrs a node must carry so a later reader knows how it was made.
PROVENANCE = {
    "tissue": ("params", "summary"),  # and its geometry: geometry_format "wkb" arrays, or a legacy geojson attr
    "tiles": ("params", "target_mpp", "tile_size_px", "read_level", "read_size", "level0_size", "n_tiles"),
    "selections": ("method", "params", "n_selected", "n_tiles"),
    "features": ("encoder", "weights_sha256", "dim", "precision", "mpp", "tile_size", "reader", "n_rows"),
}
ROOT_PROVENANCE = ("path", "fingerprint", "width", "height")


@dataclass
class NodeIssue:
    node: str      # e.g. "features/uni", or "store" for the root
    problem: str

    def text(self) -> str:
        return self.problem if self.problem.startswith((self.node + ":", self.node + "/")) else f"{self.node}: {self.problem}"


@dataclass
class StoreCheck:
    """The verdict on one store: damaged when ``issues`` is non-empty."""

    path: Path
    issues: list[NodeIssue] = field(default_factory=list)
    warnings: list[NodeIssue] = field(default_factory=list)
    nodes: list[str] = field(default_factory=list)  # every node checked

    @property
    def slide_id(self) -> str:
        return self.path.name[: -len(STORE_SUFFIX)]

    @property
    def damaged(self) -> bool:
        return bool(self.issues)

    def as_dict(self) -> dict[str, Any]:
        return {"store": str(self.path), "slide_id": self.slide_id, "status": "damaged" if self.damaged else "ok",
                "nodes": self.nodes, "issues": [{"node": i.node, "problem": i.text()} for i in self.issues],
                "warnings": [{"node": w.node, "problem": w.text()} for w in self.warnings]}


def store_paths(out: Path) -> list[Path]:
    """Stores to check: ``out`` itself when it is one, else every ``*.zarr`` inside it."""
    out = Path(out)
    if out.name.endswith(STORE_SUFFIX) and out.is_dir():
        return [out]
    return sorted(p for p in out.glob(f"*{STORE_SUFFIX}") if p.is_dir())


def verify_out(out: Path, *, deep: bool = True) -> list[StoreCheck]:
    return [verify_store(p, deep=deep) for p in store_paths(out)]


def node_dirs(store: SlideStore) -> list[str]:
    """Every node folder under its final name (partial and trash leftovers are not nodes)."""
    rels = [rel for rel in ("tissue", "tiles") if (store.path / rel).is_dir()]
    for group in GROUPS:
        folder = store.path / group
        if folder.is_dir():
            rels += [f"{group}/{p.name}" for p in sorted(folder.iterdir())
                     if p.is_dir() and not p.name.startswith((PARTIAL_PREFIX, TRASH_PREFIX))]
    return rels


def verify_store(path: Path, *, deep: bool = True) -> StoreCheck:
    """Check one store; never raises for damage (it becomes an issue)."""
    check = StoreCheck(Path(path))
    try:
        store = SlideStore.open(path)
        attrs = store.attrs
    except Exception as exc:  # the root is unreadable: nothing below can be trusted
        check.issues.append(NodeIssue("store", exc.reason if isinstance(exc, StoreError) else str(exc)))
        return check
    missing = [k for k in ROOT_PROVENANCE if (attrs.get("slide") or {}).get(k) is None]
    if missing:  # written that way (the metadata is intact): untraceable, not damaged
        check.warnings.append(NodeIssue("store", f"provenance incomplete: no slide.{', slide.'.join(missing)}"))
    present = node_dirs(store)
    check.nodes = present
    for rel in sorted(attrs.get("stages", {})):
        if rel not in present:
            check.issues.append(NodeIssue(rel, "recorded as written in the store's stages, but the node is gone"))
    intact: list[str] = []
    for rel in present:
        problem = store.node_problem(rel, deep=deep)
        if problem is not None:
            check.issues.append(NodeIssue(rel, problem))
            continue
        intact.append(rel)
        if _legacy(store, rel):
            check.warnings.append(NodeIssue(rel, LEGACY))
        wanted = PROVENANCE.get(rel.split("/")[0], ())
        node_attrs = store.node_attrs(rel)
        lacking = [k for k in wanted if k not in node_attrs]
        if lacking:
            check.warnings.append(NodeIssue(rel, f"provenance incomplete: no {', '.join(lacking)}"))
    for rel in intact:
        try:
            if rel != "tissue":  # tissue has no rows
                _check_alignment(store, rel, deep=deep)
            elif deep:  # its geometry decodes (offsets consistent, WKB valid)
                store.read_tissue_pieces()
        except StoreError as exc:
            check.issues.append(NodeIssue(rel, exc.reason))
    return check


def _legacy(store: SlideStore, rel: str) -> bool:
    arrays = [rel] if rel != "tiles" else [f"tiles/{p.name}" for p in (store.path / "tiles").iterdir()
                                             if (p / "zarr.json").exists()]
    for arr in arrays:
        record = read_meta(store.path, arr).get("attributes", {}).get(INTEGRITY_KEY)
        if not isinstance(record, dict) or (record.get("chunks") is not None and record.get("checksum") is None):
            return True
    return False


def _shape(store: SlideStore, rel: str) -> list[int]:
    return [int(n) for n in read_meta(store.path, rel).get("shape", [])]


def _check_alignment(store: SlideStore, rel: str, *, deep: bool) -> None:
    """Row counts and index ranges between nodes; raises :class:`StoreError` naming the mismatch."""
    kind, _, name = rel.partition("/")
    if kind == "tiles":
        shape = _shape(store, "tiles/coords")
        if len(shape) != 2 or shape[1] != 2:
            raise StoreError(store.path, f"tiles/coords has shape {shape}, expected (N, 2)")
        if deep:
            store.read_tiles()  # lengths of every member against n_tiles
        return
    n_tiles = int(store.node_attrs("tiles")["n_tiles"]) if store.has("tiles") else None
    attrs = store.node_attrs(rel)
    if kind == "selections":
        if n_tiles is None:
            raise StoreError(store.path, f"{rel} indexes tiles, but the store has no intact tiles")
        if attrs.get("n_tiles") is not None and int(attrs["n_tiles"]) != n_tiles:
            raise StoreError(store.path, f"{rel} was made for {attrs['n_tiles']} tiles, the store has {n_tiles}")
        if _shape(store, rel) != [int(attrs.get("n_selected", -1))]:
            raise StoreError(store.path, f"{rel} has shape {_shape(store, rel)} but records {attrs.get('n_selected')} rows")
        if deep:
            store.read_selection(name)  # indices in range
    elif kind == "features":
        shape = _shape(store, rel)
        if len(shape) != 2 or shape != [int(attrs.get("n_rows", -1)), int(attrs.get("dim", -1))]:
            raise StoreError(store.path, f"{rel} has shape {shape} but records ({attrs.get('n_rows')}, {attrs.get('dim')})")
        if n_tiles is None:
            raise StoreError(store.path, f"{rel} needs tiles, but the store has no intact tiles")
        rows, what = n_tiles, "tiles"
        if attrs.get("selection"):  # rows are the selection's (and must be this version of it)
            what = f"selections/{attrs['selection']}"
            if not store.has(what):
                raise StoreError(store.path, f"{rel} were computed on {what}, which the store lacks (or is damaged)")
            if deep:
                picked = store.read_selection(attrs["selection"])
                rows = len(picked)
                if attrs.get("selection_digest") not in (None, selection_digest(picked)):
                    raise StoreError(store.path, f"{rel} were computed on an earlier version of {what}")
            else:
                rows = int(store.node_attrs(what).get("n_selected", -1))
        if shape[0] != rows:
            raise StoreError(store.path, f"{rel} has {shape[0]} rows but {what} has {rows}")
    elif kind == "tile_scores":
        rows = str(attrs.get("rows", "tiles"))
        expected = n_tiles if rows == "tiles" else (int(store.node_attrs(rows)["n_rows"]) if store.has(rows) else None)
        if expected is None:
            raise StoreError(store.path, f"{rel} describes the rows of {rows}, which the store lacks (or is damaged)")
        if not _shape(store, rel) or _shape(store, rel)[0] != expected:
            raise StoreError(store.path, f"{rel} has {(_shape(store, rel) or [0])[0]} rows but {rows} has {expected}")
    elif kind == "slide_embeddings" and len(_shape(store, rel)) != 1:
        raise StoreError(store.path, f"{rel} has shape {_shape(store, rel)}, expected one vector")


def summary_json(checks: list[StoreCheck]) -> str:
    damaged = [c for c in checks if c.damaged]
    return json.dumps({"stores": len(checks), "damaged": len(damaged), "checks": [c.as_dict() for c in checks]},
                      indent=1)
