"""File helpers every stage uses: content hashes, atomic writes, CSV files appended as a run goes."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Replace ``path`` with ``data`` in one step: a reader (or a killed run) never sees half a file."""
    path = Path(path)
    partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # two processes never share one
    partial.write_bytes(data)
    os.replace(partial, path)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | os.PathLike, payload, *, sort_keys: bool = False) -> None:
    write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=sort_keys))


def drop_partial_last_line(path: str | os.PathLike) -> None:
    """A run killed while appending can leave half a row: cut the file back to its last full line
    (those rows are done again), so that no half-written row is ever read back."""
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        return
    with open(path, "rb+") as handle:
        handle.seek(size - 1)
        if handle.read(1) == b"\n":
            return
        block = min(size, 1 << 20)
        handle.seek(size - block)
        tail = handle.read(block)
        cut = tail.rfind(b"\n")
        handle.truncate(size - block + cut + 1 if cut >= 0 else 0)


def append_csv(path: str | os.PathLike, rows) -> None:
    """Append a pandas frame's rows to ``path`` (with the header when the file is new or empty) and
    make them durable before returning: a run killed later keeps them."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = not path.exists() or path.stat().st_size == 0
    # File names that are not UTF-8 are written back as the bytes they are.
    with open(path, "a", newline="", errors="surrogateescape") as handle:
        rows.to_csv(handle, header=header, index=False)
        handle.flush()
        os.fsync(handle.fileno())


def default_cache_dir() -> Path:
    """``$DFLAB_CACHE`` or ``~/.cache/dflab`` (XDG)."""
    env = os.environ.get("DFLAB_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "dflab"
