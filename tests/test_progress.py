"""Progress bars: nothing drawn for sub-second work or with --quiet; a bar once work runs longer."""

from __future__ import annotations

import io
import time

from rich.console import Console

from dflab.runtime import progress


def _drawn(monkeypatch, *, quiet: bool, seconds_per_step: float) -> str:
    out = io.StringIO()
    monkeypatch.setattr(progress, "console", Console(file=out, force_terminal=True, width=100))
    monkeypatch.setattr(progress, "SHOW_AFTER_S", 0.1)
    monkeypatch.setenv("DFLAB_QUIET", "1" if quiet else "0")
    with progress.progress_bar("scoring", 6) as advance:
        for _ in range(6):
            time.sleep(seconds_per_step)
            advance()
    return out.getvalue()


def test_a_bar_is_drawn_only_for_work_that_runs_long_enough(monkeypatch):
    assert _drawn(monkeypatch, quiet=False, seconds_per_step=0.0) == ""
    slow = _drawn(monkeypatch, quiet=False, seconds_per_step=0.05)
    assert "scoring" in slow and "6/6" in slow
    assert _drawn(monkeypatch, quiet=True, seconds_per_step=0.05) == ""
