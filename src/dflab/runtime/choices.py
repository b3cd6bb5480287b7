"""The choices of the runtime settings that several stages and the CLI name: what runs a network
(``Backend``) and how a video's frame scores become its score (``Aggregation``). Plain enums in the
bottom layer, so that the command line can offer them without importing the stages that use them."""

from __future__ import annotations

from enum import Enum


class Choice(str, Enum):
    """A setting's choices, each its own name."""

    @classmethod
    def names(cls) -> list[str]:
        return [choice.value for choice in cls]


class Backend(Choice):
    """What runs a CNN detector's network when it scores (the ``backend`` runtime setting; see
    :mod:`dflab.detectors.deep.onnx_backend`)."""

    auto = "auto"
    torch = "torch"
    onnx = "onnx"


class Aggregation(Choice):
    """How a video's frame scores become its one P(fake) (:func:`dflab.metrics.core.aggregate_frames`):
    the same rule for ``dflab predict``, ``dflab serve`` and the lab's video level."""

    mean_prob = "mean_prob"
    mean_logit = "mean_logit"
    confident = "confident"
