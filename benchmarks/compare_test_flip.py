"""Frame AUC of a trained CNN detector with and without mirror test-time augmentation (``test_flip``).

MODEL is a saved CNN model or an ensemble (its CNN members are switched); each MANIFEST is a CSV with
``path,label`` (e.g. the ``manifests/`` a ``dflab lab`` run writes). Choose on a development
manifest (the validation part), report on the evaluation one.

Usage: python benchmarks/compare_test_flip.py MODEL MANIFEST [MANIFEST ...]
"""

from __future__ import annotations

import sys

import pandas as pd
from sklearn.metrics import roc_auc_score

from dflab.detectors import load_detector
from dflab.runtime.memory import keep_freed_memory


def main(model: str, manifests: list[str]) -> None:
    keep_freed_memory()  # as the dflab command does
    detector = load_detector(model)
    cnns = [m for m in getattr(detector, "members_", [detector]) if "test_flip" in m.get_params(deep=False)]
    if not cnns:
        raise SystemExit(f"{model}: no CNN detector with a test_flip parameter in it")
    for manifest in manifests:
        frames = pd.read_csv(manifest)
        aucs = {}
        for test_flip in (False, True):
            for cnn in cnns:
                cnn.set_params(test_flip=test_flip)
            aucs[test_flip] = roc_auc_score(frames["label"], detector.predict_proba(list(frames["path"])))
        print(f"{manifest}: {len(frames)} images, frame AUC {aucs[False]:.4f} plain, {aucs[True]:.4f} with test_flip")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        raise SystemExit(__doc__.split("Usage: ")[1])
    main(sys.argv[1], sys.argv[2:])
