"""Faces: detect them in frames (MTCNN or BlazeFace), crop them, and extract crops from videos/images.

One small interface for detectors: ``detector.detect(image) -> list[Face]`` (and ``detect_batch``),
with boxes in pixel coordinates ``(x0, y0, x1, y1)`` of the image given. :func:`extract_faces` turns
videos, images and folders into PNG crops plus a manifest (one row per crop, with a ``path``
column, so the manifest feeds a detector directly) and a per-source status table; a rerun skips
sources already extracted with the same parameters.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

import cv2
import numpy as np
import pandas as pd

from dflab.faces.detection import Face, FaceDetector
from dflab.faces.finder import get_face_detector
from dflab.faces.geometry import crop_face
from dflab.faces.tracking import select_faces
from dflab.media.formats import IMAGE_EXTENSIONS, is_video_path
from dflab.media.images import ImageError, load_image
from dflab.media.video import VideoError, sample_frames
from dflab.runtime.files import sha256_file
from dflab.runtime.progress import track, warn

if TYPE_CHECKING:  # the cluster engine (dask) is imported only by runs that use one
    from dflab.runtime.cluster import OnCluster

#: Bumped when the crop layout changes, so older extractions are not reused.
EXTRACTION_VERSION = 1


MANIFEST_FILE = "faces.csv"


SOURCES_FILE = "sources.csv"


@dataclass
class _Source:
    path: Path
    kind: str  # "video" or "image"
    video: str  # video id the crops belong to


def expand_sources(sources: str | os.PathLike | Iterable[str | os.PathLike]) -> list[_Source]:
    """Videos and images from paths and folders (folders are walked, sorted). A file given by name is
    taken whatever its extension (a bad one gets a status); folder walks take known extensions only.
    Video id: the video's file name stem; for frames inside a sub-folder of a walked folder, that
    sub-folder's path (a folder of frames is one video); otherwise the image's stem."""
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    out: list[_Source] = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            for file in sorted(p for p in path.rglob("*") if p.is_file()):
                suffix = file.suffix.lower()
                if suffix in IMAGE_EXTENSIONS:
                    parent = file.parent.relative_to(path)
                    video = parent.as_posix() if parent.parts else file.stem
                    out.append(_Source(file, "image", video))
                elif is_video_path(file):
                    out.append(_Source(file, "video", file.stem))
        else:
            kind = "image" if path.suffix.lower() in IMAGE_EXTENSIONS else "video"
            out.append(_Source(path, kind, path.stem))
    return out


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)[:60] or "source"


def _write_png(path: Path, image: np.ndarray) -> None:
    if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 3]):
        raise OSError(f"{path}: cannot write PNG")


MANIFEST_COLUMNS = ["source", "video", "frame_index", "timestamp", "x0", "y0", "x1", "y1", "confidence",
                    "track_id", "path"]


STATUS_COLUMNS = ["source", "video", "kind", "status", "frames", "frames_with_face", "frames_without_face",
                  "faces", "reason", "cache_key"]


def _status_message(frames: int, with_face: int) -> tuple[str, str]:
    if frames == 0:
        return "error", "no frame"
    if with_face == 0:
        return "no_face", f"no face in any of {frames} frames"
    if with_face < frames:
        return "ok", f"no face in {frames - with_face} of {frames} frames"
    return "ok", ""


def extract_faces(sources, out_dir: str | os.PathLike, *, n_frames: int = 32,
                  detector: str | FaceDetector = "mtcnn", scale: float = 1.3, size: int = 256,
                  square: bool = True, policy: str = "largest", batch_size: int = 16,
                  detector_options: dict | None = None, resume: bool = True,
                  cluster: OnCluster | None = None) -> pd.DataFrame:
    """Detect and crop faces from videos, images and folders into ``out_dir``.

    Writes ``out_dir/crops/<source>-<key>/*.png``, ``out_dir/faces.csv`` (one row per crop:
    source, video, frame_index, timestamp, x0, y0, x1, y1, confidence, track_id, path) and
    ``out_dir/sources.csv`` (one row per source: status ``ok``/``no_face``/``error``, frames sampled,
    frames with and without a face, faces, reason, cache_key). Returns the crop manifest; the
    status rows are in ``manifest.attrs["sources"]`` (a list of dicts) and :func:`read_sources`.

    The cache key is the source's content hash plus every parameter that changes the crops; with
    ``resume`` a source whose folder holds a completed extraction under the same key is not redone.
    A bad file never stops the batch: it gets status ``error`` and its one-line reason.
    ``cluster``: the sources are extracted in chunks on its workers (each with the face detector its
    loader builds there, and ``out_dir`` readable and writable at the same path on every worker).
    """
    if policy not in ("largest", "all"):
        raise ValueError(f"unknown face policy {policy!r}; use 'largest' or 'all'")
    if n_frames < 1 or size < 8 or scale <= 0:
        raise ValueError("need n_frames >= 1, size >= 8 and scale > 0")
    out_dir = Path(out_dir).resolve()  # manifest paths stay valid from any working folder
    (out_dir / "crops").mkdir(parents=True, exist_ok=True)
    face_detector = get_face_detector(detector, **(detector_options or {}))
    settings = {"version": EXTRACTION_VERSION, "n_frames": n_frames, "detector": face_detector.params(),
                "scale": scale, "size": size, "square": square, "policy": policy}
    settings_hash = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()

    rows: list[dict] = []
    statuses: list[dict] = []
    extract = partial(_extract_one, out_dir=out_dir, settings_hash=settings_hash, n_frames=n_frames, scale=scale,
                      size=size, square=square, policy=policy, batch_size=batch_size, resume=resume)
    expanded = expand_sources(sources)
    if cluster is None:
        extracted = (extract(source, face_detector=face_detector) for source in track(expanded, "extracting faces"))
    else:
        from dflab.faces.distributed import extract_on_cluster

        extracted = extract_on_cluster(cluster, expanded, extract)
    for source_rows, status in extracted:
        rows.extend(source_rows)
        statuses.append(status)
        if status["status"] != "ok" or status["frames_without_face"]:
            warn(f"{status['source']}: {status['status']}" + (f" ({status['reason']})" if status["reason"] else ""))
    manifest = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
    status_table = pd.DataFrame(statuses, columns=STATUS_COLUMNS)
    manifest.to_csv(out_dir / MANIFEST_FILE, index=False)
    status_table.to_csv(out_dir / SOURCES_FILE, index=False)
    manifest.attrs["sources"] = status_table.to_dict("records")
    return manifest


def read_sources(out_dir: str | os.PathLike) -> pd.DataFrame:
    """The per-source status table written by :func:`extract_faces`."""
    return pd.read_csv(Path(out_dir) / SOURCES_FILE, keep_default_na=False)


def _frames_of(source: _Source, n_frames: int) -> list[tuple[int, float, np.ndarray]]:
    if source.kind == "video":
        return [(f.index, f.timestamp, f.image) for f in sample_frames(source.path, n_frames)]
    return [(0, 0.0, load_image(source.path))]


def _extract_one(source: _Source, *, out_dir: Path, face_detector: FaceDetector, settings_hash: str,
                 n_frames: int, scale: float, size: int, square: bool, policy: str, batch_size: int,
                 resume: bool) -> tuple[list[dict], dict]:
    status = {"source": str(source.path), "video": source.video, "kind": source.kind, "status": "error",
              "frames": 0, "frames_with_face": 0, "frames_without_face": 0, "faces": 0, "reason": "",
              "cache_key": ""}
    try:
        if not source.path.is_file():
            raise (VideoError if source.kind == "video" else ImageError)(
                source.path, "file not found" if not source.path.exists() else "not a file")
        key = hashlib.sha256((sha256_file(source.path) + settings_hash).encode()).hexdigest()[:16]
        status["cache_key"] = key
        folder = out_dir / "crops" / f"{_safe_name(source.path.stem)}-{key}"
        done_file = folder / "status.json"
        if resume and done_file.is_file():
            cached = _load_cached(folder, done_file, key, source)
            if cached is not None:
                return cached
        frames = _frames_of(source, n_frames)
        detections: list[list[Face]] = []
        for start in range(0, len(frames), batch_size):
            detections.extend(face_detector.detect_batch([image for _, _, image in frames[start:start + batch_size]]))
        chosen = select_faces(detections, policy)
        folder.mkdir(parents=True, exist_ok=True)
        rows = []
        for (index, timestamp, image), faces in zip(frames, chosen):
            for k, (face, track_id) in enumerate(faces):
                try:
                    crop = crop_face(image, face.box, scale=scale, size=size, square=square)
                except ValueError:  # a degenerate box from the detector: no crop, not a failed source
                    continue
                crop_path = folder / f"{index:06d}_{k}.png"
                _write_png(crop_path, crop)
                rows.append({"source": str(source.path), "video": source.video, "frame_index": index,
                             "timestamp": round(timestamp, 4), "x0": round(face.box[0], 1),
                             "y0": round(face.box[1], 1), "x1": round(face.box[2], 1), "y1": round(face.box[3], 1),
                             "confidence": round(face.score, 5), "track_id": track_id, "path": str(crop_path)})
        with_face = sum(1 for faces in chosen if faces)
        state, reason = _status_message(len(frames), with_face)
        status.update(status=state, frames=len(frames), frames_with_face=with_face,
                      frames_without_face=len(frames) - with_face, faces=len(rows), reason=reason)
        pd.DataFrame(rows, columns=MANIFEST_COLUMNS).to_csv(folder / MANIFEST_FILE, index=False)
        done_file.write_text(json.dumps(status))  # written last: its presence marks a complete extraction
        return rows, status
    except (VideoError, ImageError) as err:
        status["reason"] = err.reason
        return [], status
    except OSError as err:
        status["reason"] = f"cannot read or write ({err.strerror or err})"
        return [], status


def _load_cached(folder: Path, done_file: Path, key: str, source: _Source) -> tuple[list[dict], dict] | None:
    try:
        status = json.loads(done_file.read_text())
        manifest = pd.read_csv(folder / MANIFEST_FILE, keep_default_na=False)
    except (OSError, ValueError):
        return None
    if status.get("cache_key") != key or len(manifest) != status.get("faces"):
        return None
    if not all(Path(p).is_file() for p in manifest["path"]):
        return None
    # The same content may come back under another name: report it under the name given now.
    manifest["source"], manifest["video"] = str(source.path), source.video
    status.update(source=str(source.path), video=source.video)
    return manifest.to_dict("records"), status
