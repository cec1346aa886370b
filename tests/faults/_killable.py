"""``slidestream extract`` with a pause at a chosen point, for the SIGKILL tests.

    python -m tests.faults._killable MODE MARKER -- <extract arguments>

Feature rows are written in chunks of 8 (the CLI's default is 1024) so a small slide has many
chunks. MODE picks where the process announces itself (writes the store being written into MARKER) and
then sleeps, so the test can kill it exactly there:

  none    no pause: a clean run with the same chunking
  chunk   after the 2nd chunk of a slide's feature rows reached the disk, before the writer records it
  commit  after the last row, just before the finished array is renamed into place
  slow    every chunk of feature rows takes SLOW_S longer, and none is written before SLOW_PEERS
          runs sharing the MARKER folder are up (so concurrent runs overlap)
"""

from __future__ import annotations

import functools
import os
import sys
import time
from pathlib import Path

import zarr

import slidestream.extraction
from slidestream.cli import main
from slidestream.extraction import ExtractOptions
from slidestream.store import lock, slide_store

PAUSE_S = 120.0
SLOW_S = 1.5
SLOW_PEERS = 2


def pause_here(marker: Path, store: Path) -> None:
    marker.write_text(str(store))
    time.sleep(PAUSE_S)


def install(mode: str, marker: Path) -> None:
    # `extract` imports its options class when it runs: patch where it looks it up
    slidestream.extraction.ExtractOptions = functools.partial(ExtractOptions, chunk_rows=8)  # type: ignore[assignment,misc]
    if mode == "chunk":
        real_setitem = zarr.Array.__setitem__
        writes: dict[str, int] = {}

        def setitem(self, key, value):
            real_setitem(self, key, value)
            path = str(self.store_path)
            if "/features/_partial-" in path:
                writes[path] = writes.get(path, 0) + 1
                if writes[path] == 2:
                    pause_here(marker, Path(path.split("://", 1)[-1]).parents[1])

        zarr.Array.__setitem__ = setitem  # type: ignore[method-assign]
    elif mode == "commit":
        real_swap = slide_store.SlideStore._swap_into_place

        def swap(self, tmp_path, final):
            if Path(final).parent.name == "features":
                pause_here(marker, Path(final).parents[1])
            return real_swap(self, tmp_path, final)

        slide_store.SlideStore._swap_into_place = swap  # type: ignore[method-assign]
    elif mode == "slow":
        # MARKER is a folder shared by the concurrent runs: each says it is up when it first tries a
        # slide's lock, and none writes features before SLOW_PEERS are up, so start-up time under
        # load can never let one run finish before the other reaches the slides.
        marker.mkdir(parents=True, exist_ok=True)
        real_acquire = lock.SlideLock.acquire

        def acquire(self):
            # "up" = this run has reached its slides (tried its first lock), imports behind it
            (marker / f"up-{os.getpid()}").touch()
            return real_acquire(self)

        lock.SlideLock.acquire = acquire  # type: ignore[method-assign]
        real_setitem_slow = zarr.Array.__setitem__

        def slow_setitem(self, key, value):
            real_setitem_slow(self, key, value)
            if "/features/_partial-" in str(self.store_path):
                deadline = time.monotonic() + PAUSE_S
                while len(list(marker.glob("up-*"))) < SLOW_PEERS and time.monotonic() < deadline:
                    time.sleep(0.05)
                time.sleep(SLOW_S)

        zarr.Array.__setitem__ = slow_setitem  # type: ignore[method-assign]
    elif mode != "none":
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    mode, marker, sep, *rest = sys.argv[1:]
    assert sep == "--", "usage: MODE MARKER -- <extract arguments>"
    install(mode, Path(marker))
    sys.argv = ["slidestream", "extract", *rest]
    main()
