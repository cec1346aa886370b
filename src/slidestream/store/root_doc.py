"""The store root's ``zarr.json``, read and edited as JSON (as ``integrity.seal`` edits node documents).

The stages read the root's attributes several times per slide and record each completed node in
them. Through zarr each read is a round trip to its event-loop thread and each update two (open,
write); on 2 busy cores every hand-off waits for a time slice. The document is small and its
layout fixed by the zarr v3 spec, so it is parsed here, and updated the way zarr's
``update_attributes`` updates it: read, shallow-update ``attributes``, atomic replace, no fsync.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from slidestream.atomic import atomic_path
from slidestream.errors import StoreError


def read_root(store: Path) -> dict[str, Any]:
    """The root document; a :class:`StoreError` naming the store when it is unreadable."""
    try:
        doc = json.loads((store / "zarr.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise StoreError(store, f"unreadable store metadata: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("attributes", {}), dict):
        raise StoreError(store, "store metadata is not a zarr v3 group document (zarr.json)")
    return doc


def update_root(store: Path, change: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    """Set the root attributes ``change(current attributes)`` returns (plain JSON values)."""
    doc = read_root(store)
    attributes = doc.setdefault("attributes", {})
    attributes.update(change(dict(attributes)))
    with atomic_path(store / "zarr.json", fsync=False) as tmp:
        tmp.write_text(json.dumps(doc, indent=2, ensure_ascii=False), encoding="utf-8")
