"""Images to tensors: devices, resizing, normalisation, the image dataset and its loader (batched
forward passes are in :mod:`~dflab.detectors.deep.forward`, model state as arrays in :mod:`~dflab.detectors.deep.state`)."""

from __future__ import annotations

import math
import os
from typing import Any, Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from dflab.augment.sbi import self_blend
from dflab.augment.policy import Augmentation
from dflab.faces.framing import reframe
from dflab.media.images import ImageError, ImageLike, load_image

IMAGENET_MEAN = (0.485, 0.456, 0.406)


IMAGENET_STD = (0.229, 0.224, 0.225)


#: Pixels scaled to [0, 1] and left there (MesoNet's convention).
UNIT_SCALE = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``"auto"`` (CUDA when present, else CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``."""
    if isinstance(device, torch.device):
        return device
    name = (device or "auto").lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but no CUDA GPU is available here (use device='cpu')")
    if name != "cpu" and not name.startswith("cuda"):
        raise ValueError(f"unknown device {device!r}: expected 'auto', 'cpu' or 'cuda[:N]'")
    return torch.device(name)


def resize_square(image: np.ndarray, size: int) -> np.ndarray:
    """Resize an RGB uint8 image to size x size (area filter when shrinking, bilinear when growing)."""
    if image.shape[0] == size and image.shape[1] == size:
        return image
    shrinking = image.shape[0] * image.shape[1] > size * size
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def to_tensor(image: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """RGB uint8 (H, W, 3) -> float32 (3, H, W): scaled to [0, 1], then (x - mean) / std."""
    x = image.astype(np.float32) / 255.0
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))


class ImageDataset(Dataset):
    """Sources -> ``(tensor, label, error)``; ``error`` is "" or the reason the image is unusable
    (the tensor is then zeros), so a bad file never stops a batch and the caller decides.

    ``faces`` + ``crop_scale``: the crop policy of :mod:`dflab.faces.framing` (one face location or None
    per source). ``blend``: per item, whether to self-blend it (:func:`dflab.augment.sbi.self_blend`, with
    the face's landmarks when known) into a pseudo-fake; new blends every epoch."""

    def __init__(self, sources: Sequence[ImageLike], labels: Sequence[int] | None = None, *, input_size: int,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 augmentation: Augmentation | None = None, seed: int = 0, faces: Sequence[Any] | None = None,
                 crop_scale: float | None = None, blend: Sequence[bool] | None = None):
        self.sources = list(sources)
        self.labels = None if labels is None else np.asarray(labels, dtype=np.float32)
        self.input_size, self.mean, self.std = int(input_size), tuple(mean), tuple(std)
        self.augmentation, self.seed, self.epoch = augmentation, int(seed), 0
        self.faces, self.crop_scale = faces, crop_scale
        self.blend = None if blend is None else np.asarray(blend, dtype=bool)
        #: Raw items are uint8 (H, W, 3) tensors, normalised a whole batch at a time by
        #: :func:`normalise_batch` (inference: no per-image float work, no layout copy).
        self.raw = False

    def as_raw(self) -> "ImageDataset":
        raw = ImageDataset(self.sources, self.labels, input_size=self.input_size, mean=self.mean, std=self.std,
                           augmentation=self.augmentation, seed=self.seed, faces=self.faces,
                           crop_scale=self.crop_scale, blend=self.blend)
        raw.epoch, raw.raw = self.epoch, True
        return raw

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.sources)

    def _image(self, index: int) -> np.ndarray:
        image = load_image(self.sources[index])
        landmarks = None
        if self.faces is not None:
            image, landmarks = reframe(image, self.faces[index], self.crop_scale)
        if landmarks is not None:
            landmarks = landmarks * np.array([self.input_size / image.shape[1], self.input_size / image.shape[0]],
                                             dtype=np.float32)
        image = resize_square(image, self.input_size)
        if self.blend is not None and self.blend[index]:
            rng = np.random.default_rng([self.seed, self.epoch, index, 1])
            image = self_blend(image, rng, landmarks=landmarks)[0]
        return image

    def __getitem__(self, index: int):
        label = float(self.labels[index]) if self.labels is not None else -1.0
        try:
            image = self._image(index)
        except ImageError as err:
            if self.raw:
                return torch.zeros(self.input_size, self.input_size, 3, dtype=torch.uint8), label, str(err)
            return torch.zeros(3, self.input_size, self.input_size), label, str(err)
        if self.augmentation is not None:
            image = self.augmentation(image, np.random.default_rng([self.seed, self.epoch, index]))
        if self.raw:
            image = np.ascontiguousarray(image)
            # torch refuses to share read-only memory (e.g. a caller's frozen array): copy only then.
            return torch.from_numpy(image if image.flags.writeable else image.copy()), label, ""
        return to_tensor(image, self.mean, self.std), label, ""


def normalise_batch(images: torch.Tensor, mean: Sequence[float], std: Sequence[float],
                    buffer: torch.Tensor | None = None) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float32 (N, 3, H, W) in channels-last memory, (x / 255 - mean) / std as
    :func:`to_tensor` (to float32 rounding), in one multiply-add over the whole batch. The result is
    written into ``buffer`` (float32, at least as many elements) when given, so that scoring reuses
    one input tensor instead of allocating 25 MB per batch."""
    std_ = torch.tensor(std, dtype=torch.float32)
    scale, offset = 1.0 / (255.0 * std_), torch.tensor(mean, dtype=torch.float32) / std_
    # Broadcasting a 3-vector over the last dimension vectorises poorly (27 ms for 32 images of 256 px
    # on 2 cores); rows of 16 pixels with the 3-vector tiled to 48 take 8 ms.
    n, height, width, channels = images.shape
    pixels_per_row = math.gcd(n * height * width, 16)
    pixels = images.reshape(-1, pixels_per_row * channels)
    rows = (torch.empty(pixels.shape, dtype=torch.float32) if buffer is None
            else buffer.view(-1)[:pixels.numel()].view(pixels.shape))
    # Converting, then one float multiply-add in place, beats a single mixed uint8/float kernel
    # (about 4 ms against 6.5 ms for 32 images of 256 px): only same-type arithmetic is vectorised.
    rows.copy_(pixels)
    torch.addcmul(-offset.repeat(pixels_per_row), rows, scale.repeat(pixels_per_row), out=rows)
    return rows.view(n, height, width, channels).permute(0, 3, 1, 2)


def make_loader(dataset: ImageDataset, *, batch_size: int, shuffle: bool = False, workers: int | None = 0,
                seed: int = 0, device: torch.device | None = None) -> DataLoader:
    """A DataLoader; ``workers=None`` means min(4, CPU count - 1), 0 loads in this process."""
    if workers is None:
        workers = max(0, min(4, (os.cpu_count() or 1) - 1))
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=int(workers),
                      generator=generator, pin_memory=device is not None and device.type == "cuda",
                      persistent_workers=False)
