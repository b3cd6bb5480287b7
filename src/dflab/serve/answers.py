"""A job's answer: what ``dflab predict --json`` writes for its file, with no server path in it
(paths become the uploaded base name, heatmaps PNG data URLs), or its 422 when the file was unusable."""

from __future__ import annotations

import base64
import time
from pathlib import Path

from dflab.runtime.messages import one_line


def answer_job(job, result: dict, detector_name: str) -> None:
    """Sets ``job``'s result (or its 422) from a :func:`~dflab.inference.predict.predict_files` result for its file."""
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
    job.result = public_payload(prediction_payload(result, detector_name), job)


def public_payload(payload: dict, job) -> dict:
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
