"""MesoNet (Afchar et al., WIFS 2018): Meso4 and MesoInception4 in PyTorch, trainable, and able to run the
authors' published Keras weights.

The Keras port (:func:`load_keras_h5`): HDF5 read with h5py; conv kernels (kh, kw, in, out) ->
(out, in, kh, kw); dense kernels (in, out) -> (out, in); BatchNorm eps 1e-3 (Keras' default);
the features are flattened in NHWC order before the dense layers, as Keras does. Layers are matched
by kind and creation order (the number in Keras' automatic names). Pixels are scaled to [0, 1], as
the authors' example code feeds them.

The published networks output sigmoid = P(real): Keras' ``flow_from_directory`` sorts the class
folders, so ``df``/``f2f`` = 0 and ``real`` = 1. On loading, the last dense layer is negated, so
every network here outputs the logit of P(fake). (Measured on Task_1/evaluation; see
benchmarks/RESULTS.md and tests/test_mesonet.py.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dflab.detectors.deep.tensors import UNIT_SCALE
from dflab.detectors.deep.torch_detector import TorchDetector
from dflab.detectors.registry import register
from dflab.runtime import weights as weight_files
from dflab.runtime.weights import WeightFile, WeightsError

_AUTHORS = "https://github.com/DariusAf/MesoNet/raw/master/weights"


#: The authors' published Keras weights, by the name of the detector that runs them (kept in
#: ``$DFLAB_WEIGHTS/mesonet``, default ``~/.cache/dflab/weights/mesonet``; ``dflab weights fetch NAME``).
#: The hashes are those of the copies in ../shared/weights/mesonet (no internet here to compare with the
#: live files).
PUBLISHED: dict[str, tuple[str, str, WeightFile]] = {
    name: (arch, method, WeightFile(name=name, url=f"{_AUTHORS}/{file}", sha256=digest, folder="mesonet", file=file,
                            description=f"MesoNet {arch} (Afchar et al. 2018) trained on {method}, Keras HDF5",
                            licence="Apache-2.0 (DariusAf/MesoNet)"))
    for name, arch, file, method, digest in (
        ("mesonet4-df", "meso4", "Meso4_DF.h5", "Deepfake",
         "036ed30d04ffd9c7506f825b97c86aa64915f5818931da96817b169aad790af5"),
        ("mesonet4-f2f", "meso4", "Meso4_F2F.h5", "Face2Face",
         "bcfda015d217b9f8d6557693edbdf9f4e79cfd22672541968dd0e2954462b5d7"),
        ("mesoinception4-df", "mesoinception4", "MesoInception_DF.h5", "Deepfake",
         "234586d40058e76ef8b6f27ca4b63c06e31c2a5a69c0d8ba6f30b1468ab7bafa"),
        ("mesoinception4-f2f", "mesoinception4", "MesoInception_F2F.h5", "Face2Face",
         "d4533ac8a3197dc35c47405d23d99e888c1d0135e267e03540c7451feaccff3f"))}
weight_files.declare(*(file for _, _, file in PUBLISHED.values()))


BN_EPS = 1e-3


BN_MOMENTUM = 0.01  # Keras momentum 0.99 = PyTorch 0.01


def _conv_block(in_ch: int, out_ch: int, kernel: int, pool: int) -> nn.Sequential:
    """Keras: Conv2D(same, relu) -> BatchNormalization -> MaxPooling2D(pool, same)."""
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2), nn.ReLU(inplace=True),
                         nn.BatchNorm2d(out_ch, eps=BN_EPS, momentum=BN_MOMENTUM),
                         nn.MaxPool2d(pool, ceil_mode=True))


class InceptionLayer(nn.Module):
    """MesoInception's block: 1x1 | 1x1->3x3 | 1x1->3x3 dilated 2 | 1x1->3x3 dilated 3, all ReLU."""

    def __init__(self, in_ch: int, a: int, b: int, c: int, d: int):
        super().__init__()
        relu = lambda: nn.ReLU(inplace=True)  # noqa: E731
        self.branch1 = nn.Sequential(nn.Conv2d(in_ch, a, 1), relu())
        self.branch2 = nn.Sequential(nn.Conv2d(in_ch, b, 1), relu(), nn.Conv2d(b, b, 3, padding=1), relu())
        self.branch3 = nn.Sequential(nn.Conv2d(in_ch, c, 1), relu(), nn.Conv2d(c, c, 3, padding=2, dilation=2),
                                     relu())
        self.branch4 = nn.Sequential(nn.Conv2d(in_ch, d, 1), relu(), nn.Conv2d(d, d, 3, padding=3, dilation=3),
                                     relu())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], dim=1)


class MesoNet(nn.Module):
    """Meso4 (``inception=False``) or MesoInception4; input (N, 3, H, W) in [0, 1], H and W multiples of 32."""

    def __init__(self, inception: bool = False, input_size: int = 256, hidden_activation: str = "leaky_relu"):
        super().__init__()
        if input_size % 32:
            raise ValueError(f"MesoNet input_size must be a multiple of 32, got {input_size}")
        if inception:
            self.features = nn.Sequential(
                InceptionLayer(3, 1, 4, 4, 2), nn.BatchNorm2d(11, eps=BN_EPS, momentum=BN_MOMENTUM),
                nn.MaxPool2d(2, ceil_mode=True),
                InceptionLayer(11, 2, 4, 4, 2), nn.BatchNorm2d(12, eps=BN_EPS, momentum=BN_MOMENTUM),
                nn.MaxPool2d(2, ceil_mode=True),
                _conv_block(12, 16, 5, 2), _conv_block(16, 16, 5, 4))
        else:
            self.features = nn.Sequential(_conv_block(3, 8, 3, 2), _conv_block(8, 8, 5, 2),
                                          _conv_block(8, 16, 5, 2), _conv_block(16, 16, 5, 4))
        side = input_size // 32
        self.hidden_activation = hidden_activation
        activations = {"leaky_relu": lambda: nn.LeakyReLU(0.1), "linear": nn.Identity}
        if hidden_activation not in activations:
            raise ValueError(f"hidden_activation must be one of {', '.join(activations)}")
        self.classifier = nn.Sequential(nn.Dropout(0.5), nn.Linear(16 * side * side, 16),
                                        activations[hidden_activation](), nn.Dropout(0.5), nn.Linear(16, 1))

    def head_parameters(self):
        return list(self.classifier.parameters())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = x.permute(0, 2, 3, 1).flatten(1)  # NHWC order, as Keras' Flatten
        return self.classifier(x)


def _keras_layers(path: Path) -> dict[str, list[tuple[str, dict[str, np.ndarray]]]]:
    """{kind: [(layer name, {weight name: array})] in creation order} from a Keras 2 weights file."""
    import h5py

    try:
        handle = h5py.File(path, "r")
    except (OSError, FileNotFoundError) as err:
        raise WeightsError(f"{path}: cannot read Keras HDF5 weights ({err})") from None
    layers: dict[str, list] = {"conv2d": [], "batch_normalization": [], "dense": []}
    with handle:
        group = handle["model_weights"] if "model_weights" in handle else handle
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in group.attrs.get("layer_names", [])]
        for name in names:
            match = re.fullmatch(r"(conv2d|batch_normalization|dense)_(\d+)", name)
            if not match:
                continue
            weights = {}
            group[name].visititems(lambda key, obj: weights.__setitem__(key.rsplit("/", 1)[-1].split(":")[0],
                                                                       np.asarray(obj)) if hasattr(obj, "shape")
                                   else None)
            layers[match.group(1)].append((int(match.group(2)), name, weights))
    return {kind: [(name, w) for _, name, w in sorted(items)] for kind, items in layers.items()}


def load_keras_h5(net: MesoNet, path: str | Path, *, output_is_real: bool = True) -> None:
    """Load the authors' Keras weights into ``net`` (strict: every layer, every shape).
    ``output_is_real``: the file's sigmoid is P(real); the last layer is negated to give logit(fake)."""
    path = Path(path)
    layers = _keras_layers(path)
    convs = [m for m in net.features.modules() if isinstance(m, nn.Conv2d)]
    norms = [m for m in net.features.modules() if isinstance(m, nn.BatchNorm2d)]
    denses = [m for m in net.classifier if isinstance(m, nn.Linear)]
    counts = {"conv2d": len(convs), "batch_normalization": len(norms), "dense": len(denses)}
    for kind, expected in counts.items():
        if len(layers[kind]) != expected:
            raise WeightsError(f"{path}: {len(layers[kind])} {kind} layers, the network has {expected} "
                               "(not this MesoNet variant?)")
    state: dict[nn.Parameter | torch.Tensor, np.ndarray] = {}
    for module, (name, w) in zip(convs, layers["conv2d"]):
        state[module.weight] = w["kernel"].transpose(3, 2, 0, 1)
        state[module.bias] = w["bias"]
    for module, (name, w) in zip(norms, layers["batch_normalization"]):
        state[module.weight], state[module.bias] = w["gamma"], w["beta"]
        state[module.running_mean], state[module.running_var] = w["moving_mean"], w["moving_variance"]
    for index, (module, (name, w)) in enumerate(zip(denses, layers["dense"])):
        sign = -1.0 if (output_is_real and index == len(denses) - 1) else 1.0
        state[module.weight] = sign * w["kernel"].T
        state[module.bias] = sign * w["bias"]
    with torch.no_grad():
        for tensor, value in state.items():
            if tuple(tensor.shape) != value.shape:
                raise WeightsError(f"{path}: a weight of shape {value.shape} does not fit {tuple(tensor.shape)}")
            tensor.copy_(torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32)))


def keras_hidden_activation(path: str | Path) -> str:
    """"leaky_relu" when the file's model has a LeakyReLU layer after the first dense layer, else
    "linear": the published Meso4 files list none (their Dense(16) is linear), MesoInception's do."""
    import h5py

    with h5py.File(path, "r") as handle:
        group = handle["model_weights"] if "model_weights" in handle else handle
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in group.attrs.get("layer_names", [])]
    return "leaky_relu" if any(n.startswith("leaky_re_lu") for n in names) else "linear"


@dataclass(eq=False, repr=False)  # parameters as fields: scikit-learn reads them from __init__
@register("meso4", family="deep", description="Meso4 (Afchar et al. 2018) trained from scratch, 256x256 in [0,1]",
          arch="meso4")
@register("mesoinception4", family="deep", description="MesoInception4 (Afchar et al. 2018) trained from scratch",
          arch="mesoinception4")
class MesoNetDetector(TorchDetector):
    """Meso4 / MesoInception4; with ``weights`` (a Keras .h5) training starts from those weights."""

    mean, std = UNIT_SCALE

    arch: str = "meso4"
    input_size: int = 256
    epochs: int = 10
    batch_size: int = 32
    lr: float = 0.001
    weight_decay: float = 0.0001
    warmup_epochs: float = 0.5
    augment: bool = True
    weights: str | None = None
    hidden_activation: str = "leaky_relu"
    patience: int = 3
    seed: int = 0
    device: str = "auto"
    workers: int | None = 0
    checkpoint_dir: str | None = None

    @property
    def pretrained(self) -> bool:
        return bool(self.weights)

    def build_model(self, *, pretrained: bool) -> nn.Module:
        if self.arch not in ("meso4", "mesoinception4"):
            raise ValueError(f"unknown MesoNet arch {self.arch!r}: expected meso4 or mesoinception4")
        activation = self.hidden_activation
        if activation == "auto":
            path = self._weights_path()
            activation = keras_hidden_activation(path) if path else "leaky_relu"
        net = MesoNet(inception=self.arch == "mesoinception4", input_size=self.input_size,
                      hidden_activation=activation)
        if pretrained and self.weights:
            load_keras_h5(net, self.weights)
        return net

    def _weights_path(self):
        """The Keras weights file the network starts from (``weights``), if any."""
        return self.weights

    def _get_state(self):
        # The resolved activation ("auto" depends on a file the loading machine may not have).
        return {**super()._get_state(), "hidden_activation": self.model_.hidden_activation}

    def _set_state(self, state):
        from dflab.detectors.deep.state import numpy_to_model

        net = MesoNet(inception=self.arch == "mesoinception4", input_size=self.input_size,
                      hidden_activation=state["hidden_activation"])
        numpy_to_model(net, {k: v for k, v in state.items() if isinstance(v, np.ndarray)}, prefix="model.")
        self.model_, self.training_ = net.eval(), state.get("training", {})


class PublishedMesoNet(MesoNetDetector):
    """The authors' published MesoNet weights used as is; ``fit`` only loads them."""

    trainable = False

    def __init__(self, arch: str = "meso4", weights: str | None = None, hidden_activation: str = "auto",
                 batch_size: int = 32, device: str = "auto", workers: int | None = 0):
        super().__init__(arch=arch, weights=weights, hidden_activation=hidden_activation, batch_size=batch_size,
                         device=device, workers=workers, augment=False)

    def _weights_path(self) -> Path | None:
        if self.weights:
            return Path(self.weights)
        return weight_files.find(self.name) if self.name in PUBLISHED else None

    def ready_to_load(self) -> bool:
        path = self._weights_path()
        return path is not None and path.is_file()

    def fit(self, train=None, *, valid=None):
        """Load the published weights (a file found in $DFLAB_WEIGHTS is checked against its sha256);
        nothing is learnt from ``train``."""
        path = weight_files.require(self.name, self.weights)
        activation = keras_hidden_activation(path) if self.hidden_activation == "auto" else self.hidden_activation
        net = MesoNet(inception=self.arch == "mesoinception4", input_size=self.input_size,
                      hidden_activation=activation)
        load_keras_h5(net, path)
        self.model_, self.training_ = net.eval(), {"weights": path.name}
        return self


for _name, (_arch, _method, _file) in PUBLISHED.items():
    register(_name, family="pretrained", arch=_arch,
             description=f"{_arch} with the authors' published {_method} weights ({_file.filename}); no training")(
        PublishedMesoNet)
