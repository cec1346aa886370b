"""Run one function over many slides: never die for one slide, always say what happened.

This is the single place where per-slide errors are caught. Everything below raises typed
errors; here they become a row with a status and a one-line reason.

A slide that another live process is working on (its lock is held) is not a success: the task
raises :class:`Busy`, the batch goes on with the other slides, then comes back to the busy ones and
waits for them, at most ``busy_wait_s`` seconds in all. A slide whose lock frees up in time is run
again, so its stage verifies that the other process finished it (usually a skip, "already done")
or does the work itself; one still held when the wait runs out is ``busy`` and the batch's exit
code is non-zero. So a batch exits 0 only when every slide it was asked for is done.
"""

from __future__ import annotations

import contextvars
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from slidestream.errors import SlideStreamError

Status = Literal["ok", "skipped", "failed", "busy"]
DEFAULT_BUSY_WAIT_S = 300.0

# Set while a batch runs: stages report progress within a slide (tiles done / total) through it
# without knowing anything about the display.
_item_progress: contextvars.ContextVar[Callable[[int, int], None] | None] = contextvars.ContextVar(
    "slidestream_item_progress", default=None)


# Set while a batch comes back to its busy slides: the monotonic deadline of the wait for them.
_busy_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("slidestream_busy_deadline", default=None)


def busy_wait_left() -> float:
    """Seconds a lock may still be waited for now: 0 on a batch's first pass (busy slides are
    deferred, not waited for), the rest of the batch's wait when it comes back to them."""
    deadline = _busy_deadline.get()
    return 0.0 if deadline is None else max(0.0, deadline - time.monotonic())


def report_items(done: int, total: int) -> None:
    """Report progress inside the current slide (e.g. tiles embedded); a no-op outside a batch."""
    callback = _item_progress.get()
    if callback is not None:
        callback(done, total)


class Busy(Exception):  # noqa: N818 - a control-flow signal, not an error
    """Raised by a task when another live process holds the slide (see the module docstring)."""

    def __init__(self, reason: str, **details: Any) -> None:
        super().__init__(reason)
        self.reason = reason
        self.details = details


class Skip(Exception):  # noqa: N818 - a control-flow signal, not an error
    """Raised by a task to say the slide needs no work (e.g. already complete)."""

    def __init__(self, reason: str, **details: Any) -> None:
        super().__init__(reason)
        self.reason = reason
        self.details = details


@dataclass
class SlideOutcome:
    path: Path
    status: Status
    reason: str = ""
    seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        return {"slide": str(self.path), "status": self.status, "reason": self.reason,
                "seconds": round(self.seconds, 3), **self.details}


@dataclass
class BatchResult:
    outcomes: list[SlideOutcome]

    def count(self, status: Status) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def failed(self) -> list[SlideOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]

    @property
    def busy(self) -> list[SlideOutcome]:
        return [o for o in self.outcomes if o.status == "busy"]

    @property
    def exit_code(self) -> int:
        """0 only when every slide is done (ok, or skipped as already done)."""
        return 1 if self.failed or self.busy else 0

    def summary_line(self) -> str:
        line = f"{self.count('ok')} ok, {self.count('skipped')} skipped, {self.count('failed')} failed"
        return line + (f", {self.count('busy')} busy (in progress elsewhere)" if self.busy else "")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, SlideStreamError):
        return exc.reason
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def run_batch(
    paths: Sequence[Path],
    task: Callable[[Path], dict[str, Any] | None],
    *,
    description: str = "slides",
    console: Console | None = None,
    show_progress: bool = True,
    fail_fast_errors: tuple[type[BaseException], ...] = (KeyboardInterrupt, MemoryError),
    busy_wait_s: float = DEFAULT_BUSY_WAIT_S,
    on_outcome: Callable[[SlideOutcome], None] | None = None,
) -> BatchResult:
    """Apply ``task`` to each path; a task returns details for the summary or raises.

    ``Skip`` marks the slide skipped; ``Busy`` defers it to the end of the batch, where it is
    waited for (``busy_wait_s`` in all) and run again; any other exception marks it failed with a
    one-line reason (the full traceback is kept in ``details['traceback']`` for the manifest, not
    printed). ``on_outcome`` sees each slide's final outcome as soon as it is known (the CLI writes
    the manifest row then, so a batch killed later keeps the rows of the slides it finished).
    """
    console = console or Console(stderr=True)
    outcomes: dict[int, SlideOutcome] = {}
    deferred: list[tuple[int, Path, Busy]] = []
    progress = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[current]}"),
        console=console, disable=not show_progress, transient=False,
    )

    def attempt(path: Path) -> SlideOutcome | Busy:
        start = time.perf_counter()
        try:
            details = dict(task(path) or {})
            outcome = SlideOutcome(path, "ok", str(details.pop("note", "")), details=details)
        except Busy as busy:
            return busy
        except Skip as skip:
            outcome = SlideOutcome(path, "skipped", skip.reason, details=dict(skip.details))
        except fail_fast_errors:
            raise
        except Exception as exc:
            outcome = SlideOutcome(path, "failed", _reason(exc),
                                   details={"error_type": type(exc).__name__,
                                            "traceback": traceback.format_exc(limit=8)})
        outcome.seconds = time.perf_counter() - start
        return outcome

    def finish(index: int, outcome: SlideOutcome) -> None:
        outcomes[index] = outcome
        if on_outcome is not None:
            on_outcome(outcome)

    with progress:
        bar = progress.add_task(description, total=len(paths), current="")
        items = progress.add_task("  tiles", total=None, visible=False, current="")

        def on_items(done: int, total: int) -> None:
            progress.update(items, completed=done, total=total, visible=True)

        token = _item_progress.set(on_items)
        try:
            for index, path in enumerate(paths):
                progress.update(bar, current=Path(path).name)
                progress.update(items, completed=0, total=None, visible=False)
                result = attempt(path)
                if isinstance(result, Busy):
                    deferred.append((index, path, result))
                    continue
                finish(index, result)
                progress.advance(bar)
            if deferred:
                wait_token = _busy_deadline.set(time.monotonic() + max(0.0, busy_wait_s))
                try:
                    for index, path, first in deferred:
                        progress.update(bar, current=f"waiting for {Path(path).name}")
                        console.print(f"[yellow]waiting[/yellow] for {escape(str(path))}: {escape(first.reason)}",
                                      soft_wrap=True, highlight=False)
                        start = time.perf_counter()
                        result = attempt(path)
                        waited = time.perf_counter() - start
                        if isinstance(result, Busy):
                            result = SlideOutcome(path, "busy", f"{result.reason}; still busy after waiting "
                                                  f"{busy_wait_s:.0f} s in all", waited,
                                                  details={**result.details, "error_type": "Busy"})
                        elif result.status == "skipped":
                            result.reason = f"{result.reason} (after waiting for it: it was {first.reason})"
                        finish(index, result)
                        progress.advance(bar)
                finally:
                    _busy_deadline.reset(wait_token)
        finally:
            _item_progress.reset(token)
        progress.update(bar, current="")
        progress.update(items, visible=False)
    return BatchResult([outcomes[i] for i in sorted(outcomes)])


def iter_failures(result: BatchResult) -> Iterable[str]:
    for o in result.failed:
        yield f"{o.path}: {o.reason}"
