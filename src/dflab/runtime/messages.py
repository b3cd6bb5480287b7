"""Error messages as people read them: one line."""

from __future__ import annotations


def one_line(message: object, limit: int = 300) -> str:
    """The first line of ``message`` (an exception's text, or its type's name when it has none), at most
    ``limit`` characters: a library's multi-line error inside one of dflab's one-line messages."""
    lines = str(message).strip().splitlines()
    if lines:
        return lines[0].strip()[:limit]
    return type(message).__name__ if isinstance(message, BaseException) else "error"
