"""Progress bars for long loops (rich), silenced by ``--quiet`` or ``DFLAB_QUIET=1``."""

from __future__ import annotations

import os
import sys
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


def info(message: str) -> None:
    """An informational line on stderr (not shown with --quiet)."""
    if not is_quiet():
        console.print(message, highlight=False, soft_wrap=True)


def warn(message: str) -> None:
    """A warning line on stderr; shown even with --quiet, since it changes how results read."""
    Console(stderr=True).print(f"[yellow]warning:[/yellow] {message}", highlight=False, soft_wrap=True)


@contextmanager
def progress_bar(description: str, total: int | None) -> Iterator["_Advance"]:
    """``with progress_bar("scoring", n) as advance: advance(k)``; a no-op when quiet or tiny."""
    if is_quiet() or not total or total < 2 or not sys.stderr:
        yield _Advance(None, None)
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        task_id = progress.add_task(description, total=total)
        yield _Advance(progress, task_id)


class _Advance:
    def __init__(self, progress, task_id):
        self._progress, self._task_id = progress, task_id

    def __call__(self, n: int = 1) -> None:
        if self._progress is not None:
            self._progress.advance(self._task_id, n)


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with progress_bar(description, total) as advance:
        for item in items:
            yield item
            advance()
