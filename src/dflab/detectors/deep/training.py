"""The one training loop of the deep detectors, with checkpoints.

:func:`train` fits a network in place with AdamW and a warm-up + cosine schedule, channels-last, mixed
precision on CUDA only, on an objective: :class:`BinaryObjective` (one logit per image, BCE-with-logits;
the detectors' task) or :class:`MetricObjective` (pairs/triplets and a metric loss; the siamese and
triplet stages). With a validation set it keeps the epoch of best validation AUC and stops early. With
a ``checkpoint_dir`` every epoch is saved (safetensors + JSON, never pickles) and an interrupted run
resumes where it stopped. :class:`TrainSettings` comes from a detector's parameters
(:meth:`TorchDetector.train_settings <dflab.detectors.deep.torch_detector.TorchDetector.train_settings>`).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch import nn

from dflab.detectors.deep.pairs import TupleDataset
from dflab.detectors.deep.forward import autocast, batch_to, predict_logits
from dflab.detectors.deep.tensors import ImageDataset, make_loader
from dflab.runtime.files import write_json_atomic
from dflab.runtime.progress import info, progress_bar, warn

CHECKPOINT_STATE = "state.json"


CHECKPOINT_MODEL = "model.safetensors"


CHECKPOINT_BEST = "best.safetensors"


CHECKPOINT_OPTIMIZER = "optimizer.safetensors"


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


def _valid_auc(model, dataset, settings, device) -> float:
    logits, _ = predict_logits(model, dataset, batch_size=settings.batch_size, device=device,
                               workers=settings.workers, description="validation")
    ok = ~np.isnan(logits)
    return float(roc_auc_score(dataset.labels[ok], logits[ok]))


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


class BinaryObjective:
    """The detectors' own task: one logit per image, BCE-with-logits against the label."""

    label = "epoch"

    def __init__(self, train_set: ImageDataset):
        self.train_set = train_set
        self.loss_fn = nn.BCEWithLogitsLoss()

    def items(self) -> int:
        return len(self.train_set)

    def loader(self, epoch: int, settings: TrainSettings, device: torch.device):
        self.train_set.set_epoch(epoch)
        return make_loader(self.train_set, batch_size=settings.batch_size, shuffle=True, workers=settings.workers,
                           seed=settings.seed * 1_000_003 + epoch, device=device), len(self.train_set), {}

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device) -> torch.Tensor:
        x, y = batch_to(x, device), y.float().to(device)
        with autocast(device):
            logits = model(x).reshape(-1)
        return self.loss_fn(logits.float(), y)


class MetricObjective:
    """Metric learning on tuples of images (pairs, triplets): each epoch ``make_rows(epoch)`` gives the
    rows of image indices (and a target per row); the k images of a batch of rows go through ``embed``
    in one pass and ``loss_fn(embeddings (B, k, D), targets)`` is minimised."""

    label = "metric epoch"

    def __init__(self, images: ImageDataset, make_rows: Callable[[int], tuple[np.ndarray, np.ndarray | None]],
                 loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                 embed: Callable[[torch.Tensor], torch.Tensor], name: str):
        self.images, self.make_rows, self.loss_fn, self.embed, self.name = images, make_rows, loss_fn, embed, name
        self.first_rows = make_rows(0)

    def items(self) -> int:
        return len(self.first_rows[0])

    def loader(self, epoch: int, settings: TrainSettings, device: torch.device):
        rows, targets = self.first_rows if epoch == 0 else self.make_rows(epoch)
        if len(rows) == 0:
            raise ValueError(f"{self.name}: no training pairs/triplets could be formed (needs several videos per class)")
        self.images.set_epoch(epoch)
        # Rows are drawn at random already; a plain loader keeps their order.
        return make_loader(TupleDataset(self.images, rows, targets), batch_size=settings.batch_size,
                           workers=settings.workers, device=device), len(rows), {"rows": int(len(rows))}

    def loss(self, model: nn.Module, x: torch.Tensor, target: torch.Tensor, device: torch.device) -> torch.Tensor:
        target = target.float().to(device)
        b, k = x.shape[:2]
        with autocast(device):
            out = self.embed(batch_to(x.reshape(b * k, *x.shape[2:]), device))
        return self.loss_fn(out.float().reshape(b, k, -1), target)


def train(model: nn.Module, objective, valid_set: ImageDataset | None, settings: TrainSettings, *,
          device: torch.device, parameters: Iterable[nn.Parameter] | None = None, fingerprint: dict | None = None,
          name: str = "model") -> dict:
    """The one training loop: ``model`` trained in place on ``objective`` (:class:`BinaryObjective` or
    :class:`MetricObjective`) with AdamW and a warm-up + cosine schedule; with a validation set it keeps
    the epoch of best validation AUC and stops early; with ``settings.checkpoint_dir`` every epoch is
    saved and an interrupted run resumes where it stopped. Returns the history."""
    torch.manual_seed(settings.seed)
    model.to(device).to(memory_format=torch.channels_last)
    params = [p for p in (parameters if parameters is not None else model.parameters()) if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
    steps_per_epoch = max(1, math.ceil(objective.items() / settings.batch_size))
    total_steps = steps_per_epoch * settings.epochs
    warmup_steps = int(round(settings.warmup_epochs * steps_per_epoch))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, warmup_steps, total_steps))
    use_fp16_scaler = device.type == "cuda" and not torch.cuda.is_bf16_supported()
    scaler = torch.amp.GradScaler("cuda", enabled=use_fp16_scaler)
    if valid_set is not None and len(np.unique(valid_set.labels)) < 2:
        warn(f"{name}: validation set has one class only; no early stopping")
        valid_set = None

    run_id = hashlib.sha256(json.dumps({"settings": asdict(settings) | {"workers": None, "checkpoint_dir": None},
                                        "n_train": objective.items(), "fingerprint": fingerprint or {}},
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
        loader, n_items, described = objective.loader(epoch, settings, device)
        model.train()
        losses, skipped = [], 0
        with progress_bar(f"{name}: {objective.label} {epoch + 1}/{settings.epochs}", n_items) as advance:
            for x, y, errors in loader:
                ok = torch.as_tensor([not e for e in errors])
                skipped += int((~ok).sum())
                # A one-item batch is skipped: BatchNorm layers (ICPR ST heads) cannot train on it.
                if ok.sum() >= 2:
                    loss = objective.loss(model, x[ok], y[ok], device)
                    optimizer.zero_grad(set_to_none=True)
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                    losses.append(float(loss.detach()))
                scheduler.step()
                advance(len(errors))
        record = {"epoch": epoch + 1, "train_loss": float(np.mean(losses)) if losses else float("nan"),
                  "lr": float(optimizer.param_groups[0]["lr"]), **described, "skipped": skipped,
                  "seconds": round(time.perf_counter() - started, 1)}
        if skipped:
            warn(f"{name}: {skipped} unusable training images skipped in {objective.label} {epoch + 1}")
        if valid_set is not None:
            record["valid_auc"] = _valid_auc(model, valid_set, settings, device)
            if record["valid_auc"] > best["auc"]:
                best = {"auc": record["valid_auc"], "epoch": epoch + 1,
                        "state": {k: v.detach().clone() for k, v in model.state_dict().items()}}
                bad_epochs = 0
            else:
                bad_epochs += 1
        history.append(record)
        info(f"{name}: {objective.label} {epoch + 1}/{settings.epochs} loss {record['train_loss']:.4f}"
             + (f" valid AUC {record['valid_auc']:.4f}" if "valid_auc" in record else "")
             + f" ({record['seconds']} s)")
        if folder is not None:
            _checkpoint(folder, run_id, epoch + 1, model, optimizer, scheduler, history, best, bad_epochs)

    if best["state"] is not None:
        model.load_state_dict(best["state"])
    model.eval()
    result = {"history": history, "device": str(device)}
    if valid_set is not None or objective.label == BinaryObjective.label:
        result |= {"best_epoch": best["epoch"] if best["state"] is not None else len(history),
                   "best_valid_auc": best["auc"] if best["state"] is not None else None}
    return result


def train_binary(model: nn.Module, train_set: ImageDataset, valid_set: ImageDataset | None,
                 settings: TrainSettings, **options) -> dict:
    """Train a one-logit network on labelled images (see :func:`train`)."""
    return train(model, BinaryObjective(train_set), valid_set, settings, **options)


def train_metric(model: nn.Module, images: ImageDataset, make_rows, loss_fn, settings: TrainSettings, *,
                 device: torch.device, embed=None, parameters=None, name: str = "model") -> dict:
    """Metric learning on pairs/triplets of ``images`` (see :class:`MetricObjective` and :func:`train`);
    its checkpoints go to ``<checkpoint_dir>/metric`` so that the stage after it keeps its own."""
    if settings.checkpoint_dir:
        settings = replace(settings, checkpoint_dir=str(Path(settings.checkpoint_dir) / "metric"))
    return train(model, MetricObjective(images, make_rows, loss_fn, embed or model, name), None, settings,
                 device=device, parameters=parameters, name=name)


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
    write_json_atomic(folder / CHECKPOINT_STATE, sort_keys=True, payload={
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
