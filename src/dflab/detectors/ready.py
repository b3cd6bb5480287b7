"""Ready detectors: trained models shipped inside the package, usable with no training and no download.

``dflab-face`` is what ``dflab predict`` and ``dflab evaluate`` use when no model is named. Each ready
model is a folder of the safe model format (``config.json`` + fp16 ``arrays.safetensors``, hashes
checked on load) under ``dflab/ready/<name>/``, with its ``MODEL_CARD.md`` (training data, command,
threshold, measured AUC). ``benchmarks/build_ready_detector.py`` makes one from a lab run's Task 3 model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dflab.detectors.base import Detector, load_detector
from dflab.detectors.modelfile import ModelFileError
from dflab.detectors.registry import register

READY_ROOT = Path(__file__).resolve().parents[1] / "ready"
DEFAULT_READY = "dflab-face"
CARD_FILE = "MODEL_CARD.md"
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")


def ready_model_dir(name: str = DEFAULT_READY) -> Path:
    if not _NAME.match(name):
        raise ModelFileError(name, "not a ready model name")
    return READY_ROOT / name


def ready_models() -> list[str]:
    """The ready models shipped with this installation."""
    if not READY_ROOT.is_dir():
        return []
    return sorted(p.name for p in READY_ROOT.iterdir() if (p / "config.json").is_file() and _NAME.match(p.name))


@dataclass(eq=False, repr=False)  # parameters as fields: scikit-learn reads them from __init__
@register(DEFAULT_READY, family="ready",
          description="Ready to use, shipped with the package: EfficientNet-Lite0 trained on public DFDC + "
                      "UADFV faces and self-blended pseudo-fakes, calibrated; finds and frames faces itself "
                      "(see `dflab weights list` and its model card)")
class ReadyDetector(Detector):
    """A shipped model, loaded (and its hashes checked) by ``fit``; otherwise the detector it holds."""

    trainable = False
    shipped = True
    inner_ = None  # the shipped model, once loaded

    model: str = DEFAULT_READY
    batch_size: int = 32
    device: str = "auto"
    workers: int | None = 0
    backend: str = "auto"

    @property
    def folder(self) -> Path:
        return ready_model_dir(self.model)

    def inner(self) -> Detector:
        """The shipped model itself (loaded by ``fit``)."""
        self._check_fitted()
        return self.inner_

    def ready_to_load(self) -> bool:
        return (self.folder / "config.json").is_file()

    def fit(self, train=None, *, valid=None) -> "ReadyDetector":
        """Load the shipped model (once); nothing is learnt from ``train``."""
        if self.inner_ is None:
            if not self.ready_to_load():
                raise ModelFileError(self.folder, f"the ready model {self.model!r} is not installed with this "
                                                  "package (see benchmarks/build_ready_detector.py)")
            self.inner_ = load_detector(self.folder, batch_size=self.batch_size, device=self.device,
                                        workers=self.workers, backend=self.backend)
        return self

    @property
    def model_info_(self) -> dict:
        return self.inner().model_info_

    def card(self) -> str:
        """The model card (Markdown)."""
        path = self.folder / CARD_FILE
        return path.read_text(encoding="utf-8") if path.is_file() else ""

    def set_params(self, **params) -> "ReadyDetector":
        """Runtime settings changed after the model was loaded reach the loaded model too (scoring
        itself changes nothing)."""
        super().set_params(**params)
        if self.inner_ is not None:
            inner_params = self.inner_.get_params(deep=False)
            settings = {key: value for key, value in params.items() if key in inner_params and key != "model"}
            if settings:
                self.inner_.set_params(**settings)
        return self

    def predict_proba(self, images, *, on_error: str = "raise") -> np.ndarray:
        return self.inner().predict_proba(images, on_error=on_error)

    def explain(self, image) -> np.ndarray:
        return self.inner().explain(image)

    def _get_state(self) -> dict[str, Any]:
        raise NotImplementedError(f"{self.name} is shipped with the package ({self.folder}); it is not saved again")
