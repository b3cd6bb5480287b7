"""Photos of several uploads scored together: the faces of all of them found in one face-detector call
(MTCNN runs images of one size as one batch) and scored in one network call, so that 16 clients
uploading at once keep both cores busy with large batches rather than 16 small ones.

Each photo's answer is what :func:`dflab.inference.photo.predict_photo` gives for it alone (the
same faces, boxes, verdicts and heatmap; P(fake) equal within the float noise of batching); a
photo that cannot be read or shows no face gets its answer from ``predict_photo`` itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from dflab.faces.framing import FaceFraming


def score_photos(scorer, files: Sequence[Path], *, framing: FaceFraming, threshold: float, face_detector: str,
                 heatmap_dirs: Sequence[Path | None]) -> list[dict]:
    """One :func:`~dflab.inference.photo.predict_photo` result per file, in order;
    ``heatmap_dirs[i]``: where file i's heatmap goes (None: no heatmap)."""
    from dflab.faces.finder import get_face_detector
    from dflab.inference.photo import predict_photo, write_photo_heatmap
    from dflab.media.images import ImageError, load_image

    results: list[dict | None] = [None] * len(files)
    pictures: dict[int, np.ndarray] = {}
    for index, path in enumerate(files):
        try:
            pictures[index] = load_image(path)
        except ImageError:
            pass  # predict_photo below says why
    found = get_face_detector(face_detector).detect_batch(list(pictures.values()))
    faces_of = {index: sorted(faces, key=lambda face: face.box[0]) for index, faces in zip(pictures, found)}
    crops_of, regions_of = {}, {}
    for index, faces in faces_of.items():
        image = pictures[index]
        regions_of[index] = [framing.region(face.box, *image.shape[:2]) for face in faces]
        crops_of[index] = [np.ascontiguousarray(image[top:bottom, left:right])
                           for left, top, right, bottom in regions_of[index]]
    scored = [index for index in faces_of if faces_of[index]]
    all_crops = [crop for index in scored for crop in crops_of[index]]
    probabilities = iter(score_crops(scorer, all_crops))
    for index in scored:
        image, path = pictures[index], files[index]
        result = {"path": str(path), "status": "ok", "reason": "", "width": image.shape[1], "height": image.shape[0],
                  "faces": [], "heatmap": None}
        for number, face in enumerate(faces_of[index]):
            p_fake = float(next(probabilities))
            verdict = "error" if np.isnan(p_fake) else ("fake" if p_fake >= threshold else "real")
            result["faces"].append({"face": number, "box": [round(v, 1) for v in face.box],
                                    "confidence": round(face.score, 5), "p_fake": p_fake, "verdict": verdict})
        if heatmap_dirs[index] is not None:
            result["heatmap"] = write_photo_heatmap(scorer, image, str(path), crops_of[index], regions_of[index],
                                                    result["faces"], Path(heatmap_dirs[index]))
        results[index] = result
    for index, path in enumerate(files):
        if results[index] is None:  # unreadable, or no face: predict_photo's own answer and reason
            results[index] = predict_photo(scorer, path, framing=framing, threshold=threshold,
                                           face_detector=face_detector, heatmap_dir=heatmap_dirs[index])
    return results


#: Faces given to the network in one call at most; each call's count is rounded up to an even number.
#: A heap that keeps its freed memory fragments under batches of every size: the ready detector on
#: 100 batches of 1-16 random sizes grew from 1.49 to 1.61 GB, and stayed at 1.41 GB from the start
#: after a warm-up over the even sizes, largest first (:func:`network_batch_sizes`), in the same
#: time (benchmarks/bench_batch_memory.py, benchmarks/RESULTS.md).
NETWORK_BATCH = 16


def network_batch_size(count: int) -> int:
    """The batch the network runs for ``count`` (1..:data:`NETWORK_BATCH`) faces."""
    return count if count <= 1 else count + count % 2


def network_batch_sizes() -> list[int]:
    """Every batch size :func:`score_crops` runs, largest first (the order a warm-up should take)."""
    return sorted({network_batch_size(count) for count in range(1, NETWORK_BATCH + 1)}, reverse=True)


def score_crops(scorer, crops: list) -> np.ndarray:
    """P(fake) of each crop (NaN where unreadable), in calls of :func:`network_batch_size` crops
    (padded with copies of a chunk's first crop, whose scores are dropped)."""
    scores = []
    for start in range(0, len(crops), NETWORK_BATCH):
        chunk = crops[start:start + NETWORK_BATCH]
        batch = chunk + [chunk[0]] * (network_batch_size(len(chunk)) - len(chunk))
        scores.append(np.asarray(scorer.predict_proba(batch, on_error="nan"), dtype=np.float64)[:len(chunk)])
    return np.concatenate(scores) if scores else np.zeros(0)
