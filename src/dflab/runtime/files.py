"""File helpers every stage uses: content hashes and atomic writes."""

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


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Replace ``path`` with ``text`` in one step: a reader (or a killed run) never sees half a file."""
    path = Path(path)
    partial = path.with_name(path.name + ".tmp")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


def write_json_atomic(path: str | os.PathLike, payload, *, sort_keys: bool = False) -> None:
    write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=sort_keys))
