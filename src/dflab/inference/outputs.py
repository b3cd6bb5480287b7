"""``dflab predict --csv``: the rows appended a chunk at a time and resumed, so that an interrupted
run of a big folder loses nothing and the same command run again scores only what is left.

Beside ``OUT.csv``, ``OUT.csv.run.json`` records what the rows depend on (model, threshold, faces,
frames, aggregation, face detector, reference) and how many rows are known to be written: it is
updated after each chunk's rows are on disk, so rows past that count (a chunk whose writing was
cut) are dropped when resuming and scored again. A run with other settings refuses to add to the
file (mixing two models' scores in one table would be silently wrong); ``overwrite`` starts anew.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import pandas as pd

from dflab.runtime.files import append_csv, drop_partial_last_line, write_json_atomic, write_text_atomic


class ResumeError(ValueError):
    """The CSV cannot be resumed by this run (other settings, or not written by ``dflab predict``)."""


class PredictionsCSV:
    """The CSV of a ``dflab predict`` run: ``done`` holds the paths already scored, :meth:`append`
    adds a chunk's rows durably. ``run``: the settings the rows depend on (JSON-ready)."""

    def __init__(self, path: str | Path, run: dict, columns: Sequence[str], *, overwrite: bool = False):
        self.path, self.columns = Path(path), list(columns)
        self.record = self.path.with_name(self.path.name + ".run.json")
        self.run, self.done, self.rows = run, set(), 0
        fresh = overwrite or not self.path.exists() or self.path.stat().st_size == 0
        if fresh:
            self.path.unlink(missing_ok=True)
        else:
            self._resume()
        self._save_record()

    def _save_record(self) -> None:
        write_json_atomic(self.record, {"settings": self.run, "rows": self.rows}, sort_keys=True)

    def _resume(self) -> None:
        run = self.run
        if not self.record.is_file():
            raise ResumeError(f"{self.path}: exists and was not written by dflab predict (no {self.record.name}); "
                              f"pass --overwrite to replace it, or another --csv")
        try:
            record = json.loads(self.record.read_text(encoding="utf-8"))
            recorded, written = dict(record["settings"]), int(record["rows"])
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ResumeError(f"{self.record}: unreadable ({type(err).__name__}: {err}); "
                              f"pass --overwrite to start anew") from None
        changed = sorted(key for key in set(run) | set(recorded) if run.get(key) != recorded.get(key))
        if changed:
            raise ResumeError(f"{self.path}: written with other settings ({', '.join(changed)}); "
                              f"pass --overwrite to replace it, or another --csv")
        drop_partial_last_line(self.path)
        try:
            rows = pd.read_csv(self.path, dtype=str, keep_default_na=False, encoding_errors="surrogateescape")
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
            raise ResumeError(f"{self.path}: not a readable CSV ({err}); pass --overwrite") from None
        if list(rows.columns) != self.columns:
            raise ResumeError(f"{self.path}: columns {list(rows.columns)} are not dflab predict's; pass --overwrite")
        if len(rows) > written:  # a chunk's rows, not all of them known to be written
            rows = rows.iloc[:written]
            write_text_atomic(self.path, rows.to_csv(index=False))
        self.rows, self.done = len(rows), set(rows["path"])

    def append(self, rows: pd.DataFrame) -> None:
        append_csv(self.path, rows[self.columns])
        self.rows += len(rows)
        self._save_record()

    def left(self, files: Sequence[Path]) -> list[Path]:
        """``files`` not yet in the CSV, in their order."""
        return [file for file in files if str(file) not in self.done]
