"""Turn a trained model into the package's ready detector, ``dflab-face``: choose what is left to choose on
validation data, measure it across databases, write the fp16 model and its card.

The training is ``benchmarks/train_ready_v2.py`` (see ``MODEL_CARD.md``)::

    python benchmarks/train_ready_v2.py --shared ../shared --out out/ready2
    python benchmarks/build_ready_detector.py out/ready2 --shared ../shared --out src/dflab/ready/dflab-face

Choices, all on the validation parts of the development data of both training databases
(``manifests/task1_valid.csv``, UADFV, and ``manifests/task23_valid.csv``, DFDC), never on evaluation
data or on the cross-database samples:

- mirror test-time augmentation on or off: the higher validation AUC wins, only if the model still
  scores at least 40 faces/s on this machine with it;
- calibration: Platt scaling of the logit (a logistic regression of the label on the logit) fitted on
  both validation parts together, so that P(fake) = 0.9 means 9 fakes in 10 on data like them;
- the decision threshold: the smallest P(fake) that calls at most ``--false-alarms`` (5%) of the real
  validation faces of *each* database fake (the largest of the per-database quantiles);
- the face framing: the previous model's, measured with MTCNN on the same training crops.

Then, for the record only: the cross-database matrix (``dflab evaluate`` on Task_2_3/evaluation,
Task_1/evaluation and the three cross-database samples, videos at 32 frames) and faces/s on 2 cores.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from dflab import __version__, data
from dflab.detectors import load_detector
from dflab.detectors.fusion.calibration import fit_calibrator
from dflab.lab.single import EvaluationSet, evaluate_datasets
from dflab.metrics.calibration import brier_score, expected_calibration_error
from dflab.runtime.memory import keep_freed_memory

MIN_FACES_PER_SECOND = 40.0
VALIDATION_PARTS = {"Task_1/development (validation part)": "task1_valid",
                    "Task_2_3/development (validation part)": "task23_valid"}
#: The matrix: (dataset folder under shared/datasets, split, what it is).
MATRIX_SETS = (("Task_2_3", "evaluation", "DFDC (training database; evaluation split)"),
               ("Task_1", "evaluation", "UADFV (training database; evaluation split)"),
               ("celebdf_sample", "evaluation", "Celeb-DF v2 sample (never trained on)"),
               ("videos/ffpp_c23", "all", "FaceForensics++ c23 sample (never trained on)"),
               ("videos/deeperforensics", "all", "DeeperForensics-1.0 sample (never trained on)"))


def faces_per_second(detector, paths: list[str], rounds: int = 3) -> float:
    """Median over rounds of face crops scored per second (decoding included), after a warm-up."""
    detector.predict_proba(paths[:32])
    speeds = []
    for _ in range(rounds):
        started = time.perf_counter()
        detector.predict_proba(paths)
        speeds.append(len(paths) / (time.perf_counter() - started))
    return float(np.median(speeds))


def calibration_of(labels: np.ndarray, p: np.ndarray) -> dict[str, float]:
    return {"brier": brier_score(labels, p), "ece": expected_calibration_error(labels, p)}


def false_alarm_threshold(real_scores: dict[str, np.ndarray], rate: float) -> float:
    """The smallest threshold that calls at most ``rate`` of the real faces of every database fake."""
    return float(max(np.quantile(scores, 1 - rate, method="higher") for scores in real_scores.values()))


def main() -> None:
    keep_freed_memory()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="the --out folder of train_ready_v2.py")
    parser.add_argument("--shared", type=Path, default=Path("../shared"))
    parser.add_argument("--out", type=Path, default=Path("src/dflab/ready/dflab-face"))
    parser.add_argument("--false-alarms", type=float, default=0.05,
                        help="intended share of real validation faces called fake, per database")
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--frames", type=int, default=32)
    args = parser.parse_args()
    datasets = args.shared / "datasets"
    detector = load_detector(args.run / "model")
    previous = load_detector(args.out) if (args.out / "config.json").is_file() else None
    previous_info = previous.model_info_ if previous is not None else {}
    valid = {name: pd.read_csv(args.run / "manifests" / f"{part}.csv", dtype={"video": str})
             for name, part in VALIDATION_PARTS.items()}
    both = pd.concat(valid.values(), ignore_index=True)
    print(f"model: {args.run / 'model'}; validation {len(both)} faces")

    # -- choices, on validation data ----------------------------------------------------------
    scores = {}
    for flip in (False, True):
        detector.set_params(test_flip=flip)
        scores[flip] = detector.predict_proba(list(both["path"]))
    valid_auc = {flip: float(roc_auc_score(both["label"], s)) for flip, s in scores.items()}
    speed_paths = list(both["path"][-256:])
    speed = {}
    for flip in (False, True):
        detector.set_params(test_flip=flip)
        speed[flip] = faces_per_second(detector, speed_paths)
    test_flip = valid_auc[True] > valid_auc[False] and speed[True] >= MIN_FACES_PER_SECOND
    print(f"validation AUC without / with mirror TTA: {valid_auc[False]:.4f} / {valid_auc[True]:.4f}; "
          f"faces/s {speed[False]:.1f} / {speed[True]:.1f} -> test_flip={test_flip}")
    raw = scores[test_flip]
    platt = fit_calibrator(raw, both["label"].to_numpy(), "platt")
    scale, shift = float(platt.params["slope"][0]), float(platt.params["intercept"][0])
    detector.set_params(test_flip=test_flip, logit_scale=scale, logit_shift=shift)
    calibrated = platt.transform(raw)
    calibration_record = {
        "method": "Platt scaling of the logit (Platt's smoothed targets) on both validation parts together "
                  f"({len(both)} faces): P(fake) = sigmoid({scale:.4f} x logit {shift:+.4f})",
        "before": calibration_of(both["label"].to_numpy(), raw),
        "after": calibration_of(both["label"].to_numpy(), calibrated)}
    sizes = np.cumsum([0] + [len(v) for v in valid.values()])
    per_database = {name: calibrated[sizes[i]:sizes[i + 1]] for i, name in enumerate(valid)}
    real_scores = {name: s[valid[name]["label"].to_numpy() == 0] for name, s in per_database.items()}
    threshold = false_alarm_threshold(real_scores, args.false_alarms)
    valid_rates = {name: {"real_called_fake": float(np.mean(real_scores[name] >= threshold)),
                          "fakes_caught": float(np.mean(s[valid[name]["label"].to_numpy() == 1] >= threshold)),
                          "auc": float(roc_auc_score(valid[name]["label"], s)), "faces": len(s)}
                   for name, s in per_database.items()}
    print(f"Platt scale {scale:.4f} shift {shift:+.4f}; threshold {threshold:.4f}: {valid_rates}")
    previous_rates = {}
    if previous is not None:
        previous_scores = previous.predict_proba(list(both["path"]))
        previous_threshold = float(previous_info["thresholds"]["frame"])
        for i, name in enumerate(valid):
            part, labels = previous_scores[sizes[i]:sizes[i + 1]], valid[name]["label"].to_numpy()
            previous_rates[name] = {"real_called_fake": float(np.mean(part[labels == 0] >= previous_threshold)),
                                    "fakes_caught": float(np.mean(part[labels == 1] >= previous_threshold)),
                                    "auc": float(roc_auc_score(labels, part))}
        print(f"previous model at its threshold {previous_threshold:.4f}: {previous_rates}")

    # -- the file -----------------------------------------------------------------------------
    trained = detector.model_info_
    train_manifest = pd.read_csv(args.run / "manifests" / "v2_train.csv", dtype={"video": str})
    training_sets = {str(name): int(count) for name, count in train_manifest.groupby("dataset").size().items()}
    info = {
        "name": "dflab-face", "version": 2, "created": dt.date.today().isoformat(), "dflab_version": __version__,
        "thresholds": {"frame": threshold, "video_mean_prob": threshold, "video_mean_logit": threshold},
        "threshold_choice": f"the smallest P(fake) that calls at most {args.false_alarms:.0%} of the real faces "
                            "of each database's validation part fake (UADFV and DFDC, "
                            f"{len(both)} faces, after calibration)",
        "intended_false_alarms": args.false_alarms, "validation_rates": valid_rates,
        "previous_validation_rates": previous_rates,
        "previous_threshold": previous_info.get("thresholds", {}).get("frame"),
        "calibration": calibration_record,
        "framing": previous_info.get("framing"), "framing_measured_on": previous_info.get("framing_measured_on"),
        "training_sets": training_sets, "n_train": trained.get("n_train"), "n_valid": len(both),
        "recipe": trained.get("recipe"), "init": f"the weights given to train_ready_v2.py --init ({trained.get('init')})",
        "training_command": "python benchmarks/train_ready_v2.py --shared ../shared --out out/ready2",
        "seed": trained.get("seed", 0), "test_flip": test_flip,
        "test_flip_choice": {"valid_auc": {"off": valid_auc[False], "on": valid_auc[True]},
                             "faces_per_second": {"off": speed[False], "on": speed[True]}},
        "history": getattr(detector, "training_", {}).get("history"),
    }
    # The file trained from is named in info["init"]; a path of the build machine in the parameters is not shipped.
    detector.set_params(weights=None)
    if args.out.exists():
        shutil.rmtree(args.out)
    detector.save(args.out, info=info, float16=True)
    shipped = load_detector(args.out)
    delta = float(np.max(np.abs(shipped.predict_proba(list(both["path"])) - calibrated)))
    print(f"fp16 file: max |dP| against fp32 on validation {delta:.2e}")

    # -- measured, for the record -------------------------------------------------------------
    sets = []
    for folder, split, _ in MATRIX_SETS:
        rows = data.scan(datasets / folder)
        rows = rows if split == "all" else rows[rows["split"] == split].reset_index(drop=True)
        sets.append(EvaluationSet(Path(folder).name, f"{folder} ({split})", rows.reset_index(drop=True), split))
    matrix_dir = args.run / "matrix"
    measured = evaluate_datasets(shipped, sets, matrix_dir, model_label="dflab-face v2", command="build_ready_detector",
                                 n_boot=args.n_boot, seed=0, frames_per_video=args.frames)
    speed_final = faces_per_second(shipped, speed_paths)
    arrays = args.out / "arrays.safetensors"
    digest = hashlib.sha256(arrays.read_bytes()).hexdigest()
    summary = {"matrix": measured["matrix"], "matrix_sets": [list(s) for s in MATRIX_SETS],
               "faces_per_second": speed_final, "fp16_max_delta": delta, "sha256": digest,
               "size_bytes": arrays.stat().st_size, "info": info}
    (args.run / "ready_summary.json").write_text(json.dumps(summary, indent=2, default=str))
    (args.out / "MODEL_CARD.md").write_text(model_card(summary), encoding="utf-8")
    print(f"wrote {args.out} ({arrays.stat().st_size / 1e6:.1f} MB, sha256 {digest}); summary in "
          f"{args.run / 'ready_summary.json'}; matrix report {matrix_dir / 'report.html'}")


def _ci(value, ci) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "—"
    return f"{value:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def _share(value) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def model_card(summary: dict) -> str:
    info = summary["info"]
    recipe = info.get("recipe") or {}
    describe = {folder.split("/")[-1]: text for folder, _, text in summary["matrix_sets"]}
    lines = [
        "# dflab-face — model card (version 2)",
        "",
        "The ready detector of deepfake-lab: `dflab predict PHOTO_OR_VIDEO`, `dflab evaluate` and `dflab serve`",
        "use it when no model is named. It answers one question for a face: how likely is it that the face",
        "was swapped or blended in by a deepfake method. Version 2 is version 1 fine-tuned to hold up on",
        "databases it never saw (self-blended pseudo-fakes, shortcut-removing augmentation), calibrated, with",
        "a threshold chosen for few false alarms on real faces.",
        "",
        "## Model",
        "- Network: EfficientNet-Lite0 (timm `tf_efficientnet_lite0`), one logit, input 224x224 RGB, ImageNet",
        "  mean/std. Mirror test-time augmentation: " + ("on" if info["test_flip"] else "off")
        + " (chosen on validation AUC: " + ", ".join(f"{k} {v:.4f}" for k, v in info["test_flip_choice"]["valid_auc"].items())
        + ").",
        f"- Calibration: {info['calibration']['method']}. Brier / ECE on the validation parts: "
        f"{info['calibration']['before']['brier']:.3f} / {info['calibration']['before']['ece']:.3f} before, "
        f"{info['calibration']['after']['brier']:.3f} / {info['calibration']['after']['ece']:.3f} after (fitted there, "
        "so the after values are optimistic).",
        f"- File: `arrays.safetensors`, fp16, {summary['size_bytes'] / 1e6:.1f} MB, sha256 `{summary['sha256']}`",
        "  (also in `config.json`, whose content hash covers it; a changed byte is refused on load). "
        f"Max |ΔP| against fp32 on validation: {summary['fp16_max_delta']:.1e}.",
        f"- dflab {info['dflab_version']}, built {info['created']}.",
        "",
        "## Training data and terms",
        "Version 1 (EfficientNet-Lite0 from its ImageNet wheel, 4 epochs on 18,519 DFDC and UADFV face crops: the",
        "training parts of Task_1/development and Task_2_3/development, and all of dfdc_pool) fine-tuned on:",
    ]
    for name, count in info["training_sets"].items():
        lines.append(f"- {name}: {count} face crops")
    lines += [
        "- plus a self-blended pseudo-fake of every real face among them, drawn anew each epoch.",
        "- DFDC (Task_2_3, dfdc_pool): Deepfake Detection Challenge data, DFDC research terms (research use only).",
        "- UADFV (Task_1): the authors' research licence (research use only). The weights inherit these terms:",
        "  use them for research and evaluation, not as a certified forensic instrument.",
        "- Never trained on, never used for a choice: Task_2_3/evaluation, Task_1/evaluation, and the",
        "  cross-database samples (Celeb-DF v2, FaceForensics++, DeeperForensics-1.0).",
        "",
        "## Recipe (one command, resumable)",
        "```sh",
        info["training_command"],
        "python benchmarks/build_ready_detector.py out/ready2 --shared ../shared --out src/dflab/ready/dflab-face",
        "```",
        f"- Self-blended images (SBI, Shiohara & Yamasaki 2022): `self_blend={recipe.get('self_blend')}`: every real",
        "  face also appears blended with a colour- and frequency-jittered copy of itself through a soft,",
        f"  deformed mask (`sbi_mask={recipe.get('sbi_mask')}`: an ellipse on the aligned crop), labelled fake,",
        "  beside the real fakes. Blending boundaries are what face swaps of every method share.",
        f"- Augmentation `augment_preset={recipe.get('augment_preset')}`, for real and fake faces alike: flips,",
        "  colour, blur, down- and up-scaling to 0.3-1.0 of the size (half the faces), JPEG 40-95 and H.264",
        "  re-encoding (CRF 20-38, through PyAV), so that a soft, small or video-coded real face does not read as fake.",
        f"- AdamW, lr {recipe.get('lr')}, warm-up {recipe.get('warmup_epochs')} epoch then cosine, batch 32,",
        f"  {recipe.get('epochs')} epochs, seed {info['seed']}; the epoch of best AUC on both validation parts",
        "  together is kept. Epochs:",
    ]
    for record in info.get("history") or []:
        lines.append(f"  - epoch {record['epoch']}: loss {record['train_loss']:.4f}, validation AUC "
                     f"{record.get('valid_auc', float('nan')):.4f}, {record['seconds']:.0f} s on 2 CPU cores")
    framing = info.get("framing") or {}
    lines += [
        "",
        "## Input policy",
        f"- Faces are found with MTCNN (facenet-pytorch) and cut as the training crops were: a square of "
        f"{framing.get('scale')} x the face box's longer side, centred {framing.get('shift_y')} box sides below the box "
        f"centre (medians measured with MTCNN on {info.get('framing_measured_on')} dfdc_pool training crops), resized to 224.",
        "- A face crop given with `--faces whole` is scored as it is. Videos: 32 frames sampled evenly, the largest",
        "  face of each, the video's P(fake) is the mean of its frames'.",
        "",
        "## Decision threshold and false alarms",
        f"- P(fake) >= {info['thresholds']['frame']:.4f} is called fake: {info['threshold_choice']}.",
        f"- Intended: at most {info['intended_false_alarms']:.0%} of real faces called fake on every database like the",
        "  training ones. Measured on the validation parts (where it was chosen) and, for version 1 at its",
        f"  own threshold ({info['previous_threshold']:.4f}, the DFDC validation EER threshold):",
        "",
        "| validation part | faces | AUC | real called fake | fakes caught | v1: real called fake | v1: fakes caught |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, rates in info["validation_rates"].items():
        old = info["previous_validation_rates"].get(name, {})
        lines.append(f"| {name} | {rates['faces']} | {rates['auc']:.3f} | {_share(rates['real_called_fake'])} | "
                     f"{_share(rates['fakes_caught'])} | {_share(old.get('real_called_fake'))} | "
                     f"{_share(old.get('fakes_caught'))} |")
    lines += [
        "",
        'How `dflab` runs it (2026-12-05): on a CPU with onnxruntime, from a graph exported once into the',
        'user cache (`--backend torch` for PyTorch). On the 11 video clips of ../shared (FaceForensics++,',
        "DeeperForensics) the verdicts are PyTorch's, P(fake) within 3e-7; video AUC 0.750 on FF++ (1 false",
        'alarm on 3 real clips) and 1.0 on DeeperForensics (0 on 2). Photos are scored in batches, each as',
        'alone (P(fake) within 1e-5). On folders of face crops, `--faces whole` skips face detection; on the',
        'evaluation sets (nothing chosen on them) it gave frame AUC 0.932 against 0.934 on Task_2_3 crops,',
        '0.996 against 0.773 on Task_1 (UADFV) crops, which this model saw unframed in training, and 0.626',
        'against 0.590 on the Celeb-DF sample (false alarms on real crops 7.0/7.3%, 5.7/35.4%, 41.9/35.9%).',
        '',
        "How far a score may move between machines (`benchmarks/cpu_kernels.py`, 212 face crops and 4",
        "photos, 2026-12-05): PyTorch's plain kernels against its AVX2 ones (ATen and oneDNN), one thread",
        "against two, and onnxruntime against PyTorch. P(fake) moved by at most 4e-6 within PyTorch, 3e-6",
        "within onnxruntime and 1.1e-5 between the two; MTCNN found the same faces, with boxes within 1e-4",
        "px. A verdict can therefore differ between two machines only for a score within about 1e-5 of the",
        "threshold, which at 4 decimals reads as the threshold itself; `make test` holds these bounds",
        "(`tests/test_cpu_kernels.py`: 1e-5 within a backend, 1e-4 between them, boxes 0.05 px). Not",
        "measured: AVX-512 and ARM CPUs. Larger moves come from elsewhere: a face box that moves a pixel",
        "(another face detector, another video decoder) moves the crop and the score by far more, so a",
        "score within 0.01 of the threshold should be read as undecided.",
        "",
        "## Across databases (evaluation data never used for any choice)",
        "`dflab evaluate` with this model on each dataset (frames: the faces of the crop datasets, or 32 sampled",
        "frames of each video). Video level: mean P(fake) of a video's frames. At the shipped threshold.",
        "",
        "| dataset | videos real / fake | frame AUC [95% CI] | video AUC [95% CI] | video EER | real called fake | fakes caught |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in summary["matrix"]:
        lines.append(f"| {describe.get(row['dataset'], row['dataset'])} | {row['real_videos']} / {row['fake_videos']} | "
                     f"{_ci(row['frame_auc'], row['frame_auc_ci'])} | {_ci(row['video_auc'], row['video_auc_ci'])} | "
                     f"{row['video_eer']:.3f} | {_share(row['real_called_fake'])} | {_share(row['fakes_caught'])} |")
    lines += [
        "",
        "The three cross-database samples hold 3, 7 and 4 videos: a sanity check, not a measurement; their",
        "intervals span most of [0, 1]. The project has no larger held-out set of another database.",
        "",
        f"Speed: {summary['faces_per_second']:.0f} face crops per second on 2 CPU cores (decoding included).",
        "",
        "## Limits",
        "- Trained on face swaps of two databases. Face reenactment (Face2Face, NeuralTextures), fully generated",
        "  faces and diffusion edits leave no blending boundary and may score near chance.",
        "- Calibrated on DFDC and UADFV validation faces, half of them fake: on media where fakes are rare a",
        "  P(fake) overstates the odds; on another database the calibration may not hold.",
        "- A score is evidence for a human analyst, not a verdict: check the heatmap (`--heatmap DIR`) and the",
        "  context of the picture.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
