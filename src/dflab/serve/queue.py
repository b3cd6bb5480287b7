"""The server's work queue: jobs with progress, scored on the main thread with the shared prediction
function; results kept briefly for polling.

Photos scored face by face (the ready detector) are taken from the queue together, up to
:data:`BATCH_JOBS` of them and :data:`BATCH_PIXELS` pixels: what waits while a batch is scored forms
the next one, so under load the network sees large batches and an upload alone waits for nothing.
Videos, and photos of a model that scores the picture whole, are scored one at a time."""

from __future__ import annotations

import logging
import math
import shutil
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dflab.inference.photos import score_photos
from dflab.serve.answers import answer_job
from dflab.serve.memory import MemoryCeiling
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


#: Side of the generated pictures the warm-up runs the face detector on.
WARM_UP_SIDE = 224


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
            self._guarded(job, lambda: answer_job(job, result, self.scorer.name))

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
        answer_job(job, predict_files(self.scorer, [job.file], options, on_frames=on_frames), self.scorer.name)
