"""An upload received: the multipart field ``file`` streamed into a private folder, its size limit
enforced while it arrives, a stalled or endless body refused (408)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from fastapi import Request

from dflab.runtime.messages import one_line
from dflab.serve.uploads import FORM_SLACK, MB, UploadRefused, display_name

#: An upload whose body stops arriving for this long (seconds) is answered 408 and its slot freed, so
#: that a client that sends its headers and stalls (a slowloris) cannot hold one of ``max_jobs``.
UPLOAD_IDLE_S = 30.0
#: ... and one still arriving after this long (seconds), however it trickles.
UPLOAD_DEADLINE_S = 600.0


async def receive_upload(request: Request, folder: Path, max_bytes: int, *, idle_s: float = UPLOAD_IDLE_S,
                         deadline_s: float = UPLOAD_DEADLINE_S) -> tuple[Path, str]:
    """Stream the multipart field ``file`` of ``request`` into ``folder``; (saved file, uploaded name).
    Refuses beyond ``max_bytes`` while the body arrives (413), and a body that stalls for ``idle_s`` or
    is not all there after ``deadline_s`` (408)."""
    from python_multipart.multipart import MultipartParser, parse_options_header

    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    if content_type != b"multipart/form-data" or not params.get(b"boundary"):
        raise UploadRefused(415, "send the file as multipart/form-data in the form field 'file'")
    length = request.headers.get("content-length")
    limit_text = f"{max_bytes / MB:g} MB"
    if length and length.isdigit() and int(length) > max_bytes + FORM_SLACK:
        raise UploadRefused(413, f"file too large ({int(length) / MB:.1f} MB > the limit of {limit_text})")

    state: dict[str, Any] = {"headers": {}, "field": b"", "value": b"", "handle": None, "name": None,
                             "size": 0, "other": 0, "error": None, "files": 0}
    target = folder / "upload.bin"

    def on_part_begin():
        state["headers"] = {}

    def on_header_field(data, start, end):
        state["field"] += data[start:end]

    def on_header_value(data, start, end):
        state["value"] += data[start:end]

    def on_header_end():
        state["headers"][state["field"].lower()] = state["value"]
        state["field"], state["value"] = b"", b""

    def on_headers_finished():
        _, options = parse_options_header(state["headers"].get(b"content-disposition", b""))
        if options.get(b"name") == b"file" and b"filename" in options:
            state["files"] += 1
            if state["files"] > 1:
                state["error"] = UploadRefused(400, "one file per request")
                return
            state["name"] = options[b"filename"].decode("utf-8", "replace")
            state["handle"] = open(target, "xb")

    def on_part_data(data, start, end):
        if state["error"] is not None:
            return
        if state["handle"] is not None and not state["handle"].closed:
            state["size"] += end - start
            if state["size"] > max_bytes:
                state["error"] = UploadRefused(413, f"file too large (more than the limit of {limit_text})")
                return
            state["handle"].write(data[start:end])
        else:
            state["other"] += end - start
            if state["other"] > FORM_SLACK:
                state["error"] = UploadRefused(413, "form fields too large")

    def on_part_end():
        if state["handle"] is not None:
            state["handle"].close()

    parser = MultipartParser(params[b"boundary"], {
        "on_part_begin": on_part_begin, "on_header_field": on_header_field, "on_header_value": on_header_value,
        "on_header_end": on_header_end, "on_headers_finished": on_headers_finished,
        "on_part_data": on_part_data, "on_part_end": on_part_end})
    loop = asyncio.get_running_loop()
    deadline = loop.time() + deadline_s
    chunks = request.stream().__aiter__()
    try:
        while True:
            wait = min(idle_s, deadline - loop.time())
            try:
                chunk = await asyncio.wait_for(chunks.__anext__(), timeout=max(0.0, wait))
            except StopAsyncIteration:
                break
            except asyncio.TimeoutError:
                stalled = f"nothing arrived for {idle_s:g} s" if wait == idle_s else f"not all there after {deadline_s:g} s"
                raise UploadRefused(408, f"upload too slow ({stalled}); send the file again",
                                    {"Connection": "close"}) from None
            if chunk:
                parser.write(chunk)
            if state["error"] is not None:
                raise state["error"]
        parser.finalize()
    except UploadRefused:
        raise
    except Exception as err:  # malformed multipart (python-multipart raises its own errors)
        raise UploadRefused(400, f"malformed multipart form ({one_line(err, limit=500)})") from None
    finally:
        if state["handle"] is not None:
            state["handle"].close()
    if state["error"] is not None:
        raise state["error"]
    if state["name"] is None:
        raise UploadRefused(400, "no file in the form (send it in the form field 'file')")
    return target, display_name(state["name"])
