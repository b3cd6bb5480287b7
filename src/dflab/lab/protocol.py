"""The detection lab: Task 1 (intra-database), Task 2 (inter-database), Task 3 (improved Task 2).

Data flows one way: dataset folders -> manifests -> trained detectors -> ``scores.csv`` ->
``metrics.json`` -> plots and ``report.html``. Every stage writes its result as it finishes, so an
interrupted run resumes where it stopped (trained models are reloaded, scored files are not
scored again). Thresholds are chosen on a validation part of the development data (split by
video, a real video and its fakes on the same side) and applied unchanged to evaluation data.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dflab import __version__, data, metrics
from dflab.detectors import Detector, create, get, load_detector
from dflab.detectors.base import runtime_params
from dflab.detectors.fusion.calibration import (CALIBRATION_METHODS, CalibrationError, checked_labels_probabilities,
                                               fit_calibrator)
from dflab.detectors.modelfile import ModelFileError
from dflab.faces.videorows import STATUS_FILE, expand_video_rows, read_video_status, skipped_videos
from dflab.lab.config import TASK_TITLES, LabConfig, runs_task3, task3_training_sets, config_to_dict
from dflab.lab.scoring import read_scores, score_manifest, skipped_files
from dflab.metrics.calibration import brier_score, expected_calibration_error
from dflab.runtime.files import write_text_atomic
from dflab.runtime.progress import info, warn


def _load_split(root: Path, split: str, config: LabConfig) -> pd.DataFrame:
    manifest = data.scan(root, layout=config.layout)
    part = manifest[manifest["split"] == split].reset_index(drop=True)
    if part.empty:
        raise data.DataError(f"{root}: no '{split}' split found (expected {root}/{split}/{{real,fake}}/...)")
    if config.per_video or config.max_videos:
        part = data.subsample(part, per_video=config.per_video, max_videos_per_label=config.max_videos,
                              seed=config.seed).reset_index(drop=True)
    return part


def _face_rows(part: pd.DataFrame, root: Path, split: str, config: LabConfig,
               face_status: list[pd.DataFrame]) -> pd.DataFrame:
    """Video rows -> face-crop rows (extracted once, cached under ``out/faces``); status kept aside."""
    if not part["path"].map(data.is_video_file).any():
        return part
    n_frames = min(config.frames_per_video, config.per_video or config.frames_per_video)
    part, status = expand_video_rows(part, Path(config.out) / "faces", n_frames=n_frames,
                                     detector=config.face_detector)
    face_status.append(status)
    if part.empty:
        raise data.DataError(f"{root}: no face found in any video of the '{split}' split")
    return part


def prepare_manifests(config: LabConfig) -> dict[str, pd.DataFrame]:
    """Scan the databases, split development data into train/validation by video, save manifests.
    Video rows become face-crop rows first (see :mod:`dflab.faces.videorows`); their status goes to
    ``manifests/video_faces_status.csv``."""
    face_status: list[pd.DataFrame] = []

    def _load_split_faces(root: Path, split: str, config: LabConfig) -> pd.DataFrame:
        return _face_rows(_load_split(root, split, config), root, split, config, face_status)

    out = {}
    t1_dev = _load_split_faces(Path(config.task1), "development", config)
    out["task1_train"], out["task1_valid"] = data.split_by_group(t1_dev, valid_fraction=config.valid_fraction,
                                                                 seed=config.seed)
    out["task1_eval"] = _load_split_faces(Path(config.task1), "evaluation", config)
    if config.task23 is not None:
        out["task23_eval"] = _load_split_faces(Path(config.task23), "evaluation", config)
        if runs_task3(config):
            t23_dev = _load_split_faces(Path(config.task23), "development", config)
            out["task23_train"], out["task23_valid"] = data.split_by_group(
                t23_dev, valid_fraction=config.valid_fraction, seed=config.seed)
            if config.task3_data:
                out["task3_extra"] = pd.concat(
                    [_load_split_faces(Path(root), "development", config) for root in config.task3_data],
                    ignore_index=True)
    folder = Path(config.out) / "manifests"
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in out.items():
        data.save_manifest(frame, folder / f"{name}.csv")
    (folder / STATUS_FILE).unlink(missing_ok=True)  # a stale one from an earlier run on other data
    if face_status:
        pd.concat(face_status, ignore_index=True).to_csv(folder / STATUS_FILE, index=False)
    return out


def build_detector(name: str, config: LabConfig) -> Detector:
    params = dict(config.detector_params.get(name, {}))
    detector = create(name, **params)
    settings = {**_runtime_params(name, config)}
    if "seed" in detector.get_params(deep=False):
        settings["seed"] = config.seed
    detector.set_params(**{k: v for k, v in settings.items() if k not in params})
    return detector


def train_or_resume(name: str, config: LabConfig, train: pd.DataFrame, valid: pd.DataFrame,
                    model_dir: Path, description: str) -> Detector:
    """Reload the model in ``model_dir``, else train it (epoch checkpoints beside it for detectors
    that take them, so that an interrupted training resumes) and save it there."""
    if (model_dir / "config.json").exists():
        try:
            detector = load_detector(model_dir, **_runtime_params(name, config))
            info(f"[dim]{name}: reusing the trained model in {model_dir}[/dim]")
            return detector
        except ModelFileError as err:
            warn(f"{err}; training again")
    detector = build_detector(name, config)
    if "checkpoint_dir" in detector.get_params(deep=False) and not detector.get_params(deep=False)["checkpoint_dir"]:
        detector.set_params(checkpoint_dir=str(model_dir) + ".checkpoints")
    info(f"[bold]{name}[/bold]: training on {description} ({len(train)} images, {len(valid)} for validation)")
    detector.fit(train, valid=valid)
    detector.save(model_dir, info={"trained_on": description, "n_train": len(train), "n_valid": len(valid),
                                   "seed": config.seed})
    return detector


def _runtime_params(name: str, config: LabConfig) -> dict:
    return runtime_params(get(name).cls, workers=config.workers, backend=config.backend)


def level_thresholds(valid_scores: pd.DataFrame) -> dict[str, float]:
    """The EER threshold of each level, chosen on validation (development) scores."""
    frame = valid_scores[np.isfinite(valid_scores["score"])]
    thresholds = {"frame": metrics.choose_threshold(frame["label"], frame["score"])}
    for level, method in (("video_mean_prob", "mean_prob"), ("video_mean_logit", "mean_logit")):
        videos = metrics.aggregate_by_video(frame, method)
        thresholds[level] = metrics.choose_threshold(videos["label"], videos["score"])
    return thresholds


class LabBusyError(RuntimeError):
    """Another ``dflab lab`` holds the output folder."""


LOCK_FILE = ".dflab-lab.lock"


@contextlib.contextmanager
def _locked(out: Path):
    """One lab run per output folder at a time. The lock is the operating system's (``flock``), so a
    run killed with -9 leaves nothing stuck: its lock goes with its process."""
    import fcntl

    handle = open(out / LOCK_FILE, "a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise LabBusyError(f"{out}: another dflab lab is running on this folder (pid {holder}); "
                               "wait for it to finish or choose another --out") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield
    finally:
        handle.close()


def run_lab(config: LabConfig) -> dict:
    """Run Tasks 1-3 for every detector and write scores, metrics, models, plots and the report."""
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    with _locked(out):
        return _run_lab(config, out)


def _run_lab(config: LabConfig, out: Path) -> dict:
    from dflab.report import write_report

    write_text_atomic(out / "lab_config.json", json.dumps(config_to_dict(config), indent=2))
    manifests = prepare_manifests(config)
    scores_file = out / "scores.csv"
    valid_file = out / "scores_validation.csv"
    results: dict[str, dict] = {"task1": {}, "task2": {}, "task3": {}}

    for name in config.detectors:
        try:
            _run_detector(name, config, manifests, out, scores_file, valid_file, results)
        except (ValueError, RuntimeError, metrics.MetricsError) as err:
            warn(f"{name}: failed ({err}); continuing with the other detectors")
            for task in results:
                results[task].setdefault(name, {"error": str(err)})

    scores = read_scores(scores_file)
    report_metrics = {
        "meta": {
            "title": config.title, "created": _dt.datetime.now().isoformat(timespec="seconds"),
            "dflab_version": __version__, "synthetic": config.synthetic, "command": config.command,
            "task1_root": str(config.task1), "task23_root": str(config.task23), "seed": config.seed,
            "n_boot": config.n_boot, "valid_fraction": config.valid_fraction, "detectors": list(config.detectors),
            "per_video": config.per_video, "max_videos": config.max_videos,
        },
        "tasks": {task: {"title": TASK_TITLES[task], **_task_descriptions(task, config, manifests), "detectors": dets}
                  for task, dets in results.items() if dets},
        "skipped": skipped_files(scores) + skipped_videos(read_video_status(out / "manifests")),
    }
    _keep_tasks_not_run(report_metrics, out / "metrics.json", config)
    write_text_atomic(out / "metrics.json", json.dumps(report_metrics, indent=2, allow_nan=False))
    write_report(out, scores, report_metrics)
    return report_metrics


def _keep_tasks_not_run(report_metrics: dict, metrics_file: Path, config: LabConfig) -> None:
    """A run of some tasks (``--tasks 3``) keeps the results of the others from the folder's last run."""
    if not metrics_file.exists():
        return
    try:
        previous = json.loads(metrics_file.read_text()).get("tasks", {})
    except (OSError, ValueError, AttributeError):
        return
    for number in (1, 2, 3):
        task = f"task{number}"
        if number not in config.tasks and task in previous and task not in report_metrics["tasks"]:
            report_metrics["tasks"][task] = previous[task]
    report_metrics["tasks"] = {t: report_metrics["tasks"][t] for t in ("task1", "task2", "task3")
                               if t in report_metrics["tasks"]}


def _task_descriptions(task: str, config: LabConfig, manifests: dict[str, pd.DataFrame]) -> dict[str, str]:
    """Where a task's model was trained and evaluated, with the number of images of each part."""
    t1, t23 = Path(config.task1).name, Path(config.task23).name if config.task23 else "—"

    def n(part: str) -> int:
        return len(manifests.get(part, ()))

    if task == "task3":
        extra = manifests.get("task3_extra")
        parts = [f"{t1}/development training part ({n('task1_train')} images)",
                 f"{t23}/development training part ({n('task23_train')})"]
        if extra is not None:
            for root in config.task3_data:
                rows = int((extra["dataset"] == Path(os.path.abspath(root)).name).sum())
                parts.append(f"{Path(root).name}/development ({rows})")
        train = (" + ".join(parts) + f"; selection and threshold on the {t23}/development validation part "
                 f"({n('task23_valid')})")
        return {"train": train, "eval": f"{t23}/evaluation ({n('task23_eval')})"}
    return {
        "task1": {"train": f"{t1}/development: {n('task1_train')} training, {n('task1_valid')} validation images "
                           "(split by video)", "eval": f"{t1}/evaluation ({n('task1_eval')})"},
        "task2": {"train": f"{t1}/development (the Task 1 model, untouched)",
                  "eval": f"{t23}/evaluation ({n('task23_eval')})"},
    }[task]


def _evaluate(scores: pd.DataFrame, valid_scores: pd.DataFrame, config: LabConfig) -> dict:
    """Metrics of every level at the thresholds chosen on ``valid_scores``, plus frame-level
    calibration (Brier, ECE) raw and with calibrators fitted on ``valid_scores``."""
    result = metrics.evaluate_levels(scores[["video", "label", "score"]], thresholds=level_thresholds(valid_scores),
                                     n_boot=config.n_boot, seed=config.seed)
    try:
        result["calibration"] = calibration_summary(valid_scores["label"], valid_scores["score"],
                                                    scores["label"], scores["score"])
    except CalibrationError as err:
        warn(f"calibration not measured ({err})")
    return result


def calibration_summary(valid_labels: Any, valid_scores: Any, labels: Any, scores: Any, n_bins: int = 15
                        ) -> dict[str, dict[str, float]]:
    """Brier score and ECE of evaluation scores as they are (``raw``) and after each calibrator
    fitted on the development (validation) scores. NaN scores are left out on both sides; a method
    that cannot be fitted (one class in development) is left out."""
    labels, scores = checked_labels_probabilities(labels, scores, allow_nan=True)
    ok = ~np.isnan(scores)
    labels, scores = labels[ok], scores[ok]
    summary = {"raw": {"brier": brier_score(labels, scores), "ece": expected_calibration_error(labels, scores, n_bins)}}
    for method in CALIBRATION_METHODS:
        try:
            calibrated = fit_calibrator(valid_scores, valid_labels, method).transform(scores)
        except CalibrationError:
            continue
        summary[method] = {"brier": brier_score(labels, calibrated),
                           "ece": expected_calibration_error(labels, calibrated, n_bins)}
    return summary


def _run_detector(name, config, manifests, out, scores_file, valid_file, results):
    models = out / "models" / name
    tasks = set(config.tasks)
    if tasks & {1, 2}:
        detector = train_or_resume(name, config, manifests["task1_train"], manifests["task1_valid"],
                                   models / "task1", f"{Path(config.task1).name}/development")
        valid_scores = score_manifest(detector, manifests["task1_valid"], scores_file=valid_file, task="task1",
                                      detector_name=name, split="development-validation")
    if 1 in tasks:
        task1 = score_manifest(detector, manifests["task1_eval"], scores_file=scores_file, task="task1",
                               detector_name=name, split="evaluation")
        results["task1"][name] = _evaluate(task1, valid_scores, config)
        _task1_extras(name, detector, manifests, out, results["task1"][name])
    if 2 in tasks and "task23_eval" in manifests:
        task2 = score_manifest(detector, manifests["task23_eval"], scores_file=scores_file, task="task2",
                               detector_name=name, split="evaluation")
        results["task2"][name] = _evaluate(task2, valid_scores, config)
    if not runs_task3(config) or "task23_train" not in manifests:
        return
    train = pd.concat([manifests["task1_train"], manifests["task23_train"]]
                      + ([manifests["task3_extra"]] if "task3_extra" in manifests else []), ignore_index=True)
    # Model selection (early stopping, stacking) on the target database's validation part only: Task 3
    # is judged on that database, and the easy Task 1 validation frames would dominate a pooled AUC.
    valid = manifests["task23_valid"]
    task3_detector = train_or_resume(name, config, train, valid, models / "task3", task3_training_sets(config))
    # The threshold comes from the target database's own development (validation) data.
    task3_valid = score_manifest(task3_detector, manifests["task23_valid"], scores_file=valid_file, task="task3",
                                 detector_name=name, split="development-validation")
    task3 = score_manifest(task3_detector, manifests["task23_eval"], scores_file=scores_file, task="task3",
                           detector_name=name, split="evaluation")
    results["task3"][name] = _evaluate(task3, task3_valid, config)


def _task1_extras(name, detector, manifests, out, result) -> None:
    reals = manifests["task1_train"].loc[manifests["task1_train"]["label"] == 0, "path"].tolist()
    examples = detector.self_blend_examples(reals[::max(1, len(reals) // 4)],
                                            out / "plots" / f"self_blended_{name}.png")
    if examples is not None:
        result["figures"] = [{"path": str(examples.relative_to(out)),
                              "caption": f"{name}: self-blended training examples"}]
    result.update(detector.training_summary())
