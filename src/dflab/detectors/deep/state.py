"""A network's state as NumPy arrays and back (the safe model format stores arrays), and published
checkpoints mapped onto our networks layer by layer."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


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
