"""Robustness: re-score an evaluation set under common degradations (JPEG, downscale, blur, noise)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from dflab import metrics
from dflab.augment.perturb import PERTURBATIONS, perturbed_sources
from dflab.runtime.progress import info


def evaluate_robustness(detector, manifest: pd.DataFrame, out_dir: str | Path, *,
                        perturbations: Sequence[str] = tuple(PERTURBATIONS), seed: int = 0,
                        n_boot: int = 200, baseline_scores: np.ndarray | None = None) -> dict:
    """Frame-level AUC/EER of ``detector`` on ``manifest`` as is (``none``) and under each perturbation.

    Perturbed copies are cached under ``out_dir/perturbed``; scores go to ``out_dir/robustness_scores.csv``.
    """
    out_dir = Path(out_dir)
    paths = manifest["path"].astype(str).tolist()
    labels = manifest["label"].to_numpy()
    groups = manifest["video"].astype(str).to_numpy() if "video" in manifest.columns else None
    rows, result = [], {}
    for name in ("none", *perturbations):
        if name == "none":
            scores = baseline_scores if baseline_scores is not None else detector.predict_proba(paths, on_error="nan")
        else:
            info(f"robustness: {name}")
            sources = perturbed_sources(paths, name, out_dir / "perturbed", seed, on_error="keep")
            scores = detector.predict_proba(sources, on_error="nan")
        ok = np.isfinite(scores)
        result[name] = metrics.evaluate(labels[ok], scores[ok], groups=None if groups is None else groups[ok],
                                        n_boot=n_boot, seed=seed)
        rows.append(pd.DataFrame({"perturbation": name, "path": paths, "label": labels, "score": scores}))
    pd.concat(rows, ignore_index=True).to_csv(out_dir / "robustness_scores.csv", index=False)
    return result
