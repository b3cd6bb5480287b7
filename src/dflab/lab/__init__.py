"""The detection lab: Task 1 (intra-database), Task 2 (inter-database), Task 3 (improved Task 2).

``config`` (what a run is asked to do), ``protocol`` (manifests, training, thresholds on validation
data, the run itself), ``scoring`` (scores.csv, written as it goes and resumed), ``single`` (one model
evaluated on datasets: ``dflab evaluate``), ``robustness`` (the same data re-scored under perturbations),
``demo`` (the lab on generated data).
"""

from dflab.lab.config import TASK_TITLES, LabConfig, config_to_dict
from dflab.lab.protocol import LabBusyError, build_detector, level_thresholds, prepare_manifests, run_lab
from dflab.lab.scoring import SCORE_COLUMNS, read_scores, score_manifest

__all__ = ["LabConfig", "TASK_TITLES", "config_to_dict", "LabBusyError", "build_detector", "level_thresholds",
           "prepare_manifests", "run_lab", "SCORE_COLUMNS", "read_scores", "score_manifest"]
