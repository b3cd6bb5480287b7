"""The server's work queue: jobs with progress, scored on the main thread with the shared prediction
function; results kept briefly for polling.

Photos scored face by face (the ready detector) are taken from the queue together, up to
:data:`BATCH_JOBS` of them and :data:`BATCH_PIXELS` pixels: what waits while a batch is scored forms
the next one, so under load the network sees large batches and an upload alone waits for nothing.
Videos, and photos of a model that scores the picture whole, are scored one at a time."""

from __future__ import annotations

import base64
import logging
import math
import shutil
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dflab.runtime.messages import one_line
from dflab.inference.photos import score_photos
from dflab.serve.uploads import UploadRefused

log = logging.getLogger("dflab.serve")


#: Finished jobs are kept this long (seconds) for ``GET /api/jobs/{id}``, and at most this many
#: (``POST /api/predict`` jobs are dropped once answered).
JOB_TTL_S = 300


JOB_KEEP = 32


#: Photos scored in one batch at most (one face-detector call, one network call for all their faces) ...
BATCH_JOBS = 16
#: ... holding at most this many pixels together (a photo larger than that is scored alone).
BATCH_PIXELS = 64_000_000


#: Resident memory may grow this much past its size after the warm-up before the freed memory
#: inside the heap is handed back (see :class:`MemoryCeiling`).
MEMORY_SLACK = 0.10


#: Side of the generated pictures the warm-up runs the face detector on.
WARM_UP_SIDE = 224


class MemoryCeiling:
    """Keeps the server's resident memory near its size after the warm-up.

    The process keeps freed memory for speed (:func:`dflab.runtime.memory.keep_freed_memory`); with
    batches of changing shapes its heap fragments and grows for hundreds of requests. Past the
    ceiling the freed memory is handed back (:func:`~dflab.runtime.memory.release_freed_memory`),
    which costs page faults on the next batch, so it is done only then, not after every batch."""

    def __init__(self, slack: float = MEMORY_SLACK):
        self.slack = slack
        self.limit_mb: float | None = None
        self.releases = 0

    def set_from_now(self) -> None:
        from dflab.runtime.memory import resident_mb

        resident = resident_mb()
        self.limit_mb = None if resident is None else resident * (1 + self.slack)

    def check(self) -> None:
        from dflab.runtime.memory import release_freed_memory, resident_mb

        resident = resident_mb()
        if self.limit_mb is not None and resident is not None and resident > self.limit_mb:
            if release_freed_memory():
                self.releases += 1
                log.info("resident memory %.0f MB over %.0f MB: freed memory handed back", resident, self.limit_mb)


@dataclass
class Job:
    id: str
    folder: Path
    file: Path
    name: str
    kind: str
    options: dict
    pixels: int = 0  # of a photo (width x height): bounds the memory of a batch
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
    """One worker scoring jobs in order, photos in batches; at most ``max_jobs`` uploads admitted at a time."""

    def __init__(self, scorer, *, max_jobs: int, predict_options: dict, own_thread: bool = True,
                 warm_up: bool = False):
        from dflab.inference.predict import photo_framing

        self.scorer = scorer
        self.max_jobs = max_jobs
        self.predict_options = predict_options
        self.lock = threading.Lock()
        self.admitted = 0
        self.jobs: OrderedDict[str, Job] = OrderedDict()
        self.waiting: deque[Job] = deque()  # submitted, not yet taken by the worker
        self.arrived = threading.Condition(self.lock)
        self.stopping = False
        self.photos_by_face = photo_framing(scorer, self.predict_options.get("faces", "auto"))[1]
        self.job_seconds = 1.0  # running mean of a job's scoring time (for Retry-After)
        self.served = 0
        self.warm_up_first = warm_up
        self.memory = MemoryCeiling()
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
            self.waiting.append(job)
            self.arrived.notify()

    def get(self, job_id: str) -> tuple[Job | None, int | None]:
        with self.lock:
            job = self.jobs.get(job_id)
            position = next((i for i, waiting in enumerate(self.waiting) if waiting.id == job_id), None)
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
        """The worker returns once the jobs already submitted are scored."""
        with self.lock:
            self.stopping = True
            self.arrived.notify()

    def discard_waiting(self) -> int:
        """On shutdown: the jobs not yet taken are failed (503) and their uploads deleted, so that a
        stopped server leaves no upload behind; how many there were."""
        with self.lock:
            dropped, self.waiting = list(self.waiting), deque()
        for job in dropped:
            shutil.rmtree(job.folder, ignore_errors=True)
            job.status, job.http_status, job.error = "failed", 503, "the server stopped before scoring this file"
            job.finished = time.monotonic()
            self.release()
            for wake in list(job.waiters):
                wake()
        return len(dropped)

    def _next_batch(self) -> list[Job]:
        """The oldest job, and with a photo the photos queued right behind it (within the batch limits);
        waits for one; [] once stopped and nothing is left."""
        with self.lock:
            while not self.waiting and not self.stopping:
                self.arrived.wait()
            if not self.waiting:
                return []
            batch = [self.waiting.popleft()]
            if self._batches(batch[0]):
                pixels = batch[0].pixels
                while (self.waiting and len(batch) < BATCH_JOBS and self._batches(self.waiting[0])
                       and pixels + self.waiting[0].pixels <= BATCH_PIXELS):
                    pixels += self.waiting[0].pixels
                    batch.append(self.waiting.popleft())
            return batch

    def _batches(self, job: Job) -> bool:
        return job.kind == "image" and self.photos_by_face

    def warm_up(self) -> None:
        """Runs the face detector on a batch of generated pictures and the network on every batch
        size photos are scored in (:func:`~dflab.inference.photos.network_batch_sizes`), then sets the
        memory ceiling: the first uploads do not pay for the one-off work of new shapes, and memory
        starts near its working size. A failure here is logged; the server scores anyway."""
        import numpy as np

        from dflab.data.synthetic.faces import make_face
        from dflab.inference.photos import network_batch_sizes

        started = time.monotonic()
        try:
            rng = np.random.default_rng(0)
            if self.photos_by_face:
                from dflab.faces.finder import get_face_detector

                pictures = [make_face(rng, WARM_UP_SIDE) for _ in range(BATCH_JOBS)]
                get_face_detector(self.predict_options.get("face_detector", "mtcnn")).detect_batch(pictures)
                counts = network_batch_sizes()
            else:
                counts = [1]
            crop = make_face(rng, WARM_UP_SIDE)
            for count in counts:
                self.scorer.predict_proba([crop] * count, on_error="nan")
        except Exception:
            log.exception("warm-up failed; scoring without it")
        self.memory.set_from_now()
        log.info("warm-up took %.1f s", time.monotonic() - started)

    def _run(self) -> None:
        if self.warm_up_first:
            self.warm_up()
        while True:
            batch = self._next_batch()
            if not batch:
                return
            started = time.monotonic()
            for job in batch:
                job.status, job.started = "running", started
            try:
                if len(batch) > 1:
                    self._score_photos(batch)
                else:
                    self._score_alone(batch[0])
            finally:
                for job in batch:
                    shutil.rmtree(job.folder, ignore_errors=True)
                    job.status = "done" if job.result is not None else "failed"
                    job.finished = time.monotonic()
                    self.served += 1
                    self.release()
                    for wake in list(job.waiters):
                        wake()
                self.job_seconds = 0.8 * self.job_seconds + 0.2 * (time.monotonic() - started) / len(batch)
                self.memory.check()

    def _score_alone(self, job: Job) -> None:
        self._guarded(job, lambda: self._score(job))

    @staticmethod
    def _guarded(job: Job, work) -> None:
        try:
            work()
        except Exception as err:  # a bug, not a bad file: logged here, one line to the client
            log.exception("scoring %s failed", job.name)
            job.http_status, job.error = 500, f"internal error while scoring ({type(err).__name__}); see the server log"

    def _score_photos(self, batch: list[Job]) -> None:
        """Photos scored together; should that fail (a bug), each is scored alone, so that one file
        cannot fail the others."""
        from dflab.inference.photos import resolve_threshold
        from dflab.inference.predict import photo_framing, photo_rows

        options = self.predict_options
        threshold = resolve_threshold(self.scorer, options.get("threshold"))
        framing, _ = photo_framing(self.scorer, options.get("faces", "auto"))
        for job in batch:
            job.total_frames = 1
        try:
            photos = score_photos(self.scorer, [job.file for job in batch], framing=framing, threshold=threshold,
                                  face_detector=options.get("face_detector", "mtcnn"),
                                  heatmap_dirs=[self._heatmap_dir(job) for job in batch])
        except Exception:
            log.exception("scoring %d photos together failed; scoring them one by one", len(batch))
            for job in batch:
                self._score_alone(job)
            return
        for job, photo in zip(batch, photos):
            result = {"threshold": threshold, "framing": framing.to_info(), "rows": photo_rows(job.file, photo),
                      "photos": [photo], "videos": []}
            self._guarded(job, lambda: self._answer(job, result))

    @staticmethod
    def _heatmap_dir(job: Job) -> Path | None:
        return job.folder / "heatmaps" if job.options.get("heatmap", True) else None

    def _score(self, job: Job) -> None:
        from dflab.inference.predict import PredictOptions, predict_files

        heatmaps = self._heatmap_dir(job)

        def on_frames(done: int, total: int) -> None:
            job.done_frames, job.total_frames = done, total

        options = PredictOptions(frames=job.options.get("frames", 32),
                                 aggregation=job.options.get("aggregation", "mean_prob"), heatmap_dir=heatmaps,
                                 **self.predict_options)
        if job.kind == "image":
            job.total_frames = 1
        self._answer(job, predict_files(self.scorer, [job.file], options, on_frames=on_frames))

    def _answer(self, job: Job, result: dict) -> None:
        """The job's result (or its 422) from a :func:`~dflab.inference.predict.predict_files` result for its file."""
        from dflab.inference.predict import prediction_payload

        details = result["photos"] + result["videos"]
        if details and details[0]["status"] == "error":
            job.http_status, job.error = 422, one_line(f"{job.name}: {details[0]['reason'] or 'unreadable'}", limit=500)
            return
        if not details and result["rows"] and result["rows"][0]["verdict"] == "error":
            job.http_status, job.error = 422, one_line(f"{job.name}: {result['rows'][0]['error']}", limit=500)
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


#: Largest side of a photo heatmap sent back (bigger ones are scaled down for the answer only).
HEATMAP_MAX_SIDE = 1600


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
