"""Stand-ins for the published weight files, made at test time from our own network definitions.

A published detector (an ICPR 2020 checkpoint, the MesoNet authors' Keras weights) runs only with
its file, which CI does not have. :func:`install_stand_in` writes a file in the published format (the
third party's key names and layouts, the shapes of our network) where ``dflab weights fetch`` would
keep it, and declares it with its own sha256 in place of the published one, so that the detector's
real path runs: find the file in ``$DFLAB_WEIGHTS``, check its hash, convert its keys, load strictly.
The values are random: only the format is the published one.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import torch
from torch import nn


def icpr_checkpoint(arch: str, variant: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """An ICPR 2020 state_dict (``efficientnet.*`` [``efficientnet.attconv.*``] ``classifier.*``; ST:
    under ``feat_ext.`` with a ``classifier.0`` BatchNorm1d and a ``classifier.1`` Linear; Xception:
    ``xception.*`` with ``xception.last_linear``) for our ``build_network(arch, variant)``."""
    from dflab.detectors.deep.cnn import build_network

    torch.manual_seed(seed)
    own = build_network(arch, variant).state_dict()

    def icpr_key(key: str) -> str:
        inner, key = ("feat_ext.", key[len("feat."):]) if key.startswith("feat.") else ("", key)
        if key.startswith("head."):
            return "classifier." + key[len("head."):]
        if arch == "xception":
            return "xception." + ("last_linear." + key[len("net.fc."):] if key.startswith("net.fc.") else key[len("net."):])
        if key.startswith("net.classifier."):
            return inner + key[len("net."):]
        if key.startswith("attconv."):
            return inner + "efficientnet." + key
        return inner + "efficientnet." + key[len("net."):]

    return {icpr_key(key): value.clone() for key, value in own.items()}


def write_keras_mesonet(path: Path, arch: str, seed: int = 0) -> None:
    """A Keras 2 weights file (HDF5: ``model_weights/<layer>/<layer>/<weight>:0``, ``layer_names``) of the
    published MesoNet layout for ``arch``: conv kernels (kh, kw, in, out), dense kernels (in, out)."""
    import h5py

    from dflab.detectors.deep.mesonet import MesoNet

    net = MesoNet(inception=arch == "mesoinception4")
    rng = np.random.default_rng(seed)
    convs = [m for m in net.features.modules() if isinstance(m, nn.Conv2d)]
    norms = [m for m in net.features.modules() if isinstance(m, nn.BatchNorm2d)]
    denses = [m for m in net.classifier if isinstance(m, nn.Linear)]
    layers: list[tuple[str, dict[str, np.ndarray]]] = []
    for i, conv in enumerate(convs, 1):
        kernel = rng.normal(0, 0.2, tuple(conv.weight.shape)).astype(np.float32).transpose(2, 3, 1, 0)
        layers.append((f"conv2d_{i}", {"kernel": kernel, "bias": np.zeros(conv.out_channels, np.float32)}))
    for i, norm in enumerate(norms, 1):
        n = norm.num_features
        layers.append((f"batch_normalization_{i}", {
            "gamma": np.ones(n, np.float32), "beta": np.zeros(n, np.float32),
            "moving_mean": rng.normal(0, 0.1, n).astype(np.float32), "moving_variance": np.ones(n, np.float32)}))
    for i, dense in enumerate(denses, 1):
        kernel = rng.normal(0, 0.1, tuple(dense.weight.shape)).astype(np.float32).T
        layers.append((f"dense_{i}", {"kernel": kernel, "bias": np.zeros(dense.out_features, np.float32)}))
    names = [name for name, _ in layers] + (["leaky_re_lu_1"] if arch == "mesoinception4" else [])
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as handle:
        group = handle.create_group("model_weights")
        group.attrs["layer_names"] = [name.encode() for name in names]
        for name, weights in layers:
            inner = group.create_group(name).create_group(name)
            for key, value in weights.items():
                inner.create_dataset(f"{key}:0", data=value)


def install_stand_in(name: str, monkeypatch, folder: Path) -> Path:
    """Write a stand-in for the published weights ``name`` into ``folder`` (made ``$DFLAB_WEIGHTS``) and
    declare it with its sha256; returns the file."""
    from dflab.detectors.deep.mesonet import PUBLISHED as MESONET
    from dflab.detectors.deep.pretrained import ICPR
    from dflab.runtime import weights

    monkeypatch.setenv(weights.WEIGHTS_ENV, str(folder))
    entry = weights.get(name)
    path = folder / entry.relative_path
    path.parent.mkdir(parents=True, exist_ok=True)
    if name in ICPR:
        torch.save(icpr_checkpoint(ICPR[name].arch, ICPR[name].variant), path)
    elif name in MESONET:
        write_keras_mesonet(path, MESONET[name][0])
    else:
        raise ValueError(f"no stand-in for the weights {name!r}")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    monkeypatch.setitem(weights.WEIGHTS, name, dataclasses.replace(entry, sha256=digest))
    return path
