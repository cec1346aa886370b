"""Preview pictures (and the GeoJSON files) written in the background while a stage writes its store.

The two 1024 px PNGs of ``slidestream tile`` (tissue, tiles) and the tissue GeoJSON cost about
as much as the store writes; OpenCV's PNG encoder, shapely and file writes release the GIL, so
writing them in threads overlaps them with the store's writes and with each other. The stage
still owns them: leaving the ``with`` block waits for every job, so the stage never returns (or
reports success or a skip) before its files are on disk, and a job that failed fails the stage.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import Any

import numpy as np

from slidestream.pipeline.batch import Skip
from slidestream.viz.overlay import fit_within


class Previews:
    """A context that runs picture jobs in background threads and waits for them on exit.

    On exit: with no error in the block (or only a :class:`Skip`, a "nothing to do" signal), the
    first picture failure is raised as the stage's failure; when the block itself failed, its
    error wins (the pictures are still waited for, so no thread writes after the stage ends).
    """

    def __init__(self, workers: int = 2) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="slidestream-preview")
        self._jobs: list[Future[Any]] = []

    def submit(self, job: Callable[[], Any]) -> None:
        """Run ``job`` (draw and write one picture) in the background."""
        self._jobs.append(self._pool.submit(job))

    def wait(self) -> BaseException | None:
        """Wait for every picture job; the first failure (in submission order), or None."""
        failure = None
        for job in self._jobs:
            error = job.exception()  # blocks until the job is done
            if error is not None and failure is None:
                failure = error
        self._jobs.clear()
        return failure

    def __enter__(self) -> Previews:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> bool:
        try:
            failure = self.wait()
        finally:
            self._pool.shutdown(wait=True)
        if failure is not None and (exc is None or isinstance(exc, Skip)):
            raise failure
        return False


class Thumbnail:
    """An image shrunk (``INTER_AREA``) to at most ``max_side``, once, by whichever picture job
    asks first; the other waits for it. Both pictures of ``slidestream tile`` start from the
    detection image: on a 100k slide it is 1600 px, and the resize cost ~30 ms per picture."""

    def __init__(self, image: np.ndarray, max_side: int) -> None:
        self.image, self.max_side = image, max_side
        self._lock = threading.Lock()
        self._shrunk: np.ndarray | None = None

    def get(self) -> np.ndarray:
        with self._lock:
            if self._shrunk is None:
                self._shrunk = fit_within(self.image, self.max_side)
            return self._shrunk


# The last image shrunk (one entry, as the stages' tissue memo): it holds the image itself, so the
# identity check cannot match a new array that reuses a freed one's address.
_LAST: list[Thumbnail] = []


def thumbnail(image: np.ndarray, max_side: int) -> Thumbnail:
    """The shared :class:`Thumbnail` of ``image`` (the same object for the same array)."""
    if _LAST and _LAST[0].image is image and _LAST[0].max_side == max_side:
        return _LAST[0]
    _LAST[:] = [Thumbnail(image, max_side)]
    return _LAST[0]
