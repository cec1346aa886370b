"""Preview pictures drawn and written in the background while a stage writes its store.

The two 1024 px PNGs of ``slidestream tile`` (tissue, tiles) cost about as much as the store
writes; Pillow's PNG encoder and zlib release the GIL, so drawing them in threads overlaps them
with the store's writes and with each other. The stage still owns them: leaving the ``with``
block waits for every picture, so the stage never returns (or reports success or a skip) before
its pictures are on disk, and a picture that failed fails the stage.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import Any

from slidestream.pipeline.batch import Skip


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
