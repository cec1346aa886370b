"""Run one function over many slides: never die for one slide, always say what happened.

This is the single place where per-slide errors are caught. Everything below raises typed
errors; here they become a row with a status and a one-line reason.
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
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from slidestream.errors import SlideStreamError

Status = Literal["ok", "skipped", "failed"]

# Set while a batch runs: stages report progress within a slide (tiles done / total) through it
# without knowing anything about the display.
_item_progress: contextvars.ContextVar[Callable[[int, int], None] | None] = contextvars.ContextVar(
    "slidestream_item_progress", default=None)


def report_items(done: int, total: int) -> None:
    """Report progress inside the current slide (e.g. tiles embedded); a no-op outside a batch."""
    callback = _item_progress.get()
    if callback is not None:
        callback(done, total)


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
    def exit_code(self) -> int:
        return 1 if self.failed else 0

    def summary_line(self) -> str:
        return f"{self.count('ok')} ok, {self.count('skipped')} skipped, {self.count('failed')} failed"


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
) -> BatchResult:
    """Apply ``task`` to each path; a task returns details for the summary or raises.

    ``Skip`` marks the slide skipped; any other exception marks it failed with a one-line reason
    (the full traceback is kept in ``details['traceback']`` for the manifest, not printed).
    """
    console = console or Console(stderr=True)
    outcomes: list[SlideOutcome] = []
    progress = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[current]}"),
        console=console, disable=not show_progress, transient=False,
    )
    with progress:
        bar = progress.add_task(description, total=len(paths), current="")
        items = progress.add_task("  tiles", total=None, visible=False, current="")

        def on_items(done: int, total: int) -> None:
            progress.update(items, completed=done, total=total, visible=True)

        token = _item_progress.set(on_items)
        for path in paths:
            progress.update(bar, current=Path(path).name)
            progress.update(items, completed=0, total=None, visible=False)
            start = time.perf_counter()
            try:
                details = dict(task(path) or {})
                outcome = SlideOutcome(path, "ok", str(details.pop("note", "")), details=details)
            except Skip as skip:
                outcome = SlideOutcome(path, "skipped", skip.reason, details=dict(skip.details))
            except fail_fast_errors:
                raise
            except Exception as exc:
                outcome = SlideOutcome(path, "failed", _reason(exc),
                                       details={"error_type": type(exc).__name__,
                                                "traceback": traceback.format_exc(limit=8)})
            outcome.seconds = time.perf_counter() - start
            outcomes.append(outcome)
            progress.advance(bar)
        _item_progress.reset(token)
        progress.update(bar, current="")
        progress.update(items, visible=False)
    return BatchResult(outcomes)


def iter_failures(result: BatchResult) -> Iterable[str]:
    for o in result.failed:
        yield f"{o.path}: {o.reason}"
