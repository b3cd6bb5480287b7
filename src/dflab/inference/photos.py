"""Photos scored face by face, in batches: the one path of ``dflab predict``, ``--cluster``, the
Python API and ``dflab serve`` for detectors that record how their training crops frame a face (the
ready detector) or when asked to find faces.

A batch of photos (:func:`photo_batches`) is decoded and its faces found in one face-detector call
(MTCNN runs pictures of one size after its downscaling as one batch), every face framed as the
model's training crops were, and all of them scored in network calls of at most
:data:`NETWORK_BATCH` faces. A photo's answer does not
depend on the photos beside it: the same faces, boxes and verdicts, P(fake) equal within the float
noise of batching (1e-5). Verdicts and the threshold are decided here, for photos and videos alike.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from dflab.faces.framing import FaceFraming
from dflab.media.images import ImageError, ImageLike, load_image, source_name

#: Photos per batch at most, and their pixels at most (a folder of 24-megapixel photos is held a few
#: at a time, while 224 px face crops go 32 at a time).
PHOTO_BATCH = 32
PHOTO_BATCH_PIXELS = 48_000_000


def model_threshold(scorer) -> float:
    """The model's own threshold on P(fake): its validation EER threshold, else 0.5."""
    return float(((scorer.model_info_ or {}).get("thresholds") or {}).get("frame", 0.5))


def resolve_threshold(scorer, threshold: float | None) -> float:
    """``threshold`` when given, else :func:`model_threshold`."""
    return model_threshold(scorer) if threshold is None else float(threshold)


def verdict_of(p_fake: float, threshold: float) -> str:
    """``fake`` at or above ``threshold``, ``real`` below, ``error`` for NaN (nothing scored)."""
    return "error" if p_fake != p_fake else ("fake" if p_fake >= threshold else "real")


@dataclass(frozen=True)
class Photo:
    """A photo read for scoring: its name and pixels, or why it cannot be read."""
    name: str
    image: np.ndarray | None
    reason: str = ""


def read_photo(source: ImageLike | Photo) -> Photo:
    if isinstance(source, Photo):
        return source
    try:
        return Photo(source_name(source), load_image(source))
    except ImageError as err:
        return Photo(source_name(source), None, err.reason)


def photo_batches(sources: Sequence, *, size: int = PHOTO_BATCH, pixels: int = PHOTO_BATCH_PIXELS) -> list[list]:
    """``sources`` cut into the batches they are scored in: :data:`PHOTO_BATCH` photos at most, and no
    more pixels than ``pixels`` (judged from the image headers) unless a batch holds one photo."""
    from dflab.media.images import image_size

    batches, batch, held = [], [], 0
    for source in sources:
        width, height = image_size(source)
        if batch and (len(batch) == size or held + width * height > pixels):
            batches.append(batch)
            batch, held = [], 0
        batch.append(source)
        held += width * height
    return batches + ([batch] if batch else [])


@dataclass
class FacesFound:
    """A batch of photos read, their faces found (left to right) and framed as the model's crops."""
    photos: list[Photo]
    faces: dict[int, list]  # photo index -> its faces (readable photos only)
    regions: dict[int, list]  # photo index -> each face's (left, top, right, bottom) in the photo
    crops: dict[int, list]  # photo index -> each face's crop


def find_faces(sources: Sequence[ImageLike | Photo], *, framing: FaceFraming, face_detector="mtcnn") -> FacesFound:
    """The photos of ``sources`` read and their faces found in one face-detector call."""
    from dflab.faces.finder import get_face_detector

    photos = [read_photo(source) for source in sources]
    readable = [index for index, photo in enumerate(photos) if photo.image is not None]
    found = get_face_detector(face_detector).detect_batch([photos[index].image for index in readable])
    faces = {index: sorted(faces, key=lambda face: face.box[0]) for index, faces in zip(readable, found)}
    regions, crops = {}, {}
    for index, photo_faces in faces.items():
        image = photos[index].image
        regions[index] = [framing.region(face.box, *image.shape[:2]) for face in photo_faces]
        crops[index] = [np.ascontiguousarray(image[top:bottom, left:right])
                        for left, top, right, bottom in regions[index]]
    return FacesFound(photos, faces, regions, crops)


def score_faces(scorer, found: FacesFound, *, threshold: float,
                heatmap_dirs: Sequence[str | os.PathLike | None] | None = None) -> list[dict]:
    """The faces of :func:`find_faces` scored in network calls of at most :data:`NETWORK_BATCH`: one
    result per photo (see :func:`score_photos`)."""
    from dflab.inference.heatmaps import write_photo_heatmap

    heatmap_dirs = list(heatmap_dirs) if heatmap_dirs is not None else [None] * len(found.photos)
    probabilities = iter(score_crops(scorer, [crop for index in found.crops for crop in found.crops[index]]))
    results = []
    for index, photo in enumerate(found.photos):
        result = {"path": photo.name, "status": "error", "reason": photo.reason, "width": 0, "height": 0,
                  "faces": [], "heatmap": None}
        results.append(result)
        if photo.image is None:
            continue
        result["height"], result["width"] = photo.image.shape[:2]
        if not found.faces[index]:
            result.update(status="no_face", reason="no face found (score the picture as it is with --faces whole)")
            continue
        for number, face in enumerate(found.faces[index]):
            p_fake = float(next(probabilities))
            result["faces"].append({"face": number, "box": [round(v, 1) for v in face.box],
                                    "confidence": round(face.score, 5), "p_fake": p_fake,
                                    "verdict": verdict_of(p_fake, threshold)})
        result["status"] = "ok"
        if heatmap_dirs[index] is not None:
            result["heatmap"] = write_photo_heatmap(scorer, photo.image, photo.name, found.crops[index],
                                                    found.regions[index], result["faces"], Path(heatmap_dirs[index]))
    return results


def score_photos(scorer, sources: Sequence[ImageLike | Photo], *, framing: FaceFraming, threshold: float,
                 face_detector="mtcnn", heatmap_dirs: Sequence[str | os.PathLike | None] | None = None) -> list[dict]:
    """Every face of each photo, scored: one result per source, in order. Never raises for a bad
    photo: ``status`` is ``ok``, ``no_face`` or ``error`` (``reason`` says why).

    A result is ``{"path", "status", "reason", "width", "height", "faces": [{"face", "box",
    "confidence", "p_fake", "verdict"}], "heatmap"}``; faces are numbered left to right;
    ``heatmap_dirs[i]``: where photo i's explanation over the picture goes (None: none), and
    ``heatmap`` its path."""
    found = find_faces(sources, framing=framing, face_detector=face_detector)
    return score_faces(scorer, found, threshold=threshold, heatmap_dirs=heatmap_dirs)


def score_photo_batches(scorer, sources: Sequence[ImageLike], *, framing: FaceFraming, threshold: float,
                        face_detector="mtcnn", heatmap_dir: str | os.PathLike | None = None) -> Iterator[dict]:
    """:func:`score_photos` over ``sources``, :func:`photo_batches` at a time: one result per source,
    in order, as its batch is done. (Finding the next batch's faces on a second thread while this
    one is scored was measured slower on two cores: 47 against 49 face crops/s.)"""
    for batch in photo_batches(sources):
        yield from score_photos(scorer, batch, framing=framing, threshold=threshold, face_detector=face_detector,
                                heatmap_dirs=[heatmap_dir] * len(batch))


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
