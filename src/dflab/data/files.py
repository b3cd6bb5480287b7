"""Folder walks for datasets: hidden files skipped, symlink loops and dangling links reported once."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from dflab.data.manifest import DataError
from dflab.media.formats import is_video_path


def is_video_file(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` has a video extension (its faces still have to be extracted)."""
    return is_video_path(path)


def normalise_extensions(extensions: Iterable[str]) -> frozenset[str]:
    if isinstance(extensions, str):
        extensions = [extensions]
    normalised = frozenset(
        (ext if ext.startswith(".") else "." + ext).lower() for ext in extensions if ext
    )
    if not normalised:
        raise DataError("no file extensions given: expected e.g. ('.png', '.jpg')")
    return normalised


def _is_hidden(name: str) -> bool:
    # Skips .DS_Store, macOS "._frame.png" resource forks, .ipynb_checkpoints and the like.
    return name.startswith(".")


#: Unreadable entries already reported: a layout is detected, then scanned, each listing the root again.
_REPORTED: set[str] = set()


def _children(folder: Path, want_dirs: bool) -> dict[str, Path]:
    """Sub-folders (or files) of ``folder`` by lower-cased name: layout folder names are matched
    case-insensitively. A link that points nowhere or into a loop is passed over with a warning:
    a class folder that is such a link would otherwise leave its class empty without a word."""
    from dflab.runtime.progress import warn

    found: dict[str, Path] = {}
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return found
    for entry in entries:
        if _is_hidden(entry.name):
            continue
        try:
            wanted = entry.is_dir() if want_dirs else entry.is_file()
            if not wanted and entry.is_symlink() and not os.path.exists(entry.path):
                raise FileNotFoundError(2, "a dangling link", entry.path)
        except OSError as error:
            reason = "a dangling link" if isinstance(error, FileNotFoundError) else error.strerror
            message = f"{entry.path}: skipped, not readable ({reason})"
            if message not in _REPORTED:
                _REPORTED.add(message)
                warn(message)
            continue
        if wanted:
            found.setdefault(entry.name.lower(), Path(entry.path))
    return found


def child_dirs(folder: Path) -> dict[str, Path]:
    """Sub-folders of ``folder`` by lower-cased name (layout folder names are matched case-insensitively)."""
    return _children(folder, want_dirs=True)


def child_files_by_name(folder: Path) -> dict[str, Path]:
    return _children(folder, want_dirs=False)


def short_listing(folder: Path, limit: int = 8) -> str:
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as error:
        return f"unreadable ({error.strerror})"
    names = [e.name + ("/" if e.is_dir() else "") for e in entries if not _is_hidden(e.name)]
    if not names:
        return "empty folder"
    shown = ", ".join(names[:limit])
    return shown + (f", ... (+{len(names) - limit} more)" if len(names) > limit else "")


def walk_files(folder: Path, extensions: frozenset[str]) -> list[Path]:
    """All files under ``folder`` (any depth, following links) with one of ``extensions``, sorted.

    A linked folder is entered once (a link loop, or two links to one folder, would count the same
    files again); dangling links, loops and unreadable folders are skipped with a warning."""
    from dflab.runtime.progress import warn

    found: list[Path] = []
    seen_dirs: set[tuple[int, int]] = set()
    seen_files: set[tuple[int, int]] = set()

    def unreadable(err: OSError) -> None:
        warn(f"{err.filename}: skipped, folder not readable ({err.strerror})")

    for current, dirs, files in os.walk(folder, followlinks=True, onerror=unreadable):
        stat = os.stat(current)
        if (stat.st_dev, stat.st_ino) in seen_dirs:
            warn(f"{current}: skipped, a link to a folder already scanned (a link loop?)")
            dirs[:] = []
            continue
        seen_dirs.add((stat.st_dev, stat.st_ino))
        dirs[:] = sorted(d for d in dirs if not _is_hidden(d))
        for name in sorted(files):
            if _is_hidden(name) or os.path.splitext(name)[1].lower() not in extensions:
                continue
            path = Path(current) / name
            try:
                file_stat = path.stat()
            except OSError:
                warn(f"{path}: skipped, a dangling link")
                continue
            if (file_stat.st_dev, file_stat.st_ino) in seen_files:
                warn(f"{path}: skipped, the same file as another one already listed (a link)")
                continue
            seen_files.add((file_stat.st_dev, file_stat.st_ino))
            found.append(path)
    return found
