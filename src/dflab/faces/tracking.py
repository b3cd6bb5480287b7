"""Faces followed over frames by box overlap, persons (tracks seen often enough to get a verdict),
and which face(s) of a frame a video row keeps."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from dflab.faces.detection import Face, box_iou

#: A face track is a person (scored, with a verdict) when seen in at least this share of the frames of
#: the most-seen track, and in two frames: a passer-by or a face-like false detection in a frame or two
#: is not (on the FaceForensics++ and DeeperForensics clips, 32 frames: the subject in 32 frames, stray
#: detections in 1 or 2).
PERSON_MIN_SHARE = 0.25


def track_faces(frames_faces: Sequence[Sequence[Face]], iou_threshold: float = 0.3) -> list[list[int]]:
    """Track ids for faces across sampled frames: each face joins the track whose last box overlaps
    it most (IoU > threshold, one face per track per frame, Hungarian matching), else starts a track."""
    from scipy.optimize import linear_sum_assignment

    last_boxes: list[np.ndarray] = []
    ids: list[list[int]] = []
    for faces in frames_faces:
        frame_ids = [-1] * len(faces)
        if faces and last_boxes:
            iou = box_iou(np.asarray([f.box for f in faces]), np.asarray(last_boxes))
            rows, cols = linear_sum_assignment(-iou)
            for r, c in zip(rows, cols):
                if iou[r, c] > iou_threshold:
                    frame_ids[r] = int(c)
        for k, face in enumerate(faces):
            if frame_ids[k] < 0:
                last_boxes.append(np.asarray(face.box))
                frame_ids[k] = len(last_boxes) - 1
            else:
                last_boxes[frame_ids[k]] = np.asarray(face.box)
        ids.append(frame_ids)
    return ids


def find_persons(detections) -> list[list[tuple[int, Face]]]:
    """The faces of sampled frames grouped into persons by tracking (box overlap from frame to frame):
    per person, its ``(frame position, face)`` in frame order; persons most-seen first."""
    tracks: dict[int, list] = {}
    for position, (faces, track_ids) in enumerate(zip(detections, track_faces(detections))):
        for face, track in zip(faces, track_ids):
            tracks.setdefault(track, []).append((position, face))
    if not tracks:
        return []
    most = max(len(track) for track in tracks.values())
    needed = max(min(2, most), PERSON_MIN_SHARE * most)
    return sorted((track for track in tracks.values() if len(track) >= needed), key=lambda t: (-len(t), t[0][0]))


def select_faces(frames_faces: Sequence[Sequence[Face]], policy: str = "largest") -> list[list[tuple[Face, int]]]:
    """Apply a policy to detections per frame: ``largest`` keeps the biggest face (track 0), ``all``
    keeps every face with a track id. Returns per frame a list of (face, track_id)."""
    if policy == "largest":
        return [[(max(faces, key=lambda f: f.area), 0)] if faces else [] for faces in frames_faces]
    if policy == "all":
        ids = track_faces(frames_faces)
        return [list(zip(faces, frame_ids)) for faces, frame_ids in zip(frames_faces, ids)]
    raise ValueError(f"unknown face policy {policy!r}; use 'largest' or 'all'")
