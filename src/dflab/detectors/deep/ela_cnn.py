"""ELA + deep learning (the lab report's "Error-level analysis and deep learning"): the ELA image of
:mod:`dflab.media.ela` is the input of a CNN instead of the photo.

* ``ela-cnn``: a small CNN trained from scratch (four 3x3 convolution blocks with BatchNorm, global
  average pooling, one logit), the size of the ELA + CNN systems of the literature;
* ``ela-cnn-lite0``: EfficientNet-Lite0 from its ImageNet weights (:mod:`dflab.detectors.deep.cnn`) fed the
  ELA image, fine-tuned end to end.

The ELA is computed on the image as stored, at its own resolution (the JPEG re-save sees the 8x8
grid of the file), then multiplied by ``ela_gain``, clipped to 0..255 and resized to the network's
input: the differences are a few grey levels, the gain spreads them over the range the network's
input normalisation expects. Grey ELA (``ela_color=False``) is repeated over the three channels.

Training is :func:`dflab.detectors.deep.training.train_binary`, as for every CNN here. Augmentation,
applied to the photo before its ELA: mirror and brightness/saturation/contrast only; blur, rescaling
and JPEG re-compression would change the very traces the ELA measures.

:meth:`ELACNNDetector.explain` is the ELA map weighted by the network's Grad-CAM saliency: where the
error level is high *and* the network looked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np
import torch
from torch import nn

from dflab.augment.policy import Augmentation
from dflab.detectors.deep.tensors import IMAGENET_MEAN, IMAGENET_STD, UNIT_SCALE, ImageDataset, resize_square, to_tensor
from dflab.detectors.deep.torch_detector import TorchDetector, grad_cam
from dflab.detectors.registry import register
from dflab.media.ela import ela_image, ela_map
from dflab.media.images import ImageLike, load_image

#: Photo augmentation before the ELA: no blur, rescale or JPEG (see the module docstring).
ELA_SAFE_AUGMENTATION = Augmentation(blur=0.0, rescale=0.0, jpeg=0.0)
ARCHES = ("small", "efficientnet-lite0")


def ela_input(image: np.ndarray, quality: int, color: bool, gain: float) -> np.ndarray:
    """The network's input before resizing: (H, W, 3) uint8, ELA x gain clipped to 255."""
    if color:
        error = ela_image(image, quality)
    else:
        error = np.repeat(ela_map(image, quality, color=False)[:, :, None], 3, axis=2).astype(np.float32)
    return np.clip(error * np.float32(gain), 0, 255).astype(np.uint8)


class ELADataset(ImageDataset):
    """An :class:`ImageDataset` whose items are ELA images: the photo is loaded, augmented (when
    ``photo_augmentation`` is given), turned into its ELA input and resized."""

    def __init__(self, sources: Sequence[ImageLike], labels=None, *, input_size: int, mean, std, seed: int = 0,
                 quality: int = 90, color: bool = False, gain: float = 32.0,
                 photo_augmentation: Augmentation | None = None):
        super().__init__(sources, labels, input_size=input_size, mean=mean, std=std, seed=seed)
        self.quality, self.color, self.gain = int(quality), bool(color), float(gain)
        self.photo_augmentation = photo_augmentation

    def as_raw(self) -> "ELADataset":
        raw = ELADataset(self.sources, self.labels, input_size=self.input_size, mean=self.mean, std=self.std,
                         seed=self.seed, quality=self.quality, color=self.color, gain=self.gain,
                         photo_augmentation=self.photo_augmentation)
        raw.epoch, raw.raw = self.epoch, True
        return raw

    def _image(self, index: int) -> np.ndarray:
        image = load_image(self.sources[index])
        if self.photo_augmentation is not None:
            image = self.photo_augmentation(image, np.random.default_rng([self.seed, self.epoch, index]))
        return resize_square(ela_input(image, self.quality, self.color, self.gain), self.input_size)


class SmallELANet(nn.Module):
    """Four blocks of 3x3 convolution + BatchNorm + ReLU (max-pooled after the first three), global
    average pooling, dropout, one logit."""

    def __init__(self, width: int = 32, drop_rate: float = 0.3):
        super().__init__()
        channels = (3, width // 2, width, 2 * width, 2 * width)
        layers: list[nn.Module] = []
        for block, (c_in, c_out) in enumerate(zip(channels[:-1], channels[1:])):
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
            if block < 3:
                layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(drop_rate),
                                  nn.Linear(channels[-1], 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@dataclass(eq=False, repr=False)  # parameters as fields: scikit-learn reads them from __init__
@register("ela-cnn", family="deep", description="ELA image (grey, JPEG q90, x32) -> small CNN trained from scratch",
          arch="small", input_size=128, epochs=12, lr=2e-3, patience=4)
@register("ela-cnn-lite0", family="deep",
          description="ELA image (grey, JPEG q90, x32) -> EfficientNet-Lite0 from ImageNet weights, fine-tuned",
          arch="efficientnet-lite0", input_size=128, epochs=4, lr=3e-4, patience=2)
class ELACNNDetector(TorchDetector):
    arch: str = "small"
    input_size: int = 128
    ela_quality: int = 90
    ela_color: bool = False
    ela_gain: float = 32.0
    width: int = 32
    epochs: int = 12
    batch_size: int = 32
    lr: float = 0.002
    weight_decay: float = 0.01
    warmup_epochs: float = 0.5
    augment: bool = True
    pretrained: bool = True
    patience: int = 4
    seed: int = 0
    device: str = "auto"
    workers: int | None = 0
    checkpoint_dir: str | None = None

    # The small network sees ELA levels scaled to [0, 1]; Lite0 the ImageNet statistics it was trained with.
    @property
    def mean(self) -> tuple[float, ...]:
        return UNIT_SCALE[0] if self.arch == "small" else IMAGENET_MEAN

    @property
    def std(self) -> tuple[float, ...]:
        return UNIT_SCALE[1] if self.arch == "small" else IMAGENET_STD

    def build_model(self, *, pretrained: bool) -> nn.Module:
        if self.arch not in ARCHES:
            raise ValueError(f"unknown ela-cnn arch {self.arch!r}; choose from {', '.join(ARCHES)}")
        if self.arch == "small":
            return SmallELANet(width=int(self.width))
        from dflab.detectors.deep.cnn import build_network
        from dflab.detectors.deep.pretrained import load_imagenet

        net = build_network(self.arch)
        if pretrained:
            load_imagenet(net, self.arch)
        return net

    def _dataset(self, sources, labels=None, *, train: bool = False, blend=None, faces=None) -> ELADataset:
        return ELADataset(sources, labels, input_size=self.input_size, mean=self.mean, std=self.std, seed=self.seed,
                          quality=self.ela_quality, color=self.ela_color, gain=self.ela_gain,
                          photo_augmentation=ELA_SAFE_AUGMENTATION if (train and self.augment) else None)

    def explain(self, image: ImageLike) -> np.ndarray:
        """The ELA map (grey levels, scaled to [0, 1]) times the network's Grad-CAM, rescaled to [0, 1]."""
        self._check_fitted()
        picture = load_image(image)
        network_input = resize_square(ela_input(picture, self.ela_quality, self.ela_color, self.ela_gain),
                                      self.input_size)
        device = self._device()
        model = self.model_.to(device).eval()
        # The small network's last block ends in BatchNorm + ReLU: Grad-CAM on what the head sees
        # (the ReLU's output), not on the raw convolution whose sign BatchNorm may still shift.
        layer = model.features if isinstance(model, SmallELANet) else None
        saliency = grad_cam(model, to_tensor(network_input, self.mean, self.std)[None].to(device), layer)
        saliency = cv2.resize(np.asarray(saliency, np.float32), (picture.shape[1], picture.shape[0]),
                              interpolation=cv2.INTER_LINEAR)
        error = ela_input(picture, self.ela_quality, self.ela_color, self.ela_gain).max(axis=2).astype(np.float32)
        weighted = error * np.clip(saliency, 0, None)
        peak = float(weighted.max())
        return weighted / peak if peak > 0 else np.zeros(picture.shape[:2], np.float32)
