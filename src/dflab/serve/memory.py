"""The server's memory ceiling: resident memory held near its size after the warm-up."""

from __future__ import annotations

import logging

log = logging.getLogger("dflab.serve")


#: Resident memory may grow this much past its size after the warm-up before the freed memory
#: inside the heap is handed back (see :class:`MemoryCeiling`).
MEMORY_SLACK = 0.10


class MemoryCeiling:
    """Keeps the server's resident memory near its size after the warm-up.

    The process keeps freed memory for speed (:func:`dflab.runtime.memory.keep_freed_memory`); with
    batches of changing shapes its heap fragments and grows for hundreds of requests. Past the
    ceiling the freed memory is handed back (:func:`~dflab.runtime.memory.release_freed_memory`),
    which costs page faults on the next batch, so it is done only then, not after every batch."""

    def __init__(self, slack: float = MEMORY_SLACK):
        self.slack = slack
        self.limit_mb: float | None = None
        self.releases = 0

    def set_from_now(self) -> None:
        from dflab.runtime.memory import resident_mb

        resident = resident_mb()
        self.limit_mb = None if resident is None else resident * (1 + self.slack)

    def check(self) -> None:
        from dflab.runtime.memory import release_freed_memory, resident_mb

        resident = resident_mb()
        if self.limit_mb is not None and resident is not None and resident > self.limit_mb:
            if release_freed_memory():
                self.releases += 1
                log.info("resident memory %.0f MB over %.0f MB: freed memory handed back", resident, self.limit_mb)
