"""The one list of file formats: which file name endings are images and which are videos.

Every stage that walks folders (``dflab data``, ``dflab faces extract``, ``dflab predict``) asks here,
so a file is never taken by one command and skipped by another.
"""

from __future__ import annotations

import os
from pathlib import Path

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"})

#: File name endings treated as videos by folder walks (PyAV can open more; these are the usual ones).
VIDEO_EXTENSIONS = frozenset({".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv",
                              ".flv", ".3gp", ".ts"})


def is_video_path(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def media_files(folder: str | os.PathLike) -> tuple[list[str], list[tuple[str, str]]]:
    """Every image and video under ``folder`` (recursively, following links, each folder once), sorted,
    and what was left out: ``(path, reason)`` for each other file (a GIF, an unknown type, a dangling
    link, an unreadable folder), so that a run can say what it did not look at. Hidden files
    (``.DS_Store``, ``._name``) are passed over silently. Names, not Path objects: a folder of 100,000
    images is then a list of 10 MB, not 30."""
    media = IMAGE_EXTENSIONS | VIDEO_EXTENSIONS
    found: list[str] = []
    left_out: list[tuple[str, str]] = []
    seen_dirs: set[tuple[int, int]] = set()

    def unreadable(err: OSError) -> None:
        left_out.append((str(err.filename), f"folder not readable ({err.strerror})"))

    for current, dirs, files in os.walk(folder, followlinks=True, onerror=unreadable):
        stat = os.stat(current)
        if (stat.st_dev, stat.st_ino) in seen_dirs:  # a link loop, or a second link to one folder
            dirs[:] = []
            continue
        seen_dirs.add((stat.st_dev, stat.st_ino))
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if name.startswith("."):
                continue
            path = str(Path(current) / name)  # as Path.rglob wrote it: "a.jpg", not "./a.jpg" (resume keys)
            suffix = os.path.splitext(name)[1].lower()
            if not os.path.exists(path):
                left_out.append((path, "a dangling link or a link loop"))
            elif suffix in media:
                found.append(path)
            else:
                left_out.append((path, _left_out_reason(path, suffix)))
        # A link to a folder that points nowhere is listed among the files by os.walk: named above.
    return sorted(found), sorted(left_out)


def _left_out_reason(path: str, suffix: str) -> str:
    if suffix == ".gif":
        try:
            from PIL import Image

            with Image.open(path) as image:
                animated = getattr(image, "n_frames", 1) > 1
        except Exception:  # noqa: BLE001 - a broken GIF is left out all the same
            animated = False
        return ("an animated GIF: not scored (convert it to MP4 to score it as a video)" if animated
                else "a GIF: not among the image formats (save it as PNG)")
    return f"not an image or video file name ({suffix or 'no extension'})"
