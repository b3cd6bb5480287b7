"""Explanations drawn on photos: the detector's map of each face placed back on the picture, in JET
colours where it is high, boxes coloured by verdict (``<stem>_heatmap.png``)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


#: Box colours (RGB) of the heatmap picture, by verdict.
VERDICT_COLOURS = {"fake": (230, 40, 40), "real": (40, 200, 70)}


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
