"""What ``dflab serve`` accepts: the content sniffed from the first bytes (never the file name), display names, and the pixel/duration checks of an upload."""

from __future__ import annotations

import re
from pathlib import Path

from dflab.runtime.messages import one_line

MB = 2 ** 20


#: Multipart overhead allowed on top of the file itself (boundaries, part headers, small fields).
FORM_SLACK = 64 * 1024


class UploadRefused(Exception):
    """A request refused with an HTTP status and a one-line reason."""

    def __init__(self, status: int, detail: str, headers: dict | None = None):
        super().__init__(detail)
        self.status, self.detail, self.headers = status, detail, headers or {}


def sniff(head: bytes) -> tuple[str, str, str] | None:
    """(kind, format, suffix) of a file from its first bytes: ("image", "JPEG", ".jpg"), ("video", "MP4", ".mp4");
    None when it is neither an image nor a video this server reads."""
    if head.startswith(b"\xff\xd8\xff"):
        return "image", "JPEG", ".jpg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image", "PNG", ".png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image", "GIF", ".gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image", "WebP", ".webp"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "image", "TIFF", ".tif"
    if head[:2] == b"BM" and len(head) >= 14 and head[6:10] == b"\x00\x00\x00\x00":
        return "image", "BMP", ".bmp"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        return ("video", "QuickTime", ".mov") if brand == b"qt  " else ("video", "MP4", ".mp4")
    if head[4:8] in (b"moov", b"mdat", b"wide", b"free"):
        return "video", "QuickTime", ".mov"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "video", "Matroska/WebM", ".mkv"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "video", "AVI", ".avi"
    return None


def display_name(filename: str) -> str:
    """The uploaded file's base name, printable and short (never a path)."""
    name = re.split(r"[\\/]", filename or "")[-1]
    name = "".join(ch for ch in name if ch.isprintable()).strip()
    if name in ("", ".", ".."):
        name = "upload"
    return name[-200:]


def check_media(path: Path, name: str, limits: dict) -> tuple[str, Path, int]:
    """(kind, path with the suffix of its content, pixels of an image or 0) of a saved upload; raises
    :class:`UploadRefused`."""
    from dflab.media.images import MAX_PIXELS, probe_image

    size = path.stat().st_size
    if size == 0:
        raise UploadRefused(400, f"{name}: empty file (0 bytes)")
    with open(path, "rb") as handle:
        head = handle.read(64)
    found = sniff(head)
    if found is None:
        what = "text" if _looks_like_text(head) else "not a format this server reads"
        raise UploadRefused(415, f"{name}: not an image or a video ({what}); send JPEG, PNG, WebP, BMP, GIF, "
                                 "TIFF, MP4, MOV, MKV, WebM or AVI (the content is checked, not the file name)")
    kind, fmt, suffix = found
    saved = path.with_name("upload" + suffix)
    path.rename(saved)
    if kind == "image":
        try:
            reason = probe_image(saved)
        except Exception as err:  # PIL refuses a header of a huge image before reading it
            if "decompression bomb" in str(err).lower() or "exceeds limit" in str(err).lower():
                raise UploadRefused(413, f"{name}: image too large (refused as a possible decompression bomb)") from None
            raise UploadRefused(422, f"{name}: unreadable image ({one_line(err, limit=500)})") from None
        if reason:
            status = 413 if reason.startswith("image too large") else 422
            raise UploadRefused(status, f"{name}: {reason}")
        from PIL import Image

        with Image.open(saved) as picture:  # the header only, read again: probe_image passed
            return kind, saved, picture.width * picture.height
    from dflab.media.video import VideoError, probe

    try:
        info = probe(saved)
    except VideoError as err:
        raise UploadRefused(422, f"{name}: {err.reason}") from None
    if info.duration > limits["max_video_seconds"]:
        raise UploadRefused(413, f"{name}: video too long ({info.duration:.0f} s > the limit of "
                                 f"{limits['max_video_seconds']:g} s)")
    if info.frames > limits["max_video_frames"]:
        raise UploadRefused(413, f"{name}: video has too many frames ({info.frames} > the limit of "
                                 f"{limits['max_video_frames']})")
    if info.width * info.height > MAX_PIXELS:
        raise UploadRefused(413, f"{name}: video frames too large ({info.width}x{info.height} > {MAX_PIXELS} pixels)")
    return kind, saved, 0


def _looks_like_text(head: bytes) -> bool:
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(ch >= 32 or ch in (9, 10, 13) for ch in head)
