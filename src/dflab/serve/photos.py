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
    probabilities = iter(np.asarray(scorer.predict_proba(all_crops, on_error="nan"), dtype=np.float64)
                         if all_crops else [])
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
