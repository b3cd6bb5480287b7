"""MTCNN (facenet-pytorch, weights shipped in its wheel): boxes, scores and five landmarks.

facenet-pytorch's networks and box arithmetic, run by a cascade of our own that differs from its
``detect_face`` in two costs only: the candidate boxes are cut and resampled for the second and third
networks all at once (two small NumPy products per box give what its per-box ``interpolate(mode="area")``
calls give, without PyTorch's per-call overhead). The boxes are facenet-pytorch's to float rounding
(tests/test_faces.py); on 640x360 video frames the cascade is 1.2x faster, on face crops as fast
(benchmarks/RESULTS.md): the three networks themselves take the rest."""

from __future__ import annotations

import functools
from typing import Sequence

import numpy as np

from dflab.faces.detection import Face, FaceDetector, default_device, downscale_for_detection, torch_threads

#: Side of the second and third networks' inputs (MTCNN's R-Net and O-Net).
REFINE_SIDE, OUTPUT_SIDE = 24, 48
#: facenet-pytorch's image pyramid step.
PYRAMID_FACTOR = 0.709


class MTCNNDetector(FaceDetector):
    """MTCNN (Zhang et al. 2016) from facenet-pytorch; its weights ship inside the wheel.

    ``min_face_size`` 40 (facenet-pytorch's default is 20) drops the finest image-pyramid levels,
    which hold most of the work, and frames are shrunk to ``max_side`` (640) before detection, as
    the DFDC winner shrank full-HD frames for MTCNN. Together: faces smaller than 1/16 of the frame's
    long side (120 px in 1080p) are not found; raise ``max_side`` for wide shots.

    ``threads``: PyTorch threads while detecting (None: PyTorch's own count). Its many small
    operations each wait for every thread: on two quiet cores two threads are faster than one, but
    with another busy process on the machine one thread is several times faster than two
    (benchmarks/RESULTS.md).
    """

    name = "mtcnn"

    def __init__(self, *, min_face_size: int = 40, thresholds: Sequence[float] = (0.6, 0.7, 0.7),
                 min_score: float = 0.9, max_side: int | None = 640, device: str | None = None,
                 threads: int | None = None):
        try:
            from facenet_pytorch.models.mtcnn import ONet, PNet, RNet
        except ImportError as err:
            raise ImportError("the MTCNN face detector needs facenet-pytorch: pip install facenet-pytorch") from err
        self.min_face_size, self.thresholds = int(min_face_size), tuple(float(t) for t in thresholds)
        self.min_score, self.max_side = float(min_score), max_side
        self.device = default_device(device)
        self.threads = threads
        self._nets = [net().eval().to(self.device) for net in (PNet, RNet, ONet)]

    def params(self) -> dict:
        return {"name": self.name, "min_face_size": self.min_face_size, "thresholds": list(self.thresholds),
                "min_score": self.min_score, "max_side": self.max_side}

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[list[Face]]:
        results: list[list[Face]] = [[] for _ in images]
        # The cascade batches only images of one size: group them after the downscaling (video frames
        # all share one size; photos of one aspect ratio larger than max_side do too).
        scaled = [downscale_for_detection(image, self.max_side) for image in images]
        groups: dict[tuple, list[int]] = {}
        for i, (image, _) in enumerate(scaled):
            groups.setdefault(image.shape, []).append(i)
        for indices in groups.values():
            batch = np.stack([scaled[i][0] for i in indices])
            with torch_threads(self.threads if self.device == "cpu" else None):
                found = self._cascade(batch)
            for i, (boxes, scores, points) in zip(indices, found):
                factor = scaled[i][1]
                for box, score, landmark in zip(boxes, scores, points):
                    if score < self.min_score:
                        continue
                    results[i].append(Face(tuple(float(v) / factor for v in box), float(score),
                                           np.asarray(landmark, dtype=np.float32) / factor))
        return results

    def _cascade(self, batch: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """facenet-pytorch's ``detect_face`` on (n, h, w, 3) uint8 images of one size: per image, boxes
        (k, 4), scores (k,) and landmarks (k, 5, 2), in facenet-pytorch's order."""
        import torch
        from facenet_pytorch.models.utils.detect_face import (
            batched_nms_numpy, bbreg, generateBoundingBox, imresample, pad, rerec)
        from torchvision.ops.boxes import batched_nms

        pnet, rnet, onet = self._nets
        with torch.inference_mode():
            images = torch.as_tensor(batch, device=self.device).permute(0, 3, 1, 2).float()
            h, w = images.shape[2:]
            boxes, image_inds = [], []
            for scale in _pyramid(h, w, self.min_face_size):
                scaled = imresample(images, (int(h * scale + 1), int(w * scale + 1)))
                reg, probs = pnet(_normalised(scaled))
                level_boxes, level_inds = generateBoundingBox(reg, probs[:, 1], scale, self.thresholds[0])
                pick = batched_nms(level_boxes[:, :4], level_boxes[:, 4], level_inds, 0.5)
                boxes.append(level_boxes[pick])
                image_inds.append(level_inds[pick])
            boxes, image_inds = torch.cat(boxes), torch.cat(image_inds)
            pick = batched_nms(boxes[:, :4], boxes[:, 4], image_inds, 0.7)
            boxes, image_inds = boxes[pick], image_inds[pick]
            width, height = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
            boxes = torch.stack([boxes[:, 0] + boxes[:, 5] * width, boxes[:, 1] + boxes[:, 6] * height,
                                 boxes[:, 2] + boxes[:, 7] * width, boxes[:, 3] + boxes[:, 8] * height,
                                 boxes[:, 4]], dim=1)
            boxes = rerec(boxes)

            if len(boxes):
                crops, keep = _box_averages(batch, image_inds, *pad(boxes, w, h), REFINE_SIDE)
                boxes, image_inds = boxes[keep], image_inds[keep]
                regression, probs = rnet(_normalised(crops))
                passed = probs[:, 1] > self.thresholds[1]
                boxes = torch.cat((boxes[passed, :4], probs[passed, 1:2]), dim=1)
                image_inds, regression = image_inds[passed], regression[passed]
                pick = batched_nms(boxes[:, :4], boxes[:, 4], image_inds, 0.7)
                boxes = rerec(bbreg(boxes[pick], regression[pick]))
                image_inds = image_inds[pick]

            points = torch.zeros(0, 5, 2)
            if len(boxes):
                crops, keep = _box_averages(batch, image_inds, *pad(boxes, w, h), OUTPUT_SIDE)
                boxes, image_inds = boxes[keep], image_inds[keep]
                regression, landmarks, probs = onet(_normalised(crops))
                passed = probs[:, 1] > self.thresholds[2]
                boxes = torch.cat((boxes[passed, :4], probs[passed, 1:2]), dim=1)
                image_inds, regression, landmarks = image_inds[passed], regression[passed], landmarks[passed]
                box_w, box_h = boxes[:, 2:3] - boxes[:, 0:1] + 1, boxes[:, 3:4] - boxes[:, 1:2] + 1
                points = torch.stack((box_w * landmarks[:, :5] + boxes[:, 0:1] - 1,
                                      box_h * landmarks[:, 5:] + boxes[:, 1:2] - 1), dim=2)
                boxes = bbreg(boxes, regression)
                pick = batched_nms_numpy(boxes[:, :4], boxes[:, 4], image_inds, 0.7, "Min")
                boxes, image_inds, points = boxes[pick], image_inds[pick], points[pick]

        boxes, points, image_inds = boxes.cpu().numpy(), points.cpu().numpy(), image_inds.cpu().numpy()
        return [(boxes[image_inds == i, :4], boxes[image_inds == i, 4], points[image_inds == i])
                for i in range(len(batch))]


def _pyramid(height: int, width: int, min_face_size: int) -> list[float]:
    """facenet-pytorch's pyramid scales: the smallest face to 12 px (P-Net's window), then steps of
    0.709 while the image's short side stays at least 12 px."""
    scale, short_side, scales = 12.0 / min_face_size, min(height, width) * 12.0 / min_face_size, []
    while short_side >= 12:
        scales.append(scale)
        scale, short_side = scale * PYRAMID_FACTOR, short_side * PYRAMID_FACTOR
    return scales


def _normalised(images):
    return (images - 127.5) * 0.0078125


def _box_averages(batch: np.ndarray, image_inds, y, ey, x, ex, side: int):
    """Each box ``batch[i, y-1:ey, x-1:ex]`` (facenet-pytorch's ``pad`` coordinates) resampled to
    side x side as ``interpolate(mode="area")`` does (an adaptive average pool: output cell j of n
    input pixels averages pixels floor(j*n/side) to ceil((j+1)*n/side) - 1), as two small products
    with averaging matrices per box, plus the indices of the non-empty boxes kept.

    facenet-pytorch calls ``interpolate`` once per box, each call costing more in PyTorch's overhead
    than in arithmetic; here a box costs two NumPy products."""
    import torch

    crops, keep = [], []
    for k, (image, top, bottom, left, right) in enumerate(zip(image_inds.tolist(), y - 1, ey, x - 1, ex)):
        if bottom <= top or right <= left:
            continue
        crop = batch[image, top:bottom, left:right].astype(np.float32)
        rows = _averaging_matrix(int(bottom - top), side) @ crop.reshape(bottom - top, -1)
        crops.append(_averaging_matrix(int(right - left), side) @ rows.reshape(side, right - left, 3))
        keep.append(k)
    images = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2)
    return images, torch.as_tensor(keep, dtype=torch.long)


@functools.lru_cache(maxsize=4096)
def _averaging_matrix(length: int, side: int) -> np.ndarray:
    """(side, length): row j averages input pixels floor(j*length/side) to ceil((j+1)*length/side) - 1."""
    cells = np.arange(side)
    first, last = cells * length // side, -((-(cells + 1) * length) // side)
    columns = np.arange(length)
    inside = (columns[None, :] >= first[:, None]) & (columns[None, :] < last[:, None])
    return (inside / (last - first)[:, None]).astype(np.float32)
