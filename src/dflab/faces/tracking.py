"""Faces followed over frames by box overlap, and which face(s) of a frame a video row keeps."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from dflab.faces.detection import Face, box_iou


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


def select_faces(frames_faces: Sequence[Sequence[Face]], policy: str = "largest") -> list[list[tuple[Face, int]]]:
    """Apply a policy to detections per frame: ``largest`` keeps the biggest face (track 0), ``all``
    keeps every face with a track id. Returns per frame a list of (face, track_id)."""
    if policy == "largest":
        return [[(max(faces, key=lambda f: f.area), 0)] if faces else [] for faces in frames_faces]
    if policy == "all":
        ids = track_faces(frames_faces)
        return [list(zip(faces, frame_ids)) for faces, frame_ids in zip(frames_faces, ids)]
    raise ValueError(f"unknown face policy {policy!r}; use 'largest' or 'all'")
