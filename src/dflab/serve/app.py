"""The FastAPI application of ``dflab serve``.

Every upload is a job: the file is streamed into a private temporary folder (mode 0700) with the size
limit enforced while it arrives, its content is sniffed (magic bytes, never the file name), images
are checked against the loader's pixel limit and videos against the duration / frame limits, then one
worker thread scores jobs one at a time with :func:`dflab.predict.predict_files` (the function of
``dflab predict``; the model uses both cores) while the event loop keeps serving. The answer is
:func:`dflab.predict.prediction_payload` (what ``dflab predict --json`` writes) with the server's
paths replaced by the uploaded file's base name and the heatmaps as PNG data URLs; the folder is
deleted whatever happens. Work in flight is bounded: beyond ``max_jobs`` a request gets 503 with
``Retry-After`` before its body is read.

API: ``POST /api/predict`` (answers when scored), ``POST /api/jobs`` + ``GET /api/jobs/{id}`` (the
page: progress while it runs), ``GET /api/model``, ``GET /api/health``; documented at ``/docs``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import math
import os
import queue
import re
import secrets
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Callable

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("dflab.serve")

STATIC = Path(__file__).resolve().parent / "static"
MB = 2 ** 20
#: Multipart overhead allowed on top of the file itself (boundaries, part headers, small fields).
FORM_SLACK = 64 * 1024
#: Finished jobs are kept this long (seconds) for ``GET /api/jobs/{id}``, and at most this many
#: (``POST /api/predict`` jobs are dropped once answered).
JOB_TTL_S = 300
JOB_KEEP = 32
#: Largest side of a photo heatmap sent back (bigger ones are scaled down for the answer only).
HEATMAP_MAX_SIDE = 1600

_IMAGE_KINDS = {"JPEG": ".jpg", "PNG": ".png", "GIF": ".gif", "BMP": ".bmp", "WebP": ".webp", "TIFF": ".tif"}


class Aggregation(str, Enum):
    mean_prob = "mean_prob"
    mean_logit = "mean_logit"
    confident = "confident"


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


def _one_line(text: str) -> str:
    text = " ".join(str(text).split())
    return text[:500] or "error"


@dataclass
class Job:
    id: str
    folder: Path
    file: Path
    name: str
    kind: str
    options: dict
    status: str = "queued"  # queued | running | done | failed
    created: float = field(default_factory=time.monotonic)
    started: float | None = None
    finished: float | None = None
    done_frames: int = 0
    total_frames: int = 0
    http_status: int = 200
    result: dict | None = None
    error: str = ""
    fetched: float | None = None  # when its result was first sent to a poller
    waiters: list = field(default_factory=list)

    def public(self, position: int | None = None) -> dict:
        out: dict[str, Any] = {"id": self.id, "status": self.status, "kind": self.kind, "file": self.name,
                               "progress": {"done": self.done_frames, "total": self.total_frames,
                                            "unit": "frames" if self.kind == "video" else "files"}}
        if position is not None:
            out["position"] = position
        if self.status == "done":
            out["result"] = self.result
        if self.status == "failed":
            out["error"] = {"status": self.http_status, "detail": self.error}
        return out


class Scoring:
    """One worker thread scoring jobs in order; at most ``max_jobs`` uploads admitted at a time."""

    def __init__(self, scorer, *, max_jobs: int, predict_options: dict, own_thread: bool = True):
        self.scorer = scorer
        self.max_jobs = max_jobs
        self.predict_options = predict_options
        self.lock = threading.Lock()
        self.admitted = 0
        self.jobs: OrderedDict[str, Job] = OrderedDict()
        self.pending: queue.Queue[Job | None] = queue.Queue()
        self.waiting: list[str] = []
        self.job_seconds = 1.0  # running mean of a job's scoring time (for Retry-After)
        self.served = 0
        self.thread = None
        if own_thread:
            self.thread = threading.Thread(target=self._run, name="dflab-serve-worker", daemon=True)
            self.thread.start()

    def run_here(self) -> None:
        """Score on the calling thread until :meth:`stop` (``dflab serve`` scores on the main thread)."""
        self._run()

    # -- admission ------------------------------------------------------------------------------

    def admit(self) -> None:
        with self.lock:
            if self.admitted >= self.max_jobs:
                retry = max(1, math.ceil(self.job_seconds * max(1, len(self.waiting))))
                raise UploadRefused(503, f"busy: {self.admitted} files in flight (limit {self.max_jobs}); "
                                         f"retry in {retry} s", {"Retry-After": str(retry)})
            self.admitted += 1

    def release(self) -> None:
        with self.lock:
            self.admitted -= 1

    # -- jobs -----------------------------------------------------------------------------------

    def submit(self, job: Job) -> None:
        with self.lock:
            self._prune()
            self.jobs[job.id] = job
            self.waiting.append(job.id)
        self.pending.put(job)

    def get(self, job_id: str) -> tuple[Job | None, int | None]:
        with self.lock:
            job = self.jobs.get(job_id)
            position = self.waiting.index(job_id) if job is not None and job_id in self.waiting else None
        return job, position

    def forget(self, job_id: str) -> None:
        with self.lock:
            self.jobs.pop(job_id, None)

    def _prune(self) -> None:
        """Finished jobs go after JOB_TTL_S, 30 s after their result was fetched, or oldest first
        beyond JOB_KEEP (their results hold the heatmaps)."""
        now = time.monotonic()
        finished = [j for j in self.jobs.values() if j.finished is not None]
        for job in list(finished):
            fetched = job.fetched is not None and now - job.fetched > 30
            if fetched or now - job.finished > JOB_TTL_S or len(finished) > JOB_KEEP:
                self.jobs.pop(job.id, None)
                finished.remove(job)

    def stop(self) -> None:
        self.pending.put(None)

    def _run(self) -> None:
        while True:
            job = self.pending.get()
            if job is None:
                return
            with self.lock:
                if job.id in self.waiting:
                    self.waiting.remove(job.id)
            job.status, job.started = "running", time.monotonic()
            try:
                self._score(job)
            except Exception as err:  # a bug, not a bad file: logged here, one line to the client
                log.exception("scoring %s failed", job.name)
                job.http_status, job.error = 500, f"internal error while scoring ({type(err).__name__}); see the server log"
            finally:
                shutil.rmtree(job.folder, ignore_errors=True)
                job.status = "done" if job.result is not None else "failed"
                job.finished = time.monotonic()
                self.job_seconds = 0.8 * self.job_seconds + 0.2 * (job.finished - job.started)
                self.served += 1
                self.release()
                for wake in list(job.waiters):
                    wake()

    def _score(self, job: Job) -> None:
        from dflab.predict import PredictOptions, predict_files, prediction_payload

        heatmaps = job.folder / "heatmaps" if job.options.get("heatmap", True) else None

        def on_frames(done: int, total: int) -> None:
            job.done_frames, job.total_frames = done, total

        options = PredictOptions(frames=job.options.get("frames", 32),
                                 aggregation=job.options.get("aggregation", "mean_prob"), heatmap_dir=heatmaps,
                                 **self.predict_options)
        if job.kind == "image":
            job.total_frames = 1
        result = predict_files(self.scorer, [job.file], options, on_frames=on_frames)
        details = result["photos"] + result["videos"]
        if details and details[0]["status"] == "error":
            job.http_status, job.error = 422, _one_line(f"{job.name}: {details[0]['reason'] or 'unreadable'}")
            return
        if not details and result["rows"] and result["rows"][0]["verdict"] == "error":
            job.http_status, job.error = 422, _one_line(f"{job.name}: {result['rows'][0]['error']}")
            return
        if job.kind == "image":
            job.done_frames = 1
        payload = prediction_payload(result, self.scorer.name)
        job.result = self._public_payload(payload, job)

    def _public_payload(self, payload: dict, job: Job) -> dict:
        """No server path in the answer: paths become the uploaded base name, heatmaps data URLs."""
        for row in payload["results"]:
            row["path"] = job.name
        for photo in payload["photos"]:
            photo["path"] = job.name
            photo["heatmap"] = _png_data_url(photo.get("heatmap"), HEATMAP_MAX_SIDE)
        for video in payload["videos"]:
            video["video"] = job.name
            video["heatmaps"] = [url for url in (_png_data_url(p, HEATMAP_MAX_SIDE) for p in video.get("heatmaps") or [])
                                 if url]
        if job.kind == "image" and not payload["photos"]:  # scored as a whole image (a face crop)
            whole = job.folder / "heatmaps" / f"{job.file.stem}_heatmap.png"
            payload["heatmap"] = _png_data_url(whole if whole.is_file() else None, HEATMAP_MAX_SIDE)
        payload["kind"] = job.kind
        payload["file"] = job.name
        payload["elapsed_s"] = round(time.monotonic() - (job.started or job.created), 3)
        return payload


def _png_data_url(path, max_side: int) -> str | None:
    if not path:
        return None
    data = Path(path).read_bytes()
    import cv2
    import numpy as np

    picture = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if picture is not None and max(picture.shape[:2]) > max_side:
        factor = max_side / max(picture.shape[:2])
        picture = cv2.resize(picture, (round(picture.shape[1] * factor), round(picture.shape[0] * factor)),
                             interpolation=cv2.INTER_AREA)
        ok, encoded = cv2.imencode(".png", picture)
        if ok:
            data = encoded.tobytes()
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


# -- receiving an upload ------------------------------------------------------------------------

async def receive_upload(request: Request, folder: Path, max_bytes: int) -> tuple[Path, str]:
    """Stream the multipart field ``file`` of ``request`` into ``folder``; (saved file, uploaded name).
    Refuses beyond ``max_bytes`` while the body arrives (413)."""
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
        disposition, options = parse_options_header(state["headers"].get(b"content-disposition", b""))
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
    try:
        async for chunk in request.stream():
            if chunk:
                parser.write(chunk)
            if state["error"] is not None:
                raise state["error"]
        parser.finalize()
    except UploadRefused:
        raise
    except Exception as err:  # malformed multipart (python-multipart raises its own errors)
        raise UploadRefused(400, f"malformed multipart form ({_one_line(err)})") from None
    finally:
        if state["handle"] is not None:
            state["handle"].close()
    if state["error"] is not None:
        raise state["error"]
    if state["name"] is None:
        raise UploadRefused(400, "no file in the form (send it in the form field 'file')")
    return target, display_name(state["name"])


def check_media(path: Path, name: str, limits: dict) -> tuple[str, Path]:
    """(kind, path with the suffix of its content) of a saved upload; raises :class:`UploadRefused`."""
    from dflab.images import MAX_PIXELS, probe_image

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
            raise UploadRefused(422, f"{name}: unreadable image ({_one_line(err)})") from None
        if reason:
            status = 413 if reason.startswith("image too large") else 422
            raise UploadRefused(status, f"{name}: {reason}")
        return kind, saved
    from dflab.video import VideoError, probe

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
    return kind, saved


def _looks_like_text(head: bytes) -> bool:
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(ch >= 32 or ch in (9, 10, 13) for ch in head)


# -- the application ----------------------------------------------------------------------------

def _model_card(scorer) -> str:
    card = getattr(scorer, "card", None)
    if callable(card):
        try:
            return card() or ""
        except Exception:  # a card that cannot be read is not a reason to fail
            return ""
    return ""


def create_app(scorer=None, *, max_upload_bytes: int = 200 * MB, max_jobs: int = 32,
               max_video_seconds: float = 600.0, max_video_frames: int = 100_000, max_frames: int = 256,
               predict_options: dict | None = None, model_loader: Callable[[], Any] | None = None,
               scoring_thread: bool = True) -> FastAPI:
    """The application. ``scorer``: a fitted detector (default: the one ``dflab predict`` uses, the
    ready detector). ``max_jobs``: uploads admitted at a time (receiving, waiting or being scored);
    beyond it 503 with Retry-After. ``predict_options``: other :class:`dflab.predict.PredictOptions`
    fields (``threshold``, ``faces``, ``face_detector``)."""
    from dflab import __version__
    from dflab.predict import model_threshold

    if scorer is None:
        if model_loader is None:
            from dflab.cli import _load_model

            scorer = _load_model(None, None, None)
        else:
            scorer = model_loader()
    limits = {"max_video_seconds": float(max_video_seconds), "max_video_frames": int(max_video_frames)}
    # scoring_thread=False: the caller runs ``app.state.scoring.run_here()`` itself (on the main thread).
    scoring = Scoring(scorer, max_jobs=max_jobs, predict_options=dict(predict_options or {}),
                      own_thread=scoring_thread)
    threshold = model_threshold(scorer) if (predict_options or {}).get("threshold") is None \
        else float(predict_options["threshold"])
    framing = getattr(scorer, "face_framing", None)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        scoring.stop()

    app = FastAPI(title="dflab serve", lifespan=lifespan, version=__version__,
                  description="Deepfake detection: upload a photo or a video, get P(fake) per face / per video "
                              "with the model's threshold, the explanation heatmaps and the video's per-frame scores. "
                              "`POST /api/predict` answers with the fields `dflab predict --json` writes.")
    app.state.scoring = scoring
    app.state.max_upload_bytes = max_upload_bytes
    upload_body = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": ["file"],
        "properties": {"file": {"type": "string", "format": "binary",
                                "description": "An image (JPEG, PNG, WebP, BMP, GIF, TIFF) or a video "
                                               "(MP4, MOV, MKV, WebM, AVI)."}}}}}}}
    errors = {code: {"description": text, "content": {"application/json": {"example": {"detail": "one-line reason"}}}}
              for code, text in ((400, "empty file or malformed form"), (413, "file, image or video over a limit"),
                                 (415, "not an image or a video"), (422, "unreadable image or video, bad parameter"),
                                 (503, "busy: too many files in flight (see Retry-After)"))}

    @app.exception_handler(UploadRefused)
    async def _refused(request: Request, err: UploadRefused):
        return JSONResponse({"detail": err.detail}, status_code=err.status, headers=err.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, err: StarletteHTTPException):
        return JSONResponse({"detail": _one_line(err.detail)}, status_code=err.status_code,
                            headers=getattr(err, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, err: RequestValidationError):
        parts = []
        for e in err.errors():
            where = ".".join(str(p) for p in e.get("loc", ()) if p not in ("query", "path", "body"))
            parts.append(f"{where}: {e.get('msg', 'invalid')}" if where else e.get("msg", "invalid"))
        return JSONResponse({"detail": _one_line("; ".join(parts) or "invalid request")}, status_code=422)

    @app.exception_handler(Exception)
    async def _bug(request: Request, err: Exception):
        log.exception("request %s failed", request.url.path)
        return JSONResponse({"detail": f"internal error ({type(err).__name__}); see the server log"}, status_code=500)

    @app.middleware("http")
    async def _headers(request: Request, call_next):
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        if not request.url.path.startswith(("/docs", "/redoc")):
            response.headers.setdefault(
                "Content-Security-Policy", "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
                                           "style-src 'self'; script-src 'self'; object-src 'none'; frame-ancestors 'none'")
        return response

    async def accept(request: Request, options: dict) -> Job:
        scoring.admit()
        folder = Path(tempfile.mkdtemp(prefix="dflab-serve-"))  # mode 0700: private to this user
        handed_over = False
        try:
            os.chmod(folder, 0o700)
            saved, name = await receive_upload(request, folder, max_upload_bytes)
            try:
                kind, saved = await asyncio.to_thread(check_media, saved, name, limits)
            except UploadRefused:
                raise
            except Exception as err:  # a reader failing in a way not foreseen: still the file's fault
                log.exception("checking %s failed", name)
                raise UploadRefused(422, f"{name}: cannot read the file ({type(err).__name__})") from None
            job = Job(id=secrets.token_urlsafe(12), folder=folder, file=saved, name=name, kind=kind, options=options)
            scoring.submit(job)
            handed_over = True
            return job
        finally:
            if not handed_over:
                shutil.rmtree(folder, ignore_errors=True)
                scoring.release()

    def request_options(frames: int, aggregation: Aggregation, heatmap: bool) -> dict:
        return {"frames": frames, "aggregation": Aggregation(aggregation).value, "heatmap": heatmap}

    frames_query = Query(32, ge=1, le=max_frames, description="Videos: frames sampled evenly over the video.")
    aggregation_query = Query(Aggregation.mean_prob, description="Videos: how frame scores make the video's P(fake).")
    heatmap_query = Query(True, description="Also send the explanation heatmaps (PNG data URLs).")

    @app.post("/api/predict", openapi_extra=upload_body, responses=errors, tags=["predict"])
    async def predict(request: Request, frames: int = frames_query, aggregation: Aggregation = aggregation_query,
                      heatmap: bool = heatmap_query):
        """Score one uploaded image or video and answer when done: the fields of `dflab predict --json`
        (`detector`, `threshold`, `framing`, `results`, `photos`, `videos`; paths are the uploaded
        file's name) plus `kind`, `file`, `elapsed_s`; heatmaps are PNG data URLs."""
        job = await accept(request, request_options(frames, aggregation, heatmap))
        try:
            await _wait(job)
        finally:
            scoring.forget(job.id)
        if job.result is None:
            return JSONResponse({"detail": job.error}, status_code=job.http_status)
        return job.result

    @app.post("/api/jobs", status_code=202, openapi_extra=upload_body, responses=errors, tags=["predict"])
    async def submit(request: Request, frames: int = frames_query, aggregation: Aggregation = aggregation_query,
                     heatmap: bool = heatmap_query):
        """Like `/api/predict`, but answers at once with a job id; poll `GET /api/jobs/{id}`."""
        job = await accept(request, request_options(frames, aggregation, heatmap))
        _, position = scoring.get(job.id)
        return JSONResponse(job.public(position), status_code=202)

    @app.get("/api/jobs/{job_id}", tags=["predict"], responses={404: {"description": "no such job"}})
    async def job_status(job_id: str):
        """A job's status (`queued`, `running`, `done`, `failed`), progress (videos: frames done / total),
        and its result (`done`) or error (`failed`: the HTTP status and reason `/api/predict` would give)."""
        job, position = scoring.get(job_id)
        if job is None:
            raise UploadRefused(404, f"no such job (results are kept {JOB_TTL_S // 60} minutes, "
                                     "30 s once fetched)")
        if job.finished is not None and job.fetched is None:
            job.fetched = time.monotonic()
        return job.public(position)

    @app.get("/api/model", tags=["model"])
    async def model():
        """The model that scores: name, model card (Markdown), decision threshold on P(fake), face framing."""
        return {"name": scorer.name, "card": _model_card(scorer), "threshold": threshold,
                "framing": framing.to_info() if framing is not None else None,
                "limits": {"max_upload_bytes": max_upload_bytes, "max_jobs": max_jobs, **limits,
                           "max_frames": max_frames}}

    @app.get("/api/health", tags=["model"])
    async def health():
        """Liveness: the model's name and the work in flight."""
        with scoring.lock:
            admitted, waiting = scoring.admitted, len(scoring.waiting)
        return {"status": "ok", "version": __version__, "model": scorer.name,
                "in_flight": admitted, "queued": waiting, "limit": max_jobs, "served": scoring.served}

    @app.get("/", include_in_schema=False)
    async def index():
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    return app


async def _wait(job: Job) -> None:
    loop = asyncio.get_running_loop()
    finished = asyncio.Event()
    job.waiters.append(lambda: loop.call_soon_threadsafe(finished.set))
    if job.finished is None:
        await finished.wait()
