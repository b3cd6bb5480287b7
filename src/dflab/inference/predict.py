"""One prediction function for every front end (``dflab predict``, the Python API, a server):
files in, one row per face / image / video out, with the per-photo and per-video details.

Photos are scored face by face when the model records how its training crops frame a face (the
ready detector does) or when asked (``faces="detect"``); otherwise an image is scored as it is
given (a face crop). Videos: frames sampled evenly, faces followed as persons, each person's frames scored and
aggregated, the video as fake as its most-fake person.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Collection, Iterator, Sequence

import numpy as np

from dflab.faces.framing import FaceFraming
from dflab.inference.photos import resolve_threshold, score_photo_batches, verdict_of
from dflab.media.formats import is_video_path

#: One row per face (photos), per image (``faces="whole"``) or per video.
PREDICTION_COLUMNS = ["path", "face", "box", "p_fake", "verdict", "error"]


#: The framing of dflab's own face crops (`dflab faces extract`), for models that record none.
DEFAULT_FRAMING = FaceFraming(scale=1.3)
#: Files scored per step of :func:`predict_in_chunks`: memory is bounded by one chunk, not the input.
PREDICT_CHUNK = 512


@dataclass(frozen=True)
class PredictOptions:
    #: Decision threshold on P(fake); None: the model's validation EER threshold, else 0.5.
    threshold: float | None = None
    faces: str = "auto"  # auto | detect | whole
    frames: int = 32
    aggregation: str = "mean_prob"
    face_detector: str = "mtcnn"
    heatmap_dir: Path | None = None


def photo_framing(scorer, faces: str) -> tuple[FaceFraming | None, bool]:
    """(the face framing, whether photos are scored face by face) for :attr:`PredictOptions.faces`."""
    framing = scorer.face_framing
    if faces == "detect" and framing is None:
        framing = DEFAULT_FRAMING
    return framing, faces == "detect" or (faces == "auto" and framing is not None)


def photo_rows(image, result: dict) -> list[dict]:
    """The rows of one photo scored face by face (a :func:`dflab.inference.photos.score_photos` result)."""
    rows = []
    if result["status"] != "ok":
        verdict = "no face" if result["status"] == "no_face" else "error"
        rows.append(_row(image, p_fake=float("nan"), verdict=verdict, error=result["reason"]))
    for face in result["faces"]:
        rows.append(_row(image, face=face["face"], box=" ".join(f"{v:.0f}" for v in face["box"]),
                         p_fake=face["p_fake"], verdict=face["verdict"]))
    return rows


def predict_files(scorer, files: Sequence[str | Path], options: PredictOptions = PredictOptions(), *,
                  on_frames: Callable[[int, int], None] | None = None) -> dict:
    """Score ``files`` (images and videos, told apart by suffix). Never raises for a bad file: its row
    says ``error`` (or ``no face``) and why. ``on_frames(done, total)`` reports video progress.

    Returns ``{"threshold", "framing", "rows": [...], "photos": [...], "videos": [...]}``."""
    from dflab.inference.video import predict_video
    from dflab.media.images import failure_reason
    from dflab.runtime.progress import track

    threshold = resolve_threshold(scorer, options.threshold)
    framing, detect_faces = photo_framing(scorer, options.faces)
    files = [Path(f) for f in files]
    videos = [f for f in files if is_video_path(f)]
    images = [f for f in files if not is_video_path(f)]
    rows, photos, video_details = [], [], []
    if detect_faces:
        results = score_photo_batches(scorer, images, framing=framing, threshold=threshold,
                                      face_detector=options.face_detector, heatmap_dir=options.heatmap_dir)
        for image, result in zip(images, track(results, "photos", total=len(images))):
            photos.append(result)
            rows.extend(photo_rows(image, result))
    elif images:
        scores = scorer.predict_proba([str(f) for f in images], on_error="nan")
        for image, p_fake in zip(images, scores):
            rows.append(_row(image, p_fake=float(p_fake), verdict=verdict_of(p_fake, threshold),
                             error=failure_reason(str(image)) if np.isnan(p_fake) else ""))
        if options.heatmap_dir is not None:
            _whole_image_heatmaps(scorer, images, scores, Path(options.heatmap_dir))
    for video in track(videos, "videos"):
        result = predict_video(scorer, video, n_frames=options.frames, face_detector=options.face_detector,
                               aggregation=options.aggregation, heatmap_dir=options.heatmap_dir, framing=framing,
                               on_frames=on_frames)
        ok = result["status"] == "ok" and result["p_fake"] == result["p_fake"]
        verdict = verdict_of(result["p_fake"], threshold) if ok else \
            ("no face" if result["status"] == "no_face" else "error")
        rows.append(_row(video, face="" if result["person"] is None else result["person"], p_fake=result["p_fake"],
                         verdict=verdict, error="" if ok else (result.get("reason") or result["status"])))
        video_details.append(result)
        if on_frames is not None:
            on_frames(result["frames"], result["frames"])
    return {"threshold": threshold, "framing": framing.to_info() if framing else None, "rows": rows,
            "photos": photos, "videos": video_details}


def prediction_chunks(files: Sequence[str | Path], *, chunk_size: int | None = None,
                      done: Collection[str] = frozenset()) -> list[list]:
    """The chunks ``files`` are scored in, :data:`PREDICT_CHUNK` at a time: the same on one machine,
    on a cluster and when resuming, since a batch's shape decides how BLAS sums it (other chunks would
    change scores in the last digit). Chunks whose files are all in ``done`` are left out."""
    size = chunk_size or PREDICT_CHUNK
    chunks = [list(files[start:start + size]) for start in range(0, len(files), size)]
    return [chunk for chunk in chunks if not all(str(file) in done for file in chunk)]


def without_done(result: dict, done: Collection[str]) -> dict:
    """A chunk's result less the rows and details of the files in ``done`` (already written)."""
    if not done:
        return result
    return {**result, "rows": [row for row in result["rows"] if str(row["path"]) not in done],
            "photos": [photo for photo in result["photos"] if str(photo["path"]) not in done],
            "videos": [video for video in result["videos"] if str(video["video"]) not in done]}


def predict_in_chunks(scorer, files: Sequence[str | Path], options: PredictOptions = PredictOptions(), *,
                      chunk_size: int | None = None, done: Collection[str] = frozenset()) -> Iterator[dict]:
    """:func:`predict_files` over ``files`` a chunk (:func:`prediction_chunks`) at a time, each
    chunk's result yielded as it is done, so that a caller writing them out holds one chunk's images,
    scores and rows at a time. ``done``: files already scored (a resumed run), not yielded again."""
    for chunk in prediction_chunks(files, chunk_size=chunk_size, done=done):
        yield without_done(predict_files(scorer, chunk, options), done)


def prediction_payload(result: dict, detector_name: str) -> dict:
    """What ``dflab predict --json`` writes (and a server answers): JSON-ready, NaN as null."""
    import json

    def plain(value):
        if isinstance(value, float) and value != value:
            return None
        if isinstance(value, (np.floating, np.integer)):
            return plain(value.item())
        if isinstance(value, np.ndarray):
            return [plain(v) for v in value.tolist()]
        if isinstance(value, dict):
            return {str(k): plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, Path):
            return str(value)
        return value

    payload = {"detector": detector_name, "threshold": result["threshold"], "framing": result.get("framing"),
               "results": result["rows"], "photos": result["photos"], "videos": result["videos"]}
    return json.loads(json.dumps(plain(payload)))


def left_out_predictions(left_out: Sequence[tuple[str, str]]) -> list[dict]:
    """One row per file a folder run did not score (``media_files``'s ``(path, reason)``): verdict
    ``skipped``, the reason in ``error``."""
    return [_row(path, verdict="skipped", error=reason) for path, reason in left_out]


def _row(path, *, face="", box="", p_fake=float("nan"), verdict="error", error="") -> dict:
    return {"path": str(path), "face": face, "box": box, "p_fake": float(p_fake), "verdict": verdict, "error": error}


def _whole_image_heatmaps(scorer, images, scores, folder: Path) -> None:
    import cv2

    from dflab.inference.heatmaps import overlay_evidence
    from dflab.media.images import load_image
    from dflab.runtime.progress import warn

    folder.mkdir(parents=True, exist_ok=True)
    for image, p_fake in zip(images, scores):
        if np.isnan(p_fake):
            continue
        try:
            heat = scorer.explain(str(image))
        except NotImplementedError as err:
            warn(f"no heatmaps ({err})")
            return
        picture = load_image(str(image))
        cv2.imwrite(str(folder / f"{image.stem}_heatmap.png"),
                    cv2.cvtColor(overlay_evidence(picture, heat), cv2.COLOR_RGB2BGR))
