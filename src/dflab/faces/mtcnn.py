"""MTCNN (facenet-pytorch, weights shipped in its wheel): boxes, scores and five landmarks."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from dflab.faces.detection import Face, FaceDetector, default_device, downscale_for_detection, torch_threads


class MTCNNDetector(FaceDetector):
    """MTCNN (Zhang et al. 2016) from facenet-pytorch; its weights ship inside the wheel.

    ``min_face_size`` 40 (facenet-pytorch's default is 20) drops the finest image-pyramid levels,
    which hold most of the work, and frames are shrunk to ``max_side`` (640) before detection, as
    the DFDC winner shrank full-HD frames for MTCNN. Together: faces smaller than 1/16 of the frame's
    long side (120 px in 1080p) are not found; raise ``max_side`` for wide shots.

    ``threads``: PyTorch threads while detecting (None: PyTorch's own count). Its thousands of tiny
    operations each wait for every thread: on two quiet cores two threads are 1.5x faster than one
    (12.4 against 19.2 ms per 224 px crop), but with another busy process on the machine one thread
    is 9x faster than two (20 against 176 ms; benchmarks/RESULTS.md).
    """

    name = "mtcnn"

    def __init__(self, *, min_face_size: int = 40, thresholds: Sequence[float] = (0.6, 0.7, 0.7),
                 min_score: float = 0.9, max_side: int | None = 640, device: str | None = None,
                 threads: int | None = None):
        try:
            from facenet_pytorch import MTCNN
        except ImportError as err:
            raise ImportError("the MTCNN face detector needs facenet-pytorch: pip install facenet-pytorch") from err
        self.min_face_size, self.thresholds = int(min_face_size), tuple(float(t) for t in thresholds)
        self.min_score, self.max_side = float(min_score), max_side
        self.device = default_device(device)
        self.threads = threads
        self._mtcnn = MTCNN(keep_all=True, min_face_size=self.min_face_size, thresholds=list(self.thresholds),
                            select_largest=False, post_process=False, device=self.device)
        if self.device == "cpu":
            from dflab.faces.pooling import strided_max_pools

            for net in (self._mtcnn.pnet, self._mtcnn.rnet, self._mtcnn.onet):
                strided_max_pools(net)

    def params(self) -> dict:
        return {"name": self.name, "min_face_size": self.min_face_size, "thresholds": list(self.thresholds),
                "min_score": self.min_score, "max_side": self.max_side}

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[list[Face]]:
        results: list[list[Face]] = [[] for _ in images]
        # MTCNN batches only images of one size: group them after the downscaling (video frames all
        # share one size; photos of one aspect ratio larger than max_side do too).
        scaled = [downscale_for_detection(image, self.max_side) for image in images]
        groups: dict[tuple, list[int]] = {}
        for i, (image, _) in enumerate(scaled):
            groups.setdefault(image.shape, []).append(i)
        for indices in groups.values():
            batch = np.stack([scaled[i][0] for i in indices])
            with torch_threads(self.threads if self.device == "cpu" else None):
                boxes, probs, points = self._mtcnn.detect(batch, landmarks=True)
            for i, frame_boxes, frame_probs, frame_points in zip(indices, boxes, probs, points):
                if frame_boxes is None:
                    continue
                factor = scaled[i][1]
                for box, prob, landmark in zip(frame_boxes, frame_probs, frame_points):
                    if prob is None or prob < self.min_score:
                        continue
                    results[i].append(Face(tuple(float(v) / factor for v in box[:4]), float(prob),
                                           np.asarray(landmark, dtype=np.float32) / factor))
        return results
