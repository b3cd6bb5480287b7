"""A video's verdict: faces found in sampled frames, scored, aggregated over frames; per-frame scores and heatmaps."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np

from dflab.media.video import VideoError, sample_frames
from dflab.metrics.core import aggregate_frames, check_aggregation

#: Frames searched for faces per progress report (``predict_video(on_frames=...)``).
PROGRESS_CHUNK = 4

#: Side of a person's thumbnail (PNG data URL in the result).
THUMBNAIL_PX = 96


def overlay_heatmap(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """An RGB image with a [0, 1] heatmap blended over it in OpenCV's JET colours (red = high)."""
    import cv2

    heat = np.nan_to_num(np.asarray(heatmap, dtype=np.float32), nan=0.0)
    if heat.shape != image.shape[:2]:
        heat = cv2.resize(heat, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)
    heat_u8 = (np.clip(heat, 0.0, 1.0) * 255).round().astype(np.uint8)
    coloured = cv2.cvtColor(cv2.applyColorMap(heat_u8, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    return cv2.addWeighted(image, 1.0 - alpha, coloured, alpha, 0.0)


def predict_video(detector, path: str | os.PathLike, *, n_frames: int = 32, face_detector="mtcnn",
                  aggregation: str = "mean_prob", heatmap_dir: str | os.PathLike | None = None,
                  scale: float = 1.3, size: int = 256, face_detector_options: dict | None = None,
                  framing=None, on_frames: Callable[[int, int], None] | None = None) -> dict:
    """P(fake) of a video: sample frames, find the faces of each and follow them over the frames as
    persons (:func:`dflab.faces.tracking.find_persons`), score every person's face crops with ``detector.predict_proba``,
    aggregate each person's frames, and give the video the P(fake) of its most-fake person. Never
    raises for a bad video: the result's ``status`` is ``ok``, ``no_face`` (``p_fake`` NaN) or
    ``error`` (``reason`` says why).

    Returns ``{"video", "p_fake", "person" (whose verdict the video takes), "aggregation", "status",
    "reason", "frames", "frames_with_face", "frame_scores": [{"frame_index", "timestamp", "p_fake",
    "confidence", "box", "person"}], "persons": [{"person", "p_fake", "frames", "first_timestamp",
    "box", "thumbnail"}], "heatmaps": [...]}`` (heatmaps in the order of ``frame_scores``).
    With ``heatmap_dir``, each scored face's ``detector.explain`` map is written over the face as
    ``<video stem>_f<frame>.png``. ``framing`` (a :class:`dflab.faces.framing.FaceFraming`, the model's
    own) cuts faces as the model's training crops were cut, instead of ``scale`` x box at ``size``.
    ``on_frames(done, total)`` is called as the sampled frames are searched for faces (a few at a
    time) and once more when they are scored.
    """
    from dflab.faces.finder import get_face_detector
    from dflab.faces.geometry import crop_face
    from dflab.faces.tracking import find_persons
    from dflab.runtime.progress import warn

    check_aggregation(aggregation)
    path = Path(path)
    result = {"video": str(path), "p_fake": float("nan"), "person": None, "aggregation": aggregation,
              "status": "error", "reason": "", "frames": 0, "frames_with_face": 0, "frame_scores": [],
              "persons": [], "heatmaps": []}
    try:
        frames = sample_frames(path, n_frames)
    except VideoError as err:
        result["reason"] = err.reason
        return result
    faces_detector = get_face_detector(face_detector, **(face_detector_options or {}))
    if on_frames is None:
        detections = faces_detector.detect_batch([frame.image for frame in frames])
    else:  # a few frames at a time, so a front end can show frames done / total
        detections = []
        on_frames(0, len(frames))
        for start in range(0, len(frames), PROGRESS_CHUNK):
            detections += faces_detector.detect_batch([frame.image for frame in frames[start:start + PROGRESS_CHUNK]])
            on_frames(len(detections), len(frames))
    persons = find_persons(detections)
    # (frame, face, person) in frame order, persons in order within a frame
    scored = sorted(((frames[position], face, person) for person, track in enumerate(persons)
                     for position, face in track), key=lambda item: (item[0].index, item[2]))
    result["frames"] = len(frames)
    result["frames_with_face"] = len({frame.index for frame, _, _ in scored})
    if not scored:
        result.update(status="no_face", reason=f"no face in any of {len(frames)} frames")
        return result
    if framing is not None:
        crops = [framing.crop(frame.image, face.box) for frame, face, _ in scored]
    else:
        crops = [crop_face(frame.image, face.box, scale=scale, size=size) for frame, face, _ in scored]
    probabilities = np.asarray(detector.predict_proba(crops, on_error="nan"), dtype=np.float64)
    result["frame_scores"] = [
        {"frame_index": frame.index, "timestamp": round(frame.timestamp, 4), "p_fake": float(p),
         "confidence": round(face.score, 5), "box": [round(v, 1) for v in face.box], "person": person}
        for (frame, face, person), p in zip(scored, probabilities)]
    result["persons"] = [_person(person, [(frame, face, crop, p) for (frame, face, who), crop, p
                                          in zip(scored, crops, probabilities) if who == person], aggregation)
                         for person in range(len(persons))]
    # The video is as fake as its most-fake person: a swapped face beside a real one is not averaged away.
    decided = [person for person in result["persons"] if person["p_fake"] == person["p_fake"]]
    verdict_person = max(decided, key=lambda person: person["p_fake"]) if decided else result["persons"][0]
    result["p_fake"], result["person"] = verdict_person["p_fake"], verdict_person["person"]
    result["status"] = "ok"
    if result["frames_with_face"] < len(frames):
        result["reason"] = f"no face in {len(frames) - result['frames_with_face']} of {len(frames)} frames"
    if heatmap_dir is not None:
        result["heatmaps"] = _write_heatmaps(detector, path, scored, crops, Path(heatmap_dir), warn)
    return result


def _person(person: int, seen: list, aggregation: str) -> dict:
    """One person's verdict: P(fake) aggregated over its frames, frames seen, and a thumbnail of its
    face where the detector was most confident."""
    import base64
    import io

    from PIL import Image

    scores = np.asarray([p for _, _, _, p in seen], dtype=np.float64)
    _, face, crop, _ = max(seen, key=lambda item: item[1].score)
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(crop)).resize((THUMBNAIL_PX, THUMBNAIL_PX), Image.BILINEAR).save(buffer, "PNG")
    return {"person": person, "p_fake": aggregate_frames(scores, aggregation), "frames": len(seen),
            "first_timestamp": round(seen[0][0].timestamp, 4), "box": [round(v, 1) for v in face.box],
            "thumbnail": "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")}


def _write_heatmaps(detector, path: Path, scored, crops, heatmap_dir: Path, warn) -> list[str]:
    import cv2

    heatmap_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for (frame, _face, person), crop in zip(scored, crops):
        try:
            heatmap = detector.explain(crop)
        except NotImplementedError as err:
            warn(f"{path}: no heatmaps ({err})")
            break
        out = heatmap_dir / f"{path.stem}_f{frame.index:06d}{f'_p{person}' if person else ''}.png"
        if not cv2.imwrite(str(out), cv2.cvtColor(overlay_heatmap(crop, heatmap), cv2.COLOR_RGB2BGR)):
            warn(f"{out}: cannot write heatmap PNG")
            break
        written.append(str(out))
    return written
