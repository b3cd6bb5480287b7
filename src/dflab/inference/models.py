"""Choose the model a front end scores with: a saved model, a registered detector that needs no
training, or the package's ready detector by default."""

from __future__ import annotations

from pathlib import Path
from typing import Optional


class ModelChoiceError(ValueError):
    """No usable model for what was asked; the message is one line saying what to do."""


def load_scorer(model: Optional[Path], detector: Optional[str], workers: Optional[int], backend: str = "auto"):
    """The model of ``--model``, else the detector of ``--detector``, else the shipped ready detector;
    its network run by ``backend``."""
    from dflab.detectors import create, load_detector
    from dflab.detectors.ready import DEFAULT_READY, ready_models

    if model is not None:
        if not Path(model).exists():
            raise ModelChoiceError(f"{model}: model not found")
        return with_backend(load_detector(model, workers=workers) if workers else load_detector(model), backend)
    if detector is None:
        if DEFAULT_READY not in ready_models():
            raise ModelChoiceError("give --model PATH (a trained model) or --detector NAME: the ready detector "
                                   f"{DEFAULT_READY} is not installed with this package")
        return with_backend(create(DEFAULT_READY).fit(), backend)
    built = create(detector)
    if built.trainable:
        raise ModelChoiceError(
            f"detector {detector} needs training first: `dflab train DATA --detector {detector} --out MODEL`")
    return with_backend(built, backend).fit()  # published weights: fit loads them (no data)


def identity_scorer(model: Optional[Path], detector: Optional[str], reference: Path):
    """An identity-reference detector (a trained ``model``, else ``detector``, else identity-reference)
    whose reference identity is the images of the folder ``reference``."""
    from dflab.detectors import create, load_detector
    from dflab.detectors.handcrafted.identity_reference import IdentityReferenceDetector, reference_images

    if model is not None and not Path(model).exists():
        raise ModelChoiceError(f"{model}: model not found")
    if not Path(reference).is_dir():
        raise ModelChoiceError(f"{reference}: --reference folder not found")
    scorer = load_detector(model) if model else create(detector or "identity-reference")
    if not isinstance(scorer, IdentityReferenceDetector):
        raise ModelChoiceError(f"--reference needs an identity-reference detector, not {scorer.name}")
    return scorer.set_references(reference_images(reference))


def with_backend(scorer, backend: str):
    """``scorer`` set to run its network with ``backend``; only the CNN detectors have a choice. With
    ``auto``, the shipped ready detector on the CPU gets its graph from the user cache, exported there
    by the first run (:func:`~dflab.detectors.deep.onnx_backend.attach_cached_graph`): onnxruntime
    scores it 2-4x faster than PyTorch eager (benchmarks/RESULTS.md). A trained model scores with
    onnxruntime once it holds a graph (`dflab export`)."""
    from dflab.runtime.choices import Backend

    if backend not in Backend.names():
        raise ModelChoiceError(f"unknown backend {backend!r}: expected one of {', '.join(Backend.names())}")
    if "backend" in scorer.get_params(deep=False):
        scorer.set_params(backend=backend)
        if backend == Backend.auto.value and scorer.shipped:
            _cached_graph(scorer)
    elif backend == "onnx":
        raise ModelChoiceError(f"--backend onnx: {scorer.name} is not a CNN detector (onnxruntime runs the networks "
                               "of efficientnet-*, xception and dflab-face)")
    return scorer


def _cached_graph(scorer) -> None:
    """A fitted (shipped) CNN scorer on the CPU given its graph from the user cache; when the graph cannot be
    had (no exporter, an unwritable cache), PyTorch scores as before, with a warning."""
    from dflab.detectors.deep.onnx_backend import attach_cached_graph
    from dflab.detectors.deep.tensors import resolve_device
    from dflab.runtime.files import default_cache_dir
    from dflab.runtime.messages import one_line
    from dflab.runtime.progress import warn

    if not scorer.is_fitted() or resolve_device(scorer.get_params(deep=False).get("device", "auto")).type != "cpu":
        return
    try:
        attach_cached_graph(scorer, default_cache_dir())
    except Exception as err:  # noqa: BLE001 - any failure of the exporter leaves PyTorch scoring, as before
        warn(f"{scorer.name}: scored with PyTorch (no ONNX graph: {one_line(err)})")
