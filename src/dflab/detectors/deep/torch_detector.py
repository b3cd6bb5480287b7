"""``TorchDetector``: the PyTorch side of the detector contract (fit through the one training loop, predict_proba, Grad-CAM explanations, state)."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any, Iterable

import cv2
import numpy as np
import torch
from torch import nn

from dflab.augment.sbi import sbi_grid
from dflab.augment.policy import PRESETS as AUGMENTATIONS
from dflab.detectors.base import Detector, as_sources, as_training_set, require_both_classes
from dflab.detectors.deep.onnx_backend import GRAPH_FILE, bind_graph, graph_from_state, scoring_network
from dflab.detectors.deep.forward import mirror_averaged, predict_outputs, ready_for_inference
from dflab.detectors.deep.state import numpy_to_model, state_to_numpy
from dflab.detectors.deep.tensors import IMAGENET_MEAN, IMAGENET_STD, ImageDataset, resize_square, resolve_device, to_tensor
from dflab.detectors.deep.training import TrainSettings, train_binary
from dflab.faces.framing import locate_faces, reframe, square_region
from dflab.media.images import ImageError, ImageLike, load_image, probe_image, source_name


def last_convolution(model: nn.Module) -> nn.Module:
    """The network's last ``Conv2d`` in registration order: the deepest spatial features of every
    CNN here (EfficientNet's ``conv_head``, Xception's last separable conv, MesoNet's last conv)."""
    convolutions = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convolutions:
        raise NotImplementedError(f"{type(model).__name__} has no convolution to explain")
    return convolutions[-1]


def grad_cam(model: nn.Module, x: torch.Tensor, layer: nn.Module | None = None) -> np.ndarray:
    """Grad-CAM map (H', W') in [0, 1] of the one-logit ``model`` for a batch of one image ``x``."""
    layer = layer or last_convolution(model)
    captured: dict[str, torch.Tensor] = {}

    def keep(_module, _inputs, output):
        output.retain_grad()
        captured["features"] = output

    handle = layer.register_forward_hook(keep)
    try:
        with torch.enable_grad():
            logit = model(x.requires_grad_(True)).reshape(-1)[0]
            model.zero_grad(set_to_none=True)
            logit.backward()
    finally:
        handle.remove()
    features = captured["features"].detach()[0]
    gradients = captured["features"].grad.detach()[0]
    cam = torch.relu((gradients.mean(dim=(1, 2))[:, None, None] * features).sum(dim=0))
    peak = float(cam.max())
    return (cam / peak).float().cpu().numpy() if peak > 0 else np.zeros(cam.shape, np.float32)


#: Parameters that change how a trained network is run, not how it is trained.
SCORING_ONLY_PARAMS = ("checkpoint_dir", "test_flip", "logit_scale", "logit_shift")


class TorchDetector(Detector):
    """A Detector around one PyTorch network with one output logit.

    Subclasses set their parameters in ``__init__`` (at least ``input_size``, ``epochs``,
    ``batch_size``, ``lr``, ``weight_decay``, ``warmup_epochs``, ``augment``, ``patience``, ``seed``,
    ``device``, ``workers``, ``checkpoint_dir``) and implement :meth:`build_model`.
    """

    #: Input normalisation after scaling pixels to [0, 1].
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    # What a subclass without these parameters means: no re-framing, no self-blending, random
    # initialisation, one view per image at scoring, the network run as :mod:`~dflab.detectors.deep.onnx_backend` decides.
    crop_scale: float | None = None
    self_blend: str = "off"
    augment_preset: str = "standard"
    sbi_mask: str = "landmarks"
    pretrained: bool = False
    test_flip: bool = False
    logit_scale: float = 1.0
    logit_shift: float = 0.0
    device: str = "auto"
    backend: str = "auto"
    # Fitted state: the network, the training history and an exported graph, until there are some.
    model_ = None
    training_: dict = {}
    onnx_ = None

    def build_model(self, *, pretrained: bool) -> nn.Module:
        raise NotImplementedError

    def trainable_parameters(self, model: nn.Module) -> Iterable[nn.Parameter]:
        return model.parameters()

    def train_settings(self, **overrides) -> TrainSettings:
        """The training settings this detector's parameters give; a stage overrides what differs (a
        metric-learning stage's epochs, rows per batch, learning rate)."""
        params = self.get_params(deep=False)
        return TrainSettings(**{**{f.name: params[f.name] for f in fields(TrainSettings) if f.name in params},
                                **overrides})

    def fingerprint(self) -> dict:
        """What makes two trainings the same run (for resuming checkpoints)."""
        params = {k: str(v) for k, v in self.model_params().items() if k not in SCORING_ONLY_PARAMS}
        return {"detector": self.name, "params": params}

    def scores_from_logits(self, logits: np.ndarray) -> np.ndarray:
        """P(fake) from the network's logit, through the Platt scaling ``logit_scale`` x logit +
        ``logit_shift`` fitted on validation data (1 and 0, the identity, until one is fitted)."""
        if self.logit_scale != 1.0 or self.logit_shift != 0.0:
            logits = self.logit_scale * np.asarray(logits, dtype=np.float64) + self.logit_shift
        return 1.0 / (1.0 + np.exp(-logits))

    def _device(self) -> torch.device:
        return resolve_device(self.device)

    def _faces(self, sources) -> list | None:
        """Face locations for the crop policy and self-blend masks (None when neither is used)."""
        if not self.crop_scale and (self.self_blend == "off" or self.sbi_mask == "ellipse"):
            return None
        return locate_faces(sources, description=f"{self.name}: locating faces")

    def _dataset(self, sources, labels=None, *, train: bool = False, blend=None, faces=None) -> ImageDataset:
        if faces is None:
            faces = self._faces(sources)
        return ImageDataset(sources, labels, input_size=self.input_size, mean=self.mean, std=self.std,
                            augmentation=self._augmentation() if (train and self.augment) else None, seed=self.seed,
                            faces=faces, crop_scale=self.crop_scale, blend=blend)

    def _augmentation(self):
        if self.augment_preset not in AUGMENTATIONS:
            raise ValueError(f"augment_preset must be one of {', '.join(AUGMENTATIONS)}, not {self.augment_preset!r}")
        return AUGMENTATIONS[self.augment_preset]

    def _training_set(self, train) -> ImageDataset:
        """The training images; with ``self_blend`` "only" every real image also appears self-blended
        as a fake (the real fakes are left out), with "mix" the real fakes stay too."""
        sources, labels, _ = as_training_set(train)
        mode = self.self_blend
        if mode not in ("off", "only", "mix"):
            raise ValueError(f"self_blend must be 'off', 'only' or 'mix', not {mode!r}")
        if mode == "off":
            reasons = {i: reason for i, reason in enumerate(map(probe_image, sources)) if reason}
            require_both_classes(self.name, labels, [i not in reasons for i in range(len(sources))], sources, reasons)
            return self._dataset(sources, labels, train=True)
        real = np.flatnonzero(labels == 0)
        if len(real) == 0:
            raise ValueError(f"{self.name}: self-blended training needs real images")
        fake = np.flatnonzero(labels == 1) if mode == "mix" else np.zeros(0, dtype=np.int64)
        order = np.concatenate([real, real, fake])
        faces = self._faces(sources)
        return self._dataset([sources[i] for i in order], np.r_[np.zeros(len(real)), np.ones(len(real) + len(fake))],
                             train=True, blend=np.r_[np.zeros(len(real), bool), np.ones(len(real), bool),
                                                     np.zeros(len(fake), bool)],
                             faces=None if faces is None else [faces[i] for i in order])

    def self_blend_examples(self, sources, out_path, *, n: int = 4) -> Path | None:
        """A PNG grid of self-blended examples (real | blend | mask) of the first ``n`` sources, as
        this detector makes them in training (same framing and masks); None when self_blend is off."""
        if self.self_blend == "off":
            return None
        sources = list(sources)[:n]
        images, landmarks = [], []
        for source, face in zip(sources, self._faces(sources)):
            image, points = reframe(load_image(source), face, self.crop_scale)
            images.append(image)
            landmarks.append(points)
        return sbi_grid(images, out_path, seed=self.seed, landmarks=landmarks)

    def fit(self, train, *, valid=None):
        train_set = self._training_set(train)
        valid_set = None
        if valid is not None:
            valid_sources, valid_labels, _ = as_training_set(valid)
            valid_set = self._dataset(valid_sources, valid_labels)
        device = self._device()
        torch.manual_seed(self.seed)
        model = self.build_model(pretrained=bool(self.pretrained))
        model.to(device)
        self.training_ = train_binary(model, train_set, valid_set, self.train_settings(),
                                      device=device, parameters=self.trainable_parameters(model),
                                      fingerprint=self.fingerprint(), name=self.name)
        self.model_ = model
        bind_graph(self, saved=False)  # backend "onnx": exported now, never while scoring
        return self

    def set_params(self, **params) -> "TorchDetector":
        """Set parameters; a trained network set to run with backend "onnx" is exported here, so that
        scoring never exports (:func:`~dflab.detectors.deep.onnx_backend.bind_graph`)."""
        super().set_params(**params)
        if "backend" in params:
            bind_graph(self)
        return self

    def predict_proba(self, images, *, on_error: str = "raise") -> np.ndarray:
        self._check_fitted()
        if on_error not in ("raise", "nan"):
            raise ValueError(f"on_error must be 'raise' or 'nan', not {on_error!r}")
        sources = as_sources(images)
        device = self._device()
        model = ready_for_inference(self.model_, device)
        network = scoring_network(self, model, device)  # PyTorch, or onnxruntime (``backend``)
        forward = mirror_averaged(network) if self.test_flip else network
        outputs, errors = predict_outputs(model, self._dataset(sources), batch_size=self.batch_size, device=device,
                                          workers=self.workers, description=f"{self.name}: scoring", forward=forward)
        logits = outputs[:, 0]
        if on_error == "raise":
            for source, error in zip(sources, errors):
                if error:
                    # The dataset's message is "<path>: <reason>"; re-raise it as the loader's error.
                    name = source_name(source)
                    raise ImageError(name, error[len(name) + 2:] if error.startswith(name + ": ") else error)
        return self.scores_from_logits(logits)

    def explain(self, image: ImageLike) -> np.ndarray:
        """Where the network saw forgery, in [0, 1], the size of the image (:meth:`explanation_map`).

        The network saw the image under the detector's crop policy: that region is explained and the
        map placed where the region lies in the picture (0 outside it)."""
        self._check_fitted()
        picture = load_image(image)
        left, top, right, bottom = 0, 0, picture.shape[1], picture.shape[0]
        crop_scale = self.crop_scale
        face = locate_faces([picture], description=f"{self.name}: locating faces")[0] if crop_scale else None
        if face is not None:
            left, top, right, bottom = square_region(face.box, crop_scale, *picture.shape[:2])
        region = resize_square(picture[top:bottom, left:right], self.input_size)
        device = self._device()
        model = self.model_.to(device).eval()
        region_map = self.explanation_map(to_tensor(region, self.mean, self.std)[None].to(device), model)
        heatmap = np.zeros(picture.shape[:2], dtype=np.float32)
        heatmap[top:bottom, left:right] = cv2.resize(np.asarray(region_map, np.float32), (right - left, bottom - top),
                                                     interpolation=cv2.INTER_LINEAR)
        return np.clip(heatmap, 0, 1)

    def explanation_map(self, x: torch.Tensor, model: nn.Module) -> np.ndarray:
        """Grad-CAM (Selvaraju et al., ICCV 2017) of the fake logit at the network's last convolution:
        its feature maps weighted by the spatial mean of their gradients, ReLU, scaled to [0, 1]."""
        return grad_cam(model, x)

    def _get_state(self) -> dict[str, Any]:
        state = {**state_to_numpy(self.model_, prefix="model."), "training": self.training_}
        graph = self.onnx_
        if graph is not None and graph.network is self.model_ and graph.saved:  # a graph of this very network
            state[GRAPH_FILE] = graph.graph
        return state

    def _set_state(self, state: dict[str, Any]) -> None:
        model = self.build_model(pretrained=False)
        numpy_to_model(model, {k: v for k, v in state.items() if isinstance(v, np.ndarray)}, prefix="model.")
        model.eval()
        self.model_ = model
        self.training_ = state.get("training", {})
        self.onnx_ = graph_from_state(state, model, self.name)
        bind_graph(self)
