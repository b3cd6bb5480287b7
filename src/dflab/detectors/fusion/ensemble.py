"""``ensemble``: one detector made of several trained detectors.

Members are given as saved-model paths (used as they are), registry specs
``{"detector": name, "params": {...}}`` (trained by ``fit`` on the same data), or detector
objects (used as they are when trained, else trained by ``fit``). Fusion of the members' P(fake):

* ``mean_prob``: the mean probability;
* ``mean_logit``: ``expit(mean(logit(P)))`` (probabilities clipped to [1e-6, 1 - 1e-6]);
* ``stacking``: logistic regression on the members' logits, fitted on the ``valid`` data given to
  ``fit`` (development data only); without ``valid`` it falls back to the training data, which is
  optimistic for members trained on it (a warning says so).

``calibration="platt"|"isotonic"`` additionally maps the fused score through a calibrator fitted
on the same development data (:mod:`dflab.detectors.fusion.calibration`).

A member that cannot score an image (NaN) is left out of the means for that image; for stacking
its logit counts as 0 (no evidence either way). An image no member can score stays NaN.

Saving: each member is saved to its own ``.zip`` (the safe dflab format: safetensors, skops,
JSON, all hashed) and its bytes are kept in the ensemble's safetensors file as a uint8 array
(``member_<i>``), so the ensemble is one self-contained model whose members are verified again
(hashes, skops trust list) when it is loaded.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np
import pandas as pd
from scipy.special import expit
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression

from dflab.detectors.base import Detector, as_sources, as_training_set, load_detector, runtime_params
from dflab.detectors.fusion.calibration import CALIBRATION_METHODS, Calibrator, fit_calibrator
from dflab.detectors.modelfile import read_model_config
from dflab.detectors.registry import create, get, register
from dflab.media.images import ImageLike, load_image
from dflab.runtime.numeric import clipped_logit
from dflab.runtime.progress import warn

FUSION_METHODS = ("mean_prob", "mean_logit", "stacking")


def _describe(spec: Any) -> Any:
    """A JSON description of one member spec (what the saved config lists)."""
    if isinstance(spec, Detector):
        return {"detector": spec.name, "params": spec.model_params()}
    if isinstance(spec, (str, os.PathLike)):
        return str(spec)
    return spec


@dataclass(eq=False, repr=False)  # parameters as fields: scikit-learn reads them from __init__
@register("ensemble", family="fusion",
          description="Fusion of trained detectors: mean probability, mean logit or logistic stacking "
                      "fitted on development data; optional Platt/isotonic calibration")
@register("ensemble-lite0-ela-dct", family="fusion",
          description="The lab's Task 3 ensemble: EfficientNet-Lite0 (tight framing, 6 epochs, mirror "
                      "test-time augmentation), ELA + gradient boosting and block DCT, trained on the same data, "
                      "logistic stacking on development data",
          members=({"detector": "efficientnet-lite0",
                    "params": {"crop_scale": 0.7, "epochs": 6, "test_flip": True}},
                   {"detector": "ela-gb"}, {"detector": "block-dct"}),
          method="stacking")
@register("ensemble-lite2-lite0-ela-dct", family="fusion",
          description="The Task 3 ensemble with EfficientNet-Lite2 added (tight framing, 6 epochs, no mirror "
                      "averaging: it did not help Lite2 on validation); a Lite2 epoch takes about twice a Lite0 one",
          members=({"detector": "efficientnet-lite2", "params": {"crop_scale": 0.7, "epochs": 6}},
                   {"detector": "efficientnet-lite0",
                    "params": {"crop_scale": 0.7, "epochs": 6, "test_flip": True}},
                   {"detector": "ela-gb"}, {"detector": "block-dct"}),
          method="stacking")
class EnsembleDetector(Detector):
    members: Sequence[Any] = ()
    method: str = "mean_prob"
    calibration: str | None = None
    stacking_c: float = 1.0
    seed: int = 0
    workers: int | None = None
    cache_dir: str | None = None
    device: str | None = None

    def model_params(self) -> dict[str, Any]:
        params = super().model_params()
        params["members"] = [_describe(spec) for spec in (self.members or ())]
        return params

    # -- members ------------------------------------------------------------------------------
    def _runtime_for(self, cls: type) -> dict[str, Any]:
        return runtime_params(cls, workers=self.workers, cache_dir=self.cache_dir, device=self.device)

    def _load_member(self, path: str | Path) -> Detector:
        cls = get(read_model_config(path)["detector"]).cls
        return load_detector(path, **self._runtime_for(cls))

    def _build_members(self, train, valid) -> list[Detector]:
        specs = list(self.members or ())
        if not specs:
            raise ValueError("ensemble: no members given (members=[saved model paths or registry specs])")
        members = []
        for spec in specs:
            if isinstance(spec, Detector):
                member = spec if spec.is_fitted() else clone(spec).fit(self._require(train, spec), valid=valid)
            elif isinstance(spec, (str, os.PathLike)):
                member = self._load_member(spec)
            elif isinstance(spec, dict) and "detector" in spec:
                params = dict(spec.get("params") or {})
                cls = get(spec["detector"]).cls
                member = create(spec["detector"], **{**self._runtime_for(cls), **params})
                member.fit(self._require(train, member), valid=valid)
            else:
                raise ValueError(f"ensemble: a member must be a saved model path, a detector, or "
                                 f"{{'detector': name, 'params': {{...}}}}; got {spec!r}")
            members.append(member)
        return members

    @staticmethod
    def _require(train, member: Detector):
        """The training data for ``member``'s ``fit``; one that learns nothing from data (published
        weights, a shipped model) loads its model without any."""
        if train is None and member.trainable:
            raise ValueError(f"ensemble: member {member.name} is not trained and no training data was given")
        return train

    @staticmethod
    def _unique_names(members: Sequence[Detector]) -> list[str]:
        names, seen = [], {}
        for member in members:
            seen[member.name] = seen.get(member.name, 0) + 1
            names.append(member.name if seen[member.name] == 1 else f"{member.name}#{seen[member.name]}")
        return names

    # -- fusion -------------------------------------------------------------------------------
    def member_probabilities(self, images, *, on_error: str = "raise") -> pd.DataFrame:
        """Each member's P(fake) per image, one column per member (for per-member reports)."""
        self._check_fitted()
        sources = as_sources(images)
        columns = {name: np.asarray(member.predict_proba(sources, on_error=on_error), dtype=float)
                   for name, member in zip(self.member_names_, self.members_)}
        return pd.DataFrame(columns)

    def _fuse(self, probs: np.ndarray) -> np.ndarray:
        """Fused P(fake) from an (n_images, n_members) matrix of member probabilities (NaN = missing)."""
        scored = ~np.isnan(probs)
        any_scored = scored.any(axis=1)
        fused = np.full(len(probs), np.nan)
        logits = clipped_logit(probs)
        if self.method == "mean_prob":
            fused[any_scored] = np.nanmean(probs[any_scored], axis=1)
        elif self.method == "mean_logit":
            fused[any_scored] = expit(np.nanmean(logits[any_scored], axis=1))
        elif self.method == "stacking":
            z = np.nan_to_num(logits[any_scored], nan=0.0)
            fused[any_scored] = expit(z @ self.stack_weights_ + float(self.stack_bias_[0]))
        else:
            raise ValueError(f"ensemble: unknown method {self.method!r}; choose from {', '.join(FUSION_METHODS)}")
        return fused

    # -- the contract -------------------------------------------------------------------------
    def fit(self, train=None, *, valid=None) -> "EnsembleDetector":
        if self.method not in FUSION_METHODS:
            raise ValueError(f"ensemble: unknown method {self.method!r}; choose from {', '.join(FUSION_METHODS)}")
        if self.calibration not in (None, "none", *CALIBRATION_METHODS):
            raise ValueError(f"ensemble: unknown calibration {self.calibration!r}; choose from none, "
                             f"{', '.join(CALIBRATION_METHODS)}")
        self.members_ = self._build_members(train, valid)
        self.member_names_ = self._unique_names(self.members_)
        self.stack_weights_ = self.stack_bias_ = None
        self.calibrator_ = None
        self.fit_info_: dict[str, Any] = {"fitted_on": None}
        needs_data = self.method == "stacking" or self.calibration in CALIBRATION_METHODS
        if needs_data:
            data = valid if valid is not None else train
            if data is None:
                raise ValueError(f"ensemble: {self.method} / calibration needs development data (valid=...)")
            if valid is None:
                warn("ensemble: no validation data; stacking/calibration fitted on the training data "
                     "(optimistic for members trained on it)")
            sources, labels, _ = as_training_set(data)
            probs = self.member_probabilities(sources, on_error="nan").to_numpy()
            self.fit_info_ = {"fitted_on": "valid" if valid is not None else "train", "n_samples": int(len(labels))}
            if self.method == "stacking":
                self._fit_stacking(probs, labels)
            if self.calibration in CALIBRATION_METHODS:
                fused = self._fuse(probs)
                self.calibrator_ = fit_calibrator(fused, labels, method=self.calibration)
        return self

    def _fit_stacking(self, probs: np.ndarray, labels: np.ndarray) -> None:
        complete = ~np.isnan(probs).any(axis=1)
        if len(np.unique(labels[complete])) < 2:
            raise ValueError("ensemble: stacking needs real and fake development images that every member can score")
        z = clipped_logit(probs[complete])
        model = LogisticRegression(C=self.stacking_c, max_iter=1000, random_state=self.seed).fit(z, labels[complete])
        self.stack_weights_ = model.coef_[0].astype(np.float64)
        self.stack_bias_ = model.intercept_.astype(np.float64)
        self.fit_info_["stacking_weights"] = dict(zip(self.member_names_, self.stack_weights_.tolist()))

    def predict_proba(self, images, *, on_error: str = "raise") -> np.ndarray:
        self._check_fitted()
        fused = self._fuse(self.member_probabilities(images, on_error=on_error).to_numpy())
        if self.calibrator_ is not None:
            fused = self.calibrator_.transform(fused)
        return fused

    def explain(self, image: ImageLike) -> np.ndarray:
        """The mean of the members' explanation maps (members without one are skipped)."""
        self._check_fitted()
        picture = load_image(image)
        height, width = picture.shape[:2]
        maps = []
        for member in self.members_:
            try:
                heatmap = np.asarray(member.explain(picture), dtype=np.float32)
            except NotImplementedError:
                continue
            if heatmap.shape != (height, width):
                heatmap = cv2.resize(heatmap, (width, height), interpolation=cv2.INTER_LINEAR)
            maps.append(heatmap)
        if not maps:
            raise NotImplementedError(f"{self.name}: none of its members ({', '.join(self.member_names_)}) "
                                      "has an explanation map")
        return np.clip(np.mean(maps, axis=0), 0.0, 1.0)

    # -- state --------------------------------------------------------------------------------
    def _get_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {"member_names": list(self.member_names_), "fit_info": self.fit_info_}
        with tempfile.TemporaryDirectory(prefix="dflab-ensemble-") as folder:
            for i, member in enumerate(self.members_):
                path = member.save(Path(folder) / f"member_{i}.zip", info=member.model_info_)
                state[f"member_{i}"] = np.frombuffer(path.read_bytes(), dtype=np.uint8).copy()
        if self.stack_weights_ is not None:
            state["stack_weights"] = self.stack_weights_
            state["stack_bias"] = self.stack_bias_
        if self.calibrator_ is not None:
            state.update(self.calibrator_.to_state("calibrator"))
        return state

    def _set_state(self, state: dict[str, Any]) -> None:
        names = list(state["member_names"])
        members = []
        with tempfile.TemporaryDirectory(prefix="dflab-ensemble-") as folder:
            for i in range(len(names)):
                path = Path(folder) / f"member_{i}.zip"
                path.write_bytes(np.asarray(state[f"member_{i}"], dtype=np.uint8).tobytes())
                members.append(self._load_member(path))
        self.members_, self.member_names_ = members, names
        self.fit_info_ = state.get("fit_info", {})
        self.stack_weights_ = np.asarray(state["stack_weights"], np.float64) if "stack_weights" in state else None
        self.stack_bias_ = np.asarray(state["stack_bias"], np.float64) if "stack_bias" in state else None
        if self.method == "stacking" and self.stack_weights_ is None:
            raise ValueError("stacking ensemble without stacking weights")
        self.calibrator_ = Calibrator.from_state(state, "calibrator") if "calibrator_method" in state else None
