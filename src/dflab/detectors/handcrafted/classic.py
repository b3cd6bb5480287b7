"""Shared machinery for handcrafted-feature detectors: an extractor + a scikit-learn classifier.

Subclasses only say how to build their extractor (:meth:`FeatureClassifierDetector.make_extractor`).
Features run through :mod:`dflab.media.feature_extraction` (parallel workers, per-file cache, bad files skipped);
the classifier is a scikit-learn pipeline saved with skops. When a validation set is given, the
classifier's main hyper-parameter is chosen on it (by AUC), never on evaluation data.
"""

from __future__ import annotations

import numpy as np
from sklearn.calibration import CalibratedClassifierCV
from sklearn.decomposition import PCA
from sklearn.ensemble import AdaBoostClassifier, HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from dflab.detectors.base import Detector, as_sources, as_training_set, require_both_classes
from dflab.media import feature_extraction as features
from dflab.runtime.progress import warn

#: classifier name -> (builder(seed, value), candidate values tried on validation data).
CLASSIFIERS = {
    # Converged tightly: stopped at the default tol (1e-4), the weights depended on the rounding of
    # the CPU's BLAS kernel (thresholds 1e-3 apart between AVX2 and AVX-512 on the same features).
    "logreg": (lambda seed, c: LogisticRegression(C=c, tol=1e-8, max_iter=5000, random_state=seed),
               (0.01, 0.1, 1.0, 10.0)),
    # Platt scaling on cross-validation folds turns the SVM's decision values into P(fake).
    "svm": (lambda seed, c: make_pipeline(PCA(n_components=0.99, random_state=seed),
                                          CalibratedClassifierCV(SVC(C=c, kernel="rbf", random_state=seed),
                                                                 method="sigmoid", ensemble=False, cv=5)),
            (0.1, 1.0, 10.0)),
    "rf": (lambda seed, depth: RandomForestClassifier(n_estimators=300, max_depth=depth, n_jobs=1,
                                                      random_state=seed), (None, 12)),
    "gb": (lambda seed, rate: HistGradientBoostingClassifier(learning_rate=rate, max_iter=300, random_state=seed),
           (0.05, 0.1)),
    "adaboost": (lambda seed, n: AdaBoostClassifier(n_estimators=n, random_state=seed), (100, 300)),
    "mlp": (lambda seed, alpha: MLPClassifier(hidden_layer_sizes=(128,), alpha=alpha, max_iter=300,
                                             early_stopping=True, random_state=seed), (1e-4, 1e-2)),
}


def make_classifier(name: str, seed: int, value=None) -> Pipeline:
    if name not in CLASSIFIERS:
        raise ValueError(f"unknown classifier {name!r}; choose from {', '.join(CLASSIFIERS)}")
    build, candidates = CLASSIFIERS[name]
    return make_pipeline(StandardScaler(), build(seed, candidates[0] if value is None else value))


def fit_classifier(name: str, seed: int, x_train, y_train, x_valid=None, y_valid=None) -> tuple[Pipeline, dict]:
    """Fit, choosing the classifier's main hyper-parameter on the validation set when one is given."""
    candidates = CLASSIFIERS[name][1]
    if x_valid is None or len(np.unique(y_valid)) < 2 or len(candidates) == 1:
        return make_classifier(name, seed).fit(x_train, y_train), {"chosen": candidates[0], "selection": "default"}
    return choose_by_validation_auc(name, seed, x_train, y_train, y_valid,
                                    lambda model: model.predict_proba(x_valid)[:, 1])


def choose_by_validation_auc(name: str, seed: int, x_train, y_train, valid_labels, valid_scores,
                             selection: str = "validation AUC") -> tuple[Pipeline, dict]:
    """Fit the classifier with each candidate value of its main hyper-parameter and keep the one whose
    validation scores (``valid_scores(model)``, one per label in ``valid_labels``) have the highest AUC
    (the first of equals). Returns the model and what was tried, for its model info."""
    scored = []
    for value in CLASSIFIERS[name][1]:
        model = make_classifier(name, seed, value).fit(x_train, y_train)
        scored.append((roc_auc_score(valid_labels, valid_scores(model)), value, model))
    best_auc, best_value, best_model = max(scored, key=lambda item: item[0])
    return best_model, {"chosen": best_value, "selection": selection, "valid_auc": float(best_auc),
                        "tried": [[v if v is not None else "none", float(a)] for a, v, _ in scored]}


class FeatureClassifierDetector(Detector):
    """Base for detectors that are one feature vector per image + a scikit-learn classifier."""

    def make_extractor(self) -> features.Extractor:
        raise NotImplementedError

    # Subclasses define __init__ with their parameters, including classifier, seed, workers, cache_dir.

    def _features(self, sources, on_error: str, description: str, errors: dict | None = None,
                  all_failed_ok: bool = False) -> np.ndarray:
        result = features.extract(sources, self.make_extractor(), workers=self.workers,
                                  cache_dir=self.cache_dir if self.cache_dir is not None else True,
                                  description=description)
        if errors is not None:
            errors.update(result.errors)
        return features.stack(result, sources, on_error=on_error, all_failed_ok=all_failed_ok)

    def fit(self, train, *, valid=None):
        sources, labels, _ = as_training_set(train)
        reasons: dict[int, str] = {}
        x = self._features(sources, "nan", f"{self.name}: training features", errors=reasons)
        ok = ~np.isnan(x).any(axis=1)
        if (~ok).any():
            warn(f"{self.name}: {(~ok).sum()} training images unusable, skipped")
        require_both_classes(self.name, labels, ok, sources, reasons)
        x_valid = y_valid = None
        if valid is not None:
            valid_sources, y_valid, _ = as_training_set(valid)
            x_valid = self._features(valid_sources, "nan", f"{self.name}: validation features")
            keep = ~np.isnan(x_valid).any(axis=1)
            x_valid, y_valid = x_valid[keep], y_valid[keep]
        self.classifier_, self.selection_ = fit_classifier(self.classifier, self.seed, x[ok], labels[ok],
                                                           x_valid, y_valid)
        return self

    def predict_proba(self, images, *, on_error: str = "raise") -> np.ndarray:
        self._check_fitted()
        sources = as_sources(images)
        # A chunk of a batch run may hold only bad files: with on_error="nan" they are NaN, not an error.
        x = self._features(sources, on_error, f"{self.name}: scoring", all_failed_ok=True)
        scores = np.full(len(sources), np.nan)
        ok = ~np.isnan(x).any(axis=1)
        if ok.any():
            scores[ok] = self.classifier_.predict_proba(x[ok])[:, 1]
        return scores

    def _get_state(self):
        return {"classifier": self.classifier_, "selection": self.selection_}

    def _set_state(self, state):
        self.classifier_ = state["classifier"]
        self.selection_ = state.get("selection", {})
