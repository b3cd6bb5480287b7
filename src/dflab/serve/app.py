"""The FastAPI application of ``dflab serve``.

Every upload is a job: the file is streamed into a private temporary folder (mode 0700) with the size
limit enforced while it arrives (and a body that stalls refused with 408), its content is sniffed
(magic bytes, never the file name), images are checked against the loader's pixel limit and videos
against the duration / frame limits, then the worker (:mod:`dflab.serve.queue`, on the main thread
under ``dflab serve``) scores jobs in order with the prediction function of ``dflab predict``
(:func:`dflab.inference.predict.predict_files`; photos queued together in one batch, each answered as
alone) while the event loop keeps serving. The answer is
:func:`dflab.inference.predict.prediction_payload` (what ``dflab predict --json`` writes) with the server's
paths replaced by the uploaded file's base name and the heatmaps as PNG data URLs; the folder is
deleted whatever happens. Work in flight is bounded: beyond ``max_jobs`` a request gets 503 with
``Retry-After`` before its body is read.

API: ``POST /api/predict`` (answers when scored), ``POST /api/jobs`` + ``GET /api/jobs/{id}`` (the
page: progress while it runs), ``GET /api/model``, ``GET /api/health``; documented at ``/docs`` (a
page written from the OpenAPI schema, nothing loaded from a CDN) and ``/openapi.json``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import tempfile
import time
from pathlib import Path

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from dflab.runtime.choices import Aggregation
from dflab.runtime.messages import one_line
from dflab.serve.docs import api_docs_html
from dflab.serve.queue import JOB_TTL_S, Job, Scoring
from dflab.serve.receive import UPLOAD_DEADLINE_S, UPLOAD_IDLE_S, receive_upload
from dflab.serve.uploads import MB, UploadRefused, check_media

log = logging.getLogger("dflab.serve")


STATIC = Path(__file__).resolve().parent / "static"


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
               predict_options: dict | None = None,
               scoring_thread: bool = True, upload_idle_s: float = UPLOAD_IDLE_S,
               upload_deadline_s: float = UPLOAD_DEADLINE_S, warm_up: bool = False) -> FastAPI:
    """The application. ``scorer``: a fitted detector (default: the one ``dflab predict`` uses, the
    ready detector). ``max_jobs``: uploads admitted at a time (receiving, waiting or being scored);
    beyond it 503 with Retry-After. ``predict_options``: other :class:`dflab.inference.predict.PredictOptions`
    fields (``threshold``, ``faces``, ``face_detector``). ``upload_idle_s``, ``upload_deadline_s``: an
    upload whose body stalls that long, or is not all there after that long, is answered 408.
    ``warm_up``: run the network on every batch shape before the first upload is scored (``dflab
    serve`` does; uploads that arrive meanwhile wait) and hold memory near that size after it."""
    from dflab import __version__
    from dflab.inference.photos import resolve_threshold

    if scorer is None:
        from dflab.inference.models import load_scorer

        scorer = load_scorer(None, None, None)
    limits = {"max_video_seconds": float(max_video_seconds), "max_video_frames": int(max_video_frames)}
    # scoring_thread=False: the caller runs ``app.state.scoring.run_here()`` itself (on the main thread).
    scoring = Scoring(scorer, max_jobs=max_jobs, predict_options=dict(predict_options or {}),
                      own_thread=scoring_thread, warm_up=warm_up)
    threshold = resolve_threshold(scorer, (predict_options or {}).get("threshold"))
    framing = getattr(scorer, "face_framing", None)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        scoring.stop()

    app = FastAPI(title="dflab serve", lifespan=lifespan, version=__version__, docs_url=None, redoc_url=None,
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
              for code, text in ((400, "empty file or malformed form"), (408, "the upload stalled or was too slow"),
                                 (413, "file, image or video over a limit"), (415, "not an image or a video"),
                                 (422, "unreadable image or video, bad parameter"),
                                 (503, "busy: too many files in flight (see Retry-After)"))}

    @app.exception_handler(UploadRefused)
    async def _refused(request: Request, err: UploadRefused):
        return JSONResponse({"detail": err.detail}, status_code=err.status, headers=err.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, err: StarletteHTTPException):
        return JSONResponse({"detail": one_line(err.detail, limit=500)}, status_code=err.status_code,
                            headers=getattr(err, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, err: RequestValidationError):
        parts = []
        for e in err.errors():
            where = ".".join(str(p) for p in e.get("loc", ()) if p not in ("query", "path", "body"))
            parts.append(f"{where}: {e.get('msg', 'invalid')}" if where else e.get("msg", "invalid"))
        return JSONResponse({"detail": one_line("; ".join(parts) or "invalid request", limit=500)}, status_code=422)

    @app.exception_handler(Exception)
    async def _bug(request: Request, err: Exception):
        log.exception("request %s failed", request.url.path)
        return JSONResponse({"detail": f"internal error ({type(err).__name__}); see the server log"}, status_code=500)

    @app.middleware("http")
    async def _headers(request: Request, call_next):
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
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
            saved, name = await receive_upload(request, folder, max_upload_bytes, idle_s=upload_idle_s,
                                               deadline_s=upload_deadline_s)
            try:
                kind, saved, pixels = await asyncio.to_thread(check_media, saved, name, limits)
            except UploadRefused:
                raise
            except Exception as err:  # a reader failing in a way not foreseen: still the file's fault
                log.exception("checking %s failed", name)
                raise UploadRefused(422, f"{name}: cannot read the file ({type(err).__name__})") from None
            job = Job(id=secrets.token_urlsafe(12), folder=folder, file=saved, name=name, kind=kind, options=options,
                      pixels=pixels)
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
        from dflab.runtime.memory import resident_mb

        resident = resident_mb()
        return {"status": "ok", "version": __version__, "model": scorer.name,
                "in_flight": admitted, "queued": waiting, "limit": max_jobs, "served": scoring.served,
                "memory_mb": None if resident is None else round(resident, 1),
                "memory_ceiling_mb": None if scoring.memory.limit_mb is None else round(scoring.memory.limit_mb, 1),
                "memory_releases": scoring.memory.releases}

    @app.get("/docs", include_in_schema=False)
    async def docs():
        return HTMLResponse(api_docs_html(app.openapi()))

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
