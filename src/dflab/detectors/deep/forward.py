"""Batched forward passes: a network made ready for inference, its outputs over an image dataset
(unusable images as NaN rows with their reason), and the mirror test-time augmentation."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import nn

from dflab.detectors.deep.tensors import ImageDataset, make_loader, normalise_batch
from dflab.runtime.progress import progress_bar


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
