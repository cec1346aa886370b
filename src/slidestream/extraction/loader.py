"""Prefetching: read the next batches of tiles while the model works on the current one."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

import numpy as np

from slidestream.extraction.reader import TileReader

_DONE = object()


def iter_batches(reader: TileReader, coords: np.ndarray, batch_size: int, *, prefetch: int = 2,
                 first_row: int = 0) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(row, uint8 batch)`` in order; a background thread keeps ``prefetch`` batches ready.

    Errors in the reading thread surface in the consumer at the batch where they happened, and
    leaving the loop early (an exception downstream) stops the reader promptly.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    ready: queue.Queue = queue.Queue(maxsize=max(1, prefetch))
    stop = threading.Event()

    def produce() -> None:
        try:
            for start in range(0, len(coords), batch_size):
                if stop.is_set():
                    return
                batch = reader.read_batch(coords[start:start + batch_size])
                while not stop.is_set():
                    try:
                        ready.put((first_row + start, batch), timeout=0.1)
                        break
                    except queue.Full:
                        continue
        except BaseException as exc:  # handed to the consumer, raised there
            ready.put(exc)
            return
        ready.put(_DONE)

    thread = threading.Thread(target=produce, name="tile-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = ready.get()
            if item is _DONE:
                break
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():
            try:
                ready.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.05)
