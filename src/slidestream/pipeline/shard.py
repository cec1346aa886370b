"""``--shard i/n``: split a slide list so n GPUs or nodes share it with no coordinator.

A slide belongs to shard ``1 + (sha256(slide_id) mod n)``. Why a hash of the id rather than
round-robin over the list: the assignment of a slide depends on nothing but its own id and ``n``.
Nodes that read the list in another order, or a list that grew between two launches, still agree
on who owns each slide, so no slide is ever left to nobody (round-robin would shift every slide
after an insertion). The price is statistical balance: shards differ by about ``sqrt(N/n)``
slides, a few percent for real cohorts. sha256 (not Python's ``hash``) is the same in every
process, Python version and machine.

Slide ids are unique within a run (:func:`slidestream.pipeline.stages.check_unique_ids`), so the
shards are disjoint and their union is the whole list.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from slidestream.errors import ConfigError

T = TypeVar("T")
_PATTERN = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` (1-based) of ``count``."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 1 <= self.index <= self.count:
            raise ConfigError(None, f"shard {self.index}/{self.count}: expected i/n with 1 <= i <= n (e.g. 1/4 ... 4/4)")

    @classmethod
    def parse(cls, text: str | Shard | None, key: str = "shard") -> Shard | None:
        """``"2/4"`` -> ``Shard(2, 4)``; None stays None. Errors name ``key`` and the form expected."""
        if text is None or isinstance(text, Shard):
            return text
        match = _PATTERN.match(str(text))
        if not match:
            raise ConfigError(None, f"{key}={text!r}: expected i/n with 1 <= i <= n (e.g. 1/4 ... 4/4)")
        index, count = int(match.group(1)), int(match.group(2))
        if count < 1 or not 1 <= index <= count:
            raise ConfigError(None, f"{key}={text!r}: expected i/n with 1 <= i <= n (e.g. 1/4 ... 4/4)")
        return cls(index, count)

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def owns(self, slide_id: str) -> bool:
        return shard_index(slide_id, self.count) == self.index

    def select(self, items: Sequence[T], key: Callable[[T], str]) -> list[T]:
        """The items of this shard, in their original order."""
        return [item for item in items if self.owns(key(item))]


def shard_index(slide_id: str, count: int) -> int:
    """The 1-based shard that owns ``slide_id`` among ``count`` shards."""
    digest = hashlib.sha256(slide_id.encode("utf-8")).digest()
    return 1 + int.from_bytes(digest[:8], "big") % count


def apply_shard(items: Sequence[T], shard: str | Shard | None, key: Callable[[T], str]) -> list[T]:
    """``items`` restricted to ``shard`` (all of them when ``shard`` is None)."""
    parsed = Shard.parse(shard)
    return list(items) if parsed is None else parsed.select(items, key)
