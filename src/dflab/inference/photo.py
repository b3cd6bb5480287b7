"""P(fake) of every face in a photo (or a video frame): find the faces, frame each as the model's
training crops were framed, score them, and explain them on the photo.

Used by ``dflab predict`` for detectors that record how their training crops frame a face
(:class:`dflab.faces.framing.FaceFraming` in the model's info, as the ready detector does); other
detectors score an image as it is given.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from dflab.faces.framing import FaceFraming
from dflab.media.images import ImageError, ImageLike, load_image, source_name

#: Box colours (RGB) of the heatmap picture, by verdict.
VERDICT_COLOURS = {"fake": (230, 40, 40), "real": (40, 200, 70)}


def predict_photo(detector, source: ImageLike, *, framing: FaceFraming, threshold: float,
                  face_detector="mtcnn", heatmap_dir: str | os.PathLike | None = None) -> dict:
    """Every face of one picture, scored. Never raises for a bad picture: ``status`` is ``ok``,
    ``no_face`` or ``error`` (``reason`` says why).

    Returns ``{"path", "status", "reason", "width", "height", "faces": [{"face", "box", "confidence",
    "p_fake", "verdict"}], "heatmap"}``; faces are numbered left to right, ``heatmap`` is the path of
    the explanation overlaid on the picture (with ``heatmap_dir``) or None."""
    from dflab.faces.finder import get_face_detector

    name = source_name(source)
    result = {"path": name, "status": "error", "reason": "", "width": 0, "height": 0, "faces": [], "heatmap": None}
    try:
        image = load_image(source)
    except ImageError as err:
        result["reason"] = err.reason
        return result
    result["height"], result["width"] = image.shape[:2]
    faces = sorted(get_face_detector(face_detector).detect(image), key=lambda face: face.box[0])
    if not faces:
        result.update(status="no_face", reason="no face found (score the picture as it is with --faces whole)")
        return result
    regions = [framing.region(face.box, *image.shape[:2]) for face in faces]
    crops = [np.ascontiguousarray(image[top:bottom, left:right]) for left, top, right, bottom in regions]
    probabilities = np.asarray(detector.predict_proba(crops, on_error="nan"), dtype=np.float64)
    for index, (face, p_fake) in enumerate(zip(faces, probabilities)):
        verdict = "error" if np.isnan(p_fake) else ("fake" if p_fake >= threshold else "real")
        result["faces"].append({"face": index, "box": [round(v, 1) for v in face.box],
                                "confidence": round(face.score, 5), "p_fake": float(p_fake), "verdict": verdict})
    result["status"] = "ok"
    if heatmap_dir is not None:
        result["heatmap"] = write_photo_heatmap(detector, image, name, crops, regions, result["faces"],
                                                Path(heatmap_dir))
    return result


def photo_heatmap(detector, image: np.ndarray, crops, regions) -> np.ndarray:
    """The detector's explanation of every face crop, placed back on the picture (max where they overlap)."""
    heatmap = np.zeros(image.shape[:2], dtype=np.float32)
    for crop, (left, top, right, bottom) in zip(crops, regions):
        face_map = np.asarray(detector.explain(crop), dtype=np.float32)
        face_map = cv2.resize(face_map, (right - left, bottom - top), interpolation=cv2.INTER_LINEAR)
        heatmap[top:bottom, left:right] = np.maximum(heatmap[top:bottom, left:right], face_map)
    return heatmap


def overlay_evidence(image: np.ndarray, heatmap: np.ndarray, strength: float = 0.6) -> np.ndarray:
    """The photo with the heatmap in JET colours blended in where it is high: the rest of the photo
    stays as it was (a uniform tint over a whole photo hides more than it shows)."""
    heat = np.clip(np.nan_to_num(np.asarray(heatmap, np.float32)), 0, 1)
    coloured = cv2.cvtColor(cv2.applyColorMap((heat * 255).round().astype(np.uint8), cv2.COLORMAP_JET),
                            cv2.COLOR_BGR2RGB).astype(np.float32)
    weight = (strength * heat)[..., None]
    return (image.astype(np.float32) * (1 - weight) + coloured * weight).round().astype(np.uint8)


def write_photo_heatmap(detector, image, name: str, crops, regions, faces: list[dict], folder: Path) -> str | None:
    """``<stem>_heatmap.png`` in ``folder``: the explanation over the picture, boxes by verdict."""
    from dflab.runtime.progress import warn

    try:
        heatmap = photo_heatmap(detector, image, crops, regions)
    except NotImplementedError as err:
        warn(f"{name}: no heatmap ({err})")
        return None
    picture = overlay_evidence(image, heatmap)
    thickness = max(2, round(max(image.shape[:2]) / 300))
    for face in faces:
        x0, y0, x1, y1 = (int(round(v)) for v in face["box"])
        colour = VERDICT_COLOURS.get(face["verdict"], (200, 200, 200))
        cv2.rectangle(picture, (x0, y0), (x1, y1), colour, thickness)
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"{Path(name).stem}_heatmap.png"
    if not cv2.imwrite(str(out), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR)):
        warn(f"{out}: cannot write heatmap PNG")
        return None
    return str(out)
