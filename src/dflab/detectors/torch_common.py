"""Shared PyTorch machinery for the deep detectors: data, augmentation, training, inference, state.

* :class:`ImageDataset` turns sources (paths or arrays) into normalised tensors at the model's input
  size; with ``augment=True`` it applies flip, colour jitter, small blur, rescale and JPEG
  re-compression, drawn from a generator seeded by (seed, epoch, index), so a run is repeatable
  whatever the number of loader workers and survives a resume.
* :func:`train_binary` fits a one-logit network with AdamW, a warm-up + cosine schedule and
  BCE-with-logits, channels-last, mixed precision on CUDA only; with a validation set it keeps the
  epoch of best validation AUC and stops early. With a ``checkpoint_dir`` every epoch is saved
  (safetensors + JSON, never pickles) and an interrupted run resumes where it stopped.
* :func:`predict_logits` scores batches under ``torch.inference_mode``; unusable files give NaN.
* :class:`TorchDetector` wires these into the :class:`~dflab.detectors.base.Detector` contract;
  its saved state is the network's ``state_dict`` as NumPy arrays.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import cv2
import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch import nn
from torch.utils.data import DataLoader, Dataset

from dflab.framing import locate_faces, reframe, square_region
from dflab.images import ImageError, ImageLike, load_image, probe_image, source_name
from dflab.progress import info, progress_bar, warn
from dflab.sbi import sbi_grid, self_blend
from dflab.detectors.base import Detector, as_sources, as_training_set, require_both_classes

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Pixels scaled to [0, 1] and left there (MesoNet's convention).
UNIT_SCALE = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))

CHECKPOINT_STATE = "state.json"
CHECKPOINT_MODEL = "model.safetensors"
CHECKPOINT_BEST = "best.safetensors"
CHECKPOINT_OPTIMIZER = "optimizer.safetensors"


# -- devices and seeds --------------------------------------------------------------------------

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


# -- images -> tensors --------------------------------------------------------------------------

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


@dataclass(frozen=True)
class Augmentation:
    """Training augmentation on RGB uint8 images; each transform fires with its probability."""

    flip: float = 0.5
    colour: float = 0.8
    colour_strength: float = 0.2
    blur: float = 0.2
    blur_sigma: tuple[float, float] = (0.2, 1.2)
    rescale: float = 0.3
    rescale_range: tuple[float, float] = (0.5, 0.9)
    jpeg: float = 0.5
    jpeg_quality: tuple[int, int] = (50, 95)

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        h, w = image.shape[:2]
        if rng.random() < self.flip:
            image = image[:, ::-1]
        if rng.random() < self.rescale:
            # Down and up again: the resampling blur of a face pasted at another scale.
            factor = rng.uniform(*self.rescale_range)
            small = cv2.resize(image, (max(1, round(w * factor)), max(1, round(h * factor))),
                               interpolation=cv2.INTER_AREA)
            image = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
        if rng.random() < self.blur:
            image = cv2.GaussianBlur(np.ascontiguousarray(image), (0, 0), rng.uniform(*self.blur_sigma))
        if rng.random() < self.colour:
            image = self._colour(image, rng)
        if rng.random() < self.jpeg:
            quality = int(rng.integers(self.jpeg_quality[0], self.jpeg_quality[1] + 1))
            ok, data = cv2.imencode(".jpg", np.ascontiguousarray(image[:, :, ::-1]),
                                    [cv2.IMWRITE_JPEG_QUALITY, quality])
            if ok:
                image = cv2.imdecode(data, cv2.IMREAD_COLOR)[:, :, ::-1]
        return np.ascontiguousarray(image)

    def _colour(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        s = self.colour_strength
        x = image.astype(np.float32)
        x = x * rng.uniform(1 - s, 1 + s)  # brightness
        grey = x.mean(axis=2, keepdims=True)
        x = grey + (x - grey) * rng.uniform(1 - s, 1 + s)  # saturation
        x = x.mean() + (x - x.mean()) * rng.uniform(1 - s, 1 + s)  # contrast
        return np.clip(x, 0, 255).astype(np.uint8)


class ImageDataset(Dataset):
    """Sources -> ``(tensor, label, error)``; ``error`` is "" or the reason the image is unusable
    (the tensor is then zeros), so a bad file never stops a batch and the caller decides.

    ``faces`` + ``crop_scale``: the crop policy of :mod:`dflab.framing` (one face location or None
    per source). ``blend``: per item, whether to self-blend it (:func:`dflab.sbi.self_blend`, with
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


# -- state dicts <-> NumPy / other naming -------------------------------------------------------

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


# -- training -----------------------------------------------------------------------------------

@dataclass
class TrainSettings:
    epochs: int = 3
    batch_size: int = 32
    lr: float = 3e-4
    weight_decay: float = 1e-2
    warmup_epochs: float = 0.5
    patience: int = 2
    seed: int = 0
    workers: int | None = 0
    checkpoint_dir: str | None = None


def lr_factor(step: int, warmup_steps: int, total_steps: int) -> float:
    """Linear warm-up from ~0 to 1 over ``warmup_steps``, then cosine decay to 0 at ``total_steps``."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def _autocast(device: torch.device):
    if device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return torch.autocast("cpu", enabled=False)


def ready_for_inference(model: nn.Module, device: torch.device) -> nn.Module:
    """The model on ``device`` with channels-last weights; for a model already prepared the ``to``
    calls are skipped (they walk every module: about 2 ms a call, 1% of scoring 64 images with Meso4)."""
    if any(p.device != device or (p.dim() == 4 and not p.is_contiguous(memory_format=torch.channels_last))
           for p in model.parameters()):
        model.to(device).to(memory_format=torch.channels_last)
    return model


def _batch_to(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    return x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)


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
                with _autocast(device):
                    out = forward(_batch_to(x[torch.from_numpy(ok)] if not ok.all() else x, device))
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


def _mirror_averaged(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """Test-time augmentation: the mean of the logits of each image and its left-right mirror (a face's
    mirror is as plausible a face, so the two views disagree only through the network's noise)."""
    def forward(x: torch.Tensor) -> torch.Tensor:
        return (model(x) + model(x.flip(3))) / 2
    return forward


def _valid_auc(model, dataset, settings, device) -> float:
    logits, _ = predict_logits(model, dataset, batch_size=settings.batch_size, device=device,
                               workers=settings.workers, description="validation")
    ok = ~np.isnan(logits)
    return float(roc_auc_score(dataset.labels[ok], logits[ok]))


def _write_json_atomic(path: Path, payload: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True))
    tmp.replace(path)


def _save_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    from safetensors.torch import save_file

    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp))
    tmp.replace(path)


def _optimizer_to_files(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, slots in state["state"].items():
        for name, value in slots.items():
            if torch.is_tensor(value):
                tensors[f"{index}.{name}"] = value
            else:
                scalars[f"{index}.{name}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _optimizer_from_files(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    slots: dict[int, dict[str, Any]] = {}
    for key, value in list(tensors.items()) + list(meta["scalars"].items()):
        index, name = key.split(".", 1)
        slots.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": slots, "param_groups": meta["param_groups"]})


def train_binary(model: nn.Module, train_set: ImageDataset, valid_set: ImageDataset | None,
                 settings: TrainSettings, *, device: torch.device,
                 parameters: Iterable[nn.Parameter] | None = None, fingerprint: dict | None = None,
                 name: str = "model") -> dict:
    """Train ``model`` (one logit = fake) in place; returns the history. See the module docstring."""
    torch.manual_seed(settings.seed)
    model.to(device).to(memory_format=torch.channels_last)
    params = [p for p in (parameters if parameters is not None else model.parameters()) if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
    steps_per_epoch = max(1, math.ceil(len(train_set) / settings.batch_size))
    total_steps = steps_per_epoch * settings.epochs
    warmup_steps = int(round(settings.warmup_epochs * steps_per_epoch))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, warmup_steps, total_steps))
    use_fp16_scaler = device.type == "cuda" and not torch.cuda.is_bf16_supported()
    scaler = torch.amp.GradScaler("cuda", enabled=use_fp16_scaler)
    loss_fn = nn.BCEWithLogitsLoss()
    if valid_set is not None and len(np.unique(valid_set.labels)) < 2:
        warn(f"{name}: validation set has one class only; no early stopping")
        valid_set = None

    run_id = hashlib.sha256(json.dumps({"settings": asdict(settings) | {"workers": None, "checkpoint_dir": None},
                                        "n_train": len(train_set), "fingerprint": fingerprint or {}},
                                       sort_keys=True, default=str).encode()).hexdigest()[:16]
    history: list[dict] = []
    best = {"auc": -1.0, "epoch": -1, "state": None}
    bad_epochs, start_epoch = 0, 0
    folder = Path(settings.checkpoint_dir) if settings.checkpoint_dir else None
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        start_epoch, history, best, bad_epochs = _resume(folder, run_id, model, optimizer, scheduler, best, name)

    for epoch in range(start_epoch, settings.epochs):
        if valid_set is not None and bad_epochs >= settings.patience:
            info(f"{name}: early stop after epoch {epoch} (no validation AUC gain for {bad_epochs} epochs)")
            break
        started = time.perf_counter()
        torch.manual_seed(settings.seed * 1_000_003 + epoch)  # dropout / drop-path, repeatable on resume
        train_set.set_epoch(epoch)
        loader = make_loader(train_set, batch_size=settings.batch_size, shuffle=True, workers=settings.workers,
                             seed=settings.seed * 1_000_003 + epoch, device=device)
        model.train()
        losses, skipped = [], 0
        with progress_bar(f"{name}: epoch {epoch + 1}/{settings.epochs}", len(train_set)) as advance:
            for x, y, errors in loader:
                ok = torch.as_tensor([not e for e in errors])
                skipped += int((~ok).sum())
                # A one-image batch is skipped: BatchNorm1d heads (ICPR ST) cannot train on it.
                if ok.sum() >= 2:
                    x, y = _batch_to(x[ok], device), y[ok].float().to(device)
                    with _autocast(device):
                        logits = model(x).reshape(-1)
                    loss = loss_fn(logits.float(), y)
                    optimizer.zero_grad(set_to_none=True)
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                    losses.append(float(loss.detach()))
                scheduler.step()
                advance(len(errors))
        record = {"epoch": epoch + 1, "train_loss": float(np.mean(losses)) if losses else float("nan"),
                  "lr": float(optimizer.param_groups[0]["lr"]), "skipped": skipped,
                  "seconds": round(time.perf_counter() - started, 1)}
        if skipped:
            warn(f"{name}: {skipped} unusable training images skipped in epoch {epoch + 1}")
        if valid_set is not None:
            record["valid_auc"] = _valid_auc(model, valid_set, settings, device)
            if record["valid_auc"] > best["auc"]:
                best = {"auc": record["valid_auc"], "epoch": epoch + 1,
                        "state": {k: v.detach().clone() for k, v in model.state_dict().items()}}
                bad_epochs = 0
            else:
                bad_epochs += 1
        history.append(record)
        info(f"{name}: epoch {epoch + 1}/{settings.epochs} loss {record['train_loss']:.4f}"
             + (f" valid AUC {record['valid_auc']:.4f}" if "valid_auc" in record else "")
             + f" ({record['seconds']} s)")
        if folder is not None:
            _checkpoint(folder, run_id, epoch + 1, model, optimizer, scheduler, history, best, bad_epochs)

    if best["state"] is not None:
        model.load_state_dict(best["state"])
    model.eval()
    return {"history": history, "best_epoch": best["epoch"] if best["state"] is not None else len(history),
            "best_valid_auc": best["auc"] if best["state"] is not None else None, "device": str(device)}


def _checkpoint(folder, run_id, epochs_done, model, optimizer, scheduler, history, best, bad_epochs) -> None:
    """Every tensor file of a checkpoint is named after its epoch and written before ``state.json``,
    which names them and is replaced atomically last: a run killed at any moment resumes from the
    last complete checkpoint, never from a mix of two epochs or a half-written file."""
    names = {"model": f"model-e{epochs_done}.safetensors", "optimizer": f"optimizer-e{epochs_done}.safetensors"}
    _save_tensors(folder / names["model"], model.state_dict())
    if best["state"] is not None:
        names["best"] = f"best-e{best['epoch']}.safetensors"
        if not (folder / names["best"]).exists():
            _save_tensors(folder / names["best"], best["state"])
    tensors, meta = _optimizer_to_files(optimizer)
    _save_tensors(folder / names["optimizer"], tensors)
    sched = {k: v for k, v in scheduler.state_dict().items() if k != "lr_lambdas"}
    _write_json_atomic(folder / CHECKPOINT_STATE, {
        "run_id": run_id, "epochs_done": epochs_done, "history": history, "best_auc": best["auc"],
        "best_epoch": best["epoch"], "bad_epochs": bad_epochs, "optimizer": meta, "scheduler": sched,
        "files": names})
    for stale in folder.glob("*.safetensors"):
        if stale.name not in names.values():
            stale.unlink(missing_ok=True)


def _resume(folder, run_id, model, optimizer, scheduler, best, name):
    state_path = folder / CHECKPOINT_STATE
    if not state_path.exists():
        return 0, [], best, 0
    from safetensors.torch import load_file

    state = json.loads(state_path.read_text())
    if state.get("run_id") != run_id:
        raise ValueError(f"{folder}: holds a checkpoint of a different training run (other settings or data); "
                         "use another checkpoint_dir or empty this one")
    # Checkpoints written before epoch-named files used fixed names.
    names = state.get("files") or {"model": CHECKPOINT_MODEL, "optimizer": CHECKPOINT_OPTIMIZER,
                                   "best": CHECKPOINT_BEST}
    model.load_state_dict(load_file(str(folder / names["model"])), strict=True)
    _optimizer_from_files(optimizer, load_file(str(folder / names["optimizer"])), state["optimizer"])
    scheduler.load_state_dict({**state["scheduler"], "lr_lambdas": [None] * len(optimizer.param_groups)})
    if "best" in names and (folder / names["best"]).exists():
        best = {"auc": state["best_auc"], "epoch": state["best_epoch"],
                "state": load_file(str(folder / names["best"]))}
    info(f"{name}: resuming from {folder} after epoch {state['epochs_done']}")
    return state["epochs_done"], state["history"], best, state["bad_epochs"]


# -- pairs and triplets for metric learning (siamese network, ICPR "ST" features) --------------------

def pair_links(data: Any) -> np.ndarray | None:
    """The manifest's ``pair`` column (the real<->fake source link) as strings, "" where unknown;
    None when the training data carries no links (a tuple, or a manifest without the column)."""
    import pandas as pd

    if not isinstance(data, pd.DataFrame) or "pair" not in data.columns:
        return None
    links = np.asarray(["" if (p is None or (isinstance(p, float) and math.isnan(p))) else str(p)
                        for p in data["pair"]], dtype=object)
    return links if (links != "").any() else None


def _partner(candidates: np.ndarray, videos: np.ndarray, video: str, rng: np.random.Generator,
             tries: int = 8) -> int:
    """A random index from ``candidates`` whose video is not ``video``; -1 when there is none."""
    if len(candidates) == 0:
        return -1
    for _ in range(tries):  # rejection sampling: cheap when the class spans many videos
        pick = candidates[rng.integers(len(candidates))]
        if videos[pick] != video:
            return int(pick)
    others = candidates[videos[candidates] != video]
    return int(others[rng.integers(len(others))]) if len(others) else -1


def sample_pairs(labels: np.ndarray, videos: np.ndarray, links: np.ndarray | None, n_pairs: int,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(first, second, similar)`` index pairs for contrastive training, half of each kind:

    * dissimilar (similar=0): a fake frame and a frame of the real video it was made from (its
      ``links`` value); a fake without a known source gets a real frame of another video;
    * similar (similar=1): two frames of the same class from different videos.

    Two frames of one video are never paired (a real and a fake never share a video id either).
    """
    labels, videos = np.asarray(labels), np.asarray(videos).astype(str)
    reals, fakes = np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)
    if len(reals) == 0 or len(fakes) == 0:
        raise ValueError("pairs need both real and fake images")
    by_link: dict[str, np.ndarray] = {}
    if links is not None:
        links = np.asarray(links, dtype=object)
        real_links = links[reals]
        for link in set(real_links) - {""}:
            by_link[link] = reals[real_links == link]
    first, second, similar = [], [], []
    n_dissimilar = n_pairs // 2
    for fake in fakes[rng.integers(len(fakes), size=n_dissimilar)]:
        own = by_link.get(links[fake], np.empty(0, np.int64)) if links is not None else np.empty(0, np.int64)
        real = _partner(own, videos, videos[fake], rng)
        if real < 0:
            real = _partner(reals, videos, videos[fake], rng)
        if real >= 0:
            first.append(real), second.append(int(fake)), similar.append(0.0)
    for anchor in rng.integers(len(labels), size=n_pairs - n_dissimilar):
        same = reals if labels[anchor] == 0 else fakes
        partner = _partner(same, videos, videos[anchor], rng)
        if partner >= 0:
            first.append(int(anchor)), second.append(partner), similar.append(1.0)
    order = rng.permutation(len(first))
    return (np.asarray(first, np.int64)[order], np.asarray(second, np.int64)[order],
            np.asarray(similar, np.float32)[order])


def sample_triplets(labels: np.ndarray, videos: np.ndarray, rng: np.random.Generator,
                    links: np.ndarray | None = None) -> np.ndarray:
    """(n, 3) rows ``anchor, positive, negative``: every image once as anchor (shuffled), a positive of
    its class and a negative of the other class, each from another video than the anchor's. With
    ``links``, half the negatives of a fake anchor are frames of its own source video (the hardest
    negative: the same face without the manipulation)."""
    labels, videos = np.asarray(labels), np.asarray(videos).astype(str)
    by_class = {0: np.flatnonzero(labels == 0), 1: np.flatnonzero(labels == 1)}
    own_source: dict[str, np.ndarray] = {}
    if links is not None:
        links = np.asarray(links, dtype=object)
        for link in set(links[by_class[0]]) - {""}:
            own_source[link] = by_class[0][links[by_class[0]] == link]
    rows = []
    for anchor in rng.permutation(len(labels)):
        label = int(labels[anchor])
        positive = _partner(by_class[label], videos, videos[anchor], rng)
        negative = -1
        if label == 1 and links is not None and links[anchor] in own_source and rng.random() < 0.5:
            negative = _partner(own_source[links[anchor]], videos, videos[anchor], rng)
        if negative < 0:
            negative = _partner(by_class[1 - label], videos, videos[anchor], rng)
        if positive >= 0 and negative >= 0:
            rows.append((int(anchor), positive, negative))
    return np.asarray(rows, dtype=np.int64).reshape(-1, 3)


class TupleDataset(Dataset):
    """Rows of image indices into an :class:`ImageDataset` -> ``(k images stacked, target, error)``."""

    def __init__(self, images: ImageDataset, rows: np.ndarray, targets: np.ndarray | None = None):
        self.images, self.rows = images, np.asarray(rows, dtype=np.int64)
        self.targets = np.zeros(len(self.rows), np.float32) if targets is None else np.asarray(targets, np.float32)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int):
        items = [self.images[int(i)] for i in self.rows[index]]
        error = "; ".join(e for _, _, e in items if e)
        return torch.stack([x for x, _, _ in items]), float(self.targets[index]), error


def contrastive_loss(first: torch.Tensor, second: torch.Tensor, similar: torch.Tensor,
                     margin: float) -> torch.Tensor:
    """Hadsell, Chopra & LeCun (2006): similar pairs pulled together (d^2), dissimilar pairs pushed
    to at least ``margin`` apart (max(0, margin - d)^2)."""
    distance = torch.linalg.vector_norm(first - second, dim=1)
    return 0.5 * (similar * distance.pow(2) + (1 - similar) * torch.relu(margin - distance).pow(2)).mean()


def train_metric(model: nn.Module, images: ImageDataset, make_rows: Callable[[int], tuple[np.ndarray, np.ndarray | None]],
                 loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], settings: TrainSettings, *,
                 device: torch.device, embed: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 parameters: Iterable[nn.Parameter] | None = None, name: str = "model") -> dict:
    """Metric learning on tuples of images (pairs, triplets): each epoch ``make_rows(epoch)`` gives
    the rows of image indices (and a target per row); the k images of a batch of rows go through
    ``embed`` (default ``model``) in one pass and ``loss_fn(embeddings (B, k, D), targets)`` is
    minimised with AdamW and the warm-up + cosine schedule of :func:`train_binary`. Returns the history."""
    torch.manual_seed(settings.seed)
    embed = embed or model
    model.to(device).to(memory_format=torch.channels_last)
    params = [p for p in (parameters if parameters is not None else model.parameters()) if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
    rows0, _ = make_rows(0)
    steps_per_epoch = max(1, math.ceil(len(rows0) / settings.batch_size))
    total_steps = steps_per_epoch * settings.epochs
    warmup_steps = int(round(settings.warmup_epochs * steps_per_epoch))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, warmup_steps, total_steps))
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and not torch.cuda.is_bf16_supported())
    history = []
    for epoch in range(settings.epochs):
        started = time.perf_counter()
        torch.manual_seed(settings.seed * 1_000_003 + epoch)
        rows, targets = (rows0, _) if epoch == 0 else make_rows(epoch)
        if len(rows) == 0:
            raise ValueError(f"{name}: no training pairs/triplets could be formed (needs several videos per class)")
        images.set_epoch(epoch)
        # Rows are drawn at random already; a plain loader keeps their order.
        loader = make_loader(TupleDataset(images, rows, targets), batch_size=settings.batch_size,
                             workers=settings.workers, device=device)
        model.train()
        losses, skipped = [], 0
        with progress_bar(f"{name}: metric epoch {epoch + 1}/{settings.epochs}", len(rows)) as advance:
            for x, target, errors in loader:
                ok = torch.as_tensor([not e for e in errors])
                skipped += int((~ok).sum())
                if ok.sum() >= 2:  # BatchNorm needs more than one row
                    x, target = x[ok], target[ok].float().to(device)
                    b, k = x.shape[:2]
                    with _autocast(device):
                        out = embed(_batch_to(x.reshape(b * k, *x.shape[2:]), device))
                    loss = loss_fn(out.float().reshape(b, k, -1), target)
                    optimizer.zero_grad(set_to_none=True)
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                    losses.append(float(loss.detach()))
                scheduler.step()
                advance(len(errors))
        record = {"epoch": epoch + 1, "train_loss": float(np.mean(losses)) if losses else float("nan"),
                  "rows": int(len(rows)), "skipped": skipped, "seconds": round(time.perf_counter() - started, 1)}
        history.append(record)
        info(f"{name}: metric epoch {epoch + 1}/{settings.epochs} loss {record['train_loss']:.4f} "
             f"({record['seconds']} s)")
    model.eval()
    return {"history": history, "device": str(device)}


# -- explanation --------------------------------------------------------------------------------

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


# -- the Detector wiring ------------------------------------------------------------------------

#: Parameters that change how a trained network is run, not how it is trained.
SCORING_ONLY_PARAMS = ("checkpoint_dir", "test_flip")


class TorchDetector(Detector):
    """A Detector around one PyTorch network with one output logit.

    Subclasses set their parameters in ``__init__`` (at least ``input_size``, ``epochs``,
    ``batch_size``, ``lr``, ``weight_decay``, ``warmup_epochs``, ``augment``, ``patience``, ``seed``,
    ``device``, ``workers``, ``checkpoint_dir``) and implement :meth:`build_model`.
    """

    #: Input normalisation after scaling pixels to [0, 1].
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD

    def build_model(self, *, pretrained: bool) -> nn.Module:
        raise NotImplementedError

    def trainable_parameters(self, model: nn.Module) -> Iterable[nn.Parameter]:
        return model.parameters()

    def fingerprint(self) -> dict:
        """What makes two trainings the same run (for resuming checkpoints)."""
        params = {k: str(v) for k, v in self.model_params().items() if k not in SCORING_ONLY_PARAMS}
        return {"detector": self.name, "params": params}

    def scores_from_logits(self, logits: np.ndarray) -> np.ndarray:
        """P(fake) from the network's logit."""
        return 1.0 / (1.0 + np.exp(-logits))

    def _device(self) -> torch.device:
        return resolve_device(getattr(self, "device", "auto"))

    def _faces(self, sources) -> list | None:
        """Face locations for the crop policy and self-blend masks (None when neither is used)."""
        if not getattr(self, "crop_scale", None) and getattr(self, "self_blend", "off") == "off":
            return None
        return locate_faces(sources, description=f"{self.name}: locating faces")

    def _dataset(self, sources, labels=None, *, train: bool = False, blend=None, faces=None) -> ImageDataset:
        if faces is None:
            faces = self._faces(sources)
        return ImageDataset(sources, labels, input_size=self.input_size, mean=self.mean, std=self.std,
                            augmentation=Augmentation() if (train and self.augment) else None, seed=self.seed,
                            faces=faces, crop_scale=getattr(self, "crop_scale", None), blend=blend)

    def _training_set(self, train) -> ImageDataset:
        """The training images; with ``self_blend`` "only" every real image also appears self-blended
        as a fake (the real fakes are left out), with "mix" the real fakes stay too."""
        sources, labels, _ = as_training_set(train)
        mode = getattr(self, "self_blend", "off")
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
                             faces=[faces[i] for i in order])

    def self_blend_examples(self, sources, out_path, *, n: int = 4) -> Path | None:
        """A PNG grid of self-blended examples (real | blend | mask) of the first ``n`` sources, as
        this detector makes them in training (same framing and masks); None when self_blend is off."""
        if getattr(self, "self_blend", "off") == "off":
            return None
        sources = list(sources)[:n]
        images, landmarks = [], []
        for source, face in zip(sources, self._faces(sources)):
            image, points = reframe(load_image(source), face, getattr(self, "crop_scale", None))
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
        model = self.build_model(pretrained=bool(getattr(self, "pretrained", False)))
        settings = TrainSettings(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
                                 weight_decay=self.weight_decay, warmup_epochs=self.warmup_epochs,
                                 patience=self.patience, seed=self.seed, workers=self.workers,
                                 checkpoint_dir=self.checkpoint_dir)
        model.to(device)
        self.training_ = train_binary(model, train_set, valid_set, settings,
                                      device=device, parameters=self.trainable_parameters(model),
                                      fingerprint=self.fingerprint(), name=self.name)
        self.model_ = model
        self.fitted_ = True
        return self

    def predict_proba(self, images, *, on_error: str = "raise") -> np.ndarray:
        self._check_fitted()
        if on_error not in ("raise", "nan"):
            raise ValueError(f"on_error must be 'raise' or 'nan', not {on_error!r}")
        sources = as_sources(images)
        device = self._device()
        model = ready_for_inference(self.model_, device)
        forward = _mirror_averaged(model) if getattr(self, "test_flip", False) else None
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
        crop_scale = getattr(self, "crop_scale", None)
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
        return {**state_to_numpy(self.model_, prefix="model."), "training": getattr(self, "training_", {})}

    def _set_state(self, state: dict[str, Any]) -> None:
        model = self.build_model(pretrained=False)
        numpy_to_model(model, {k: v for k, v in state.items() if isinstance(v, np.ndarray)}, prefix="model.")
        model.eval()
        self.model_ = model
        self.training_ = state.get("training", {})
