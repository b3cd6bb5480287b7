"""Detection metrics: ROC, AUC, EER, error rates at a threshold, video-level aggregation (``core``), the
numbers of one evaluation (``evaluation``),
bootstrap confidence intervals over videos (``bootstrap``) and calibration quality (``calibration``): pure
functions of labels and scores."""

from dflab.metrics.bootstrap import bootstrap_ci
from dflab.metrics.core import (AGGREGATION_METHODS, LEVELS, MetricsError, aggregate_by_video,
                                aggregate_frames, choose_threshold, eer, error_rates_at, roc_auc, roc_curve)
from dflab.metrics.evaluation import evaluate, evaluate_levels
from dflab.runtime.choices import Aggregation

__all__ = ["AGGREGATION_METHODS", "LEVELS", "Aggregation", "MetricsError", "roc_curve", "roc_auc", "eer",
           "choose_threshold", "error_rates_at", "aggregate_by_video", "aggregate_frames", "bootstrap_ci", "evaluate",
           "evaluate_levels"]
