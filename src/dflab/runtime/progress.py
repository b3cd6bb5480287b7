"""Progress bars for long loops (rich), silenced by ``--quiet`` or ``DFLAB_QUIET=1``."""

from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager
from typing import Iterable, Iterator, TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

T = TypeVar("T")


console = Console(stderr=True)


def set_quiet(quiet: bool) -> None:
    """Silence (or re-enable) progress bars and informational messages for this process and its workers."""
    os.environ["DFLAB_QUIET"] = "1" if quiet else "0"


def is_quiet() -> bool:
    return os.environ.get("DFLAB_QUIET", "0") == "1"


def printable(text: str) -> str:
    """``text`` safe to print: a file name that is not UTF-8 (surrogate escapes) shows U+FFFD instead of
    crashing the terminal's encoder."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def info(message: str) -> None:
    """An informational line on stderr (not shown with --quiet); ``message`` may hold rich markup."""
    if not is_quiet():
        console.print(printable(message), highlight=False, soft_wrap=True)


def warn(message: str) -> None:
    """A warning line on stderr; shown even with --quiet, since it changes how results read. The
    message is text, never markup: it often holds file names."""
    from rich.markup import escape

    Console(stderr=True).print(f"[yellow]warning:[/yellow] {escape(printable(message))}", highlight=False,
                               soft_wrap=True)


@contextmanager
def quiet_progress() -> Iterator[None]:
    """No progress bars or informational lines inside (the work of one step of an outer bar)."""
    before = os.environ.get("DFLAB_QUIET")
    os.environ["DFLAB_QUIET"] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("DFLAB_QUIET", None)
        else:
            os.environ["DFLAB_QUIET"] = before


#: A bar appears once a task has run this long: sub-second work needs none, and drawing one costs
#: milliseconds, a measurable share of scoring a small batch with a fast network.
SHOW_AFTER_S = 0.5


@contextmanager
def progress_bar(description: str, total: int | None) -> Iterator["_Advance"]:
    """``with progress_bar("scoring", n) as advance: advance(k)``; a no-op when quiet or tiny, and
    nothing is drawn until the work has run :data:`SHOW_AFTER_S` seconds."""
    if is_quiet() or not total or total < 2 or not sys.stderr:
        yield _Advance(description, None)
        return
    advance = _Advance(description, total)
    try:
        yield advance
    finally:
        advance.close()


class _Advance:
    """Counts progress; draws a rich bar (from the first call after :data:`SHOW_AFTER_S`) when it has
    a total."""

    def __init__(self, description: str, total: int | None):
        self._description, self._total = description, total
        self._started = time.monotonic()
        self._done = 0
        self._progress: Progress | None = None

    def __call__(self, n: int = 1) -> None:
        if self._total is None:
            return
        self._done += n
        if self._progress is not None:
            self._progress.advance(self._task_id, n)
        elif time.monotonic() - self._started >= SHOW_AFTER_S:
            columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                       TimeRemainingColumn())
            self._progress = Progress(*columns, console=console, transient=False, get_time=time.monotonic)
            self._progress.start()
            self._task_id = self._progress.add_task(self._description, total=self._total, completed=self._done)
            self._progress.tasks[-1].start_time = self._started  # elapsed time counts from the start

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with progress_bar(description, total) as advance:
        for item in items:
            yield item
            advance()
