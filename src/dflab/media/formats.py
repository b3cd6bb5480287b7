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


def media_files(folder: str | os.PathLike) -> list[str]:
    """Every image and video under ``folder`` (recursively), sorted. Names, not Path objects: a folder
    of 100,000 images is then a list of 10 MB, not 30."""
    media = IMAGE_EXTENSIONS | VIDEO_EXTENSIONS
    return sorted(str(p) for p in Path(folder).rglob("*") if p.suffix.lower() in media and p.is_file())
