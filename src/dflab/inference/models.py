"""Choose the model a front end scores with: a saved model, a registered detector that needs no
training, or the package's ready detector by default."""

from __future__ import annotations

from pathlib import Path
from typing import Optional


class ModelChoiceError(ValueError):
    """No usable model for what was asked; the message is one line saying what to do."""


def load_scorer(model: Optional[Path], detector: Optional[str], workers: Optional[int]):
    """The model of ``--model``, else the detector of ``--detector``, else the shipped ready detector."""
    from dflab.detectors import create, load_detector
    from dflab.detectors.ready import DEFAULT_READY, ready_models

    if model is not None:
        if not Path(model).exists():
            raise ModelChoiceError(f"{model}: model not found")
        return load_detector(model, workers=workers) if workers else load_detector(model)
    if detector is None:
        if DEFAULT_READY not in ready_models():
            raise ModelChoiceError("give --model PATH (a trained model) or --detector NAME: the ready detector "
                                   f"{DEFAULT_READY} is not installed with this package")
        return create(DEFAULT_READY).fit()
    built = create(detector)
    if not built.is_fitted():
        raise ModelChoiceError(
            f"detector {detector} needs training first: `dflab train DATA --detector {detector} --out MODEL`")
    return built
