"""Images to tensors and back: datasets, loaders, normalisation, batched forward passes (with mirror TTA), and model state as NumPy arrays."""

from __future__ import annotations

import math
import os
from typing import Any, Callable, Sequence

import cv2
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from dflab.augment.sbi import self_blend
from dflab.augment.policy import Augmentation
from dflab.faces.framing import reframe
from dflab.media.images import ImageError, ImageLike, load_image
from dflab.runtime.progress import progress_bar

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


def state_to_numpy(model: nn.Module, prefix: str = "") -> dict[str, np.ndarray]:
    """The model's state_dict as NumPy arrays (float tensors as float32)."""
    out = {}
    for key, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu()
        if tensor.is_floating_point():
            tensor = tensor.float()
        out[prefix + key] = tensor.contiguous().numpy().copy()
    return out


def numpy_to_model(model: nn.Module, arrays: dict[str, np.ndarray], prefix: str = "") -> None:
    """Load arrays (keys ``prefix + state_dict key``) into the model, strictly: every key, every shape."""
    own = model.state_dict()
    wanted = {key[len(prefix):]: value for key, value in arrays.items() if key.startswith(prefix)}
    missing, unexpected = sorted(set(own) - set(wanted)), sorted(set(wanted) - set(own))
    if missing or unexpected:
        raise ValueError(f"state does not fit the network: missing {missing[:3]}, unexpected {unexpected[:3]}")
    state = {}
    for key, target in own.items():
        value = torch.from_numpy(np.asarray(wanted[key]).copy())
        if target.dim() == 0 and value.numel() == 1:
            value = value.reshape(())  # 0-d counters come back as (1,) from the array file
        if tuple(value.shape) != tuple(target.shape):
            raise ValueError(f"{key}: shape {tuple(value.shape)} does not fit {tuple(target.shape)}")
        state[key] = value.to(target.dtype)
    model.load_state_dict(state, strict=True)


def map_in_order(source: dict[str, torch.Tensor], target: dict[str, torch.Tensor], *,
                 source_name_: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Pair ``source`` tensors with ``target`` keys position by position (two implementations of
    the same network register their layers in the same order); every shape must match."""
    if len(source) != len(target):
        raise ValueError(f"{source_name_}: {len(source)} tensors but the network has {len(target)}")
    mapped = {}
    for (skey, value), (tkey, expected) in zip(source.items(), target.items()):
        if tuple(value.shape) != tuple(expected.shape):
            raise ValueError(f"{source_name_}: {skey} {tuple(value.shape)} cannot map onto {tkey} "
                             f"{tuple(expected.shape)}")
        mapped[tkey] = value
    return mapped


def autocast(device: torch.device):
    if device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return torch.autocast("cpu", enabled=False)


def batch_to(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    return x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)


def ready_for_inference(model: nn.Module, device: torch.device) -> nn.Module:
    """The model on ``device`` with channels-last weights; for a model already prepared the ``to``
    calls are skipped (they walk every module: about 2 ms a call, 1% of scoring 64 images with Meso4)."""
    if any(p.device != device or (p.dim() == 4 and not p.is_contiguous(memory_format=torch.channels_last))
           for p in model.parameters()):
        model.to(device).to(memory_format=torch.channels_last)
    return model


def predict_outputs(model: nn.Module, dataset: ImageDataset, *, batch_size: int, device: torch.device,
                    workers: int | None = 0, description: str = "scoring",
                    forward: Callable[[torch.Tensor], torch.Tensor] | None = None) -> tuple[np.ndarray, list[str]]:
    """The network's outputs (N, D) as float64, a NaN row where the image was unusable, and the error
    per image ("" if fine). ``forward`` replaces ``model(x)`` (e.g. an embedding instead of the logit)."""
    model.eval()
    forward = forward or model
    outputs: np.ndarray | None = None
    errors: list[str] = []
    loader = make_loader(dataset.as_raw(), batch_size=batch_size, workers=workers, device=device)
    start = 0
    buffer = None  # reused by every batch: the network is done with one batch before the next comes
    with torch.inference_mode(), progress_bar(description, len(dataset)) as advance:
        for x, _, batch_errors in loader:
            ok = np.asarray([not e for e in batch_errors])
            if ok.any():
                if buffer is None or buffer.numel() < x.numel():
                    buffer = torch.empty(x.numel(), dtype=torch.float32)
                x = normalise_batch(x, dataset.mean, dataset.std, buffer)
                with autocast(device):
                    out = forward(batch_to(x[torch.from_numpy(ok)] if not ok.all() else x, device))
                out = out.float().reshape(int(ok.sum()), -1).cpu().numpy()
                if outputs is None:
                    outputs = np.full((len(dataset), out.shape[1]), np.nan, dtype=np.float64)
                outputs[start + np.flatnonzero(ok)] = out
            errors.extend(batch_errors)
            start += len(batch_errors)
            advance(len(batch_errors))
    if outputs is None:  # no usable image at all
        outputs = np.full((len(dataset), 1), np.nan, dtype=np.float64)
    return outputs, errors


def predict_logits(model: nn.Module, dataset: ImageDataset, *, batch_size: int, device: torch.device,
                   workers: int | None = 0, description: str = "scoring") -> tuple[np.ndarray, list[str]]:
    """One logit per image (NaN where the image was unusable) and the error per image ("" if fine)."""
    outputs, errors = predict_outputs(model, dataset, batch_size=batch_size, device=device, workers=workers,
                                      description=description)
    return outputs[:, 0], errors


def mirror_averaged(model: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    """Test-time augmentation: the mean of the logits of each image and its left-right mirror (a face's
    mirror is as plausible a face, so the two views disagree only through the network's noise)."""
    def forward(x: torch.Tensor) -> torch.Tensor:
        return (model(x) + model(x.flip(3))) / 2
    return forward
