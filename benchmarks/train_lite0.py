"""Fine-tune efficientnet-lite0 on Task_1/development, score Task_1/evaluation and Task_2_3/evaluation.

Validation = a by-video part of development (never evaluation data). Frame AUC on Task_1/evaluation,
video AUC from the mean probability per video, and image AUC on Task_2_3/evaluation (inter-database).
Usage: python benchmarks/train_lite0.py [--shared ../shared] [--epochs 2] [--train-frames 4] ...
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from sklearn.metrics import roc_auc_score

from dflab import data
from dflab.detectors import create
from dflab.runtime.memory import keep_freed_memory


def frames_per_video(df, n: int, seed: int):
    if n <= 0:
        return df
    return (df.groupby("video", group_keys=False)
              .apply(lambda g: g.sample(min(n, len(g)), random_state=seed)).reset_index(drop=True))


def main() -> None:
    keep_freed_memory()  # as the dflab command does
    parser = argparse.ArgumentParser()
    parser.add_argument("--shared", default=str(Path(__file__).resolve().parents[2] / "shared"))
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--train-frames", type=int, default=4, help="frames per video for training (0 = all)")
    parser.add_argument("--eval-frames", type=int, default=0, help="frames per video on Task_1/evaluation (0 = all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/lite0_task1.json")
    args = parser.parse_args()

    datasets = Path(args.shared) / "datasets"
    task1 = data.scan(datasets / "Task_1", layout="lab")
    dev = task1[task1.split == "development"]
    train, valid = data.split_by_group(dev, valid_fraction=0.2, seed=args.seed)
    train = frames_per_video(train, args.train_frames, args.seed)
    valid = frames_per_video(valid, args.train_frames, args.seed)
    evaluation = frames_per_video(task1[task1.split == "evaluation"], args.eval_frames, args.seed)
    task23 = data.scan(datasets / "Task_2_3", layout="lab")
    task23 = task23[task23.split == "evaluation"].reset_index(drop=True)

    detector = create("efficientnet-lite0", epochs=args.epochs, input_size=args.input_size,
                      batch_size=args.batch_size, lr=args.lr, seed=args.seed, device=args.device,
                      workers=args.workers)
    started = time.perf_counter()
    detector.fit(train, valid=valid)
    train_seconds = time.perf_counter() - started

    started = time.perf_counter()
    scores = detector.predict_proba(evaluation)
    t1_seconds = time.perf_counter() - started
    frame_auc = roc_auc_score(evaluation.label, scores)
    per_video = evaluation.assign(score=scores).groupby("video").agg(label=("label", "first"), score=("score", "mean"))
    video_auc = roc_auc_score(per_video.label, per_video.score)
    started = time.perf_counter()
    scores23 = detector.predict_proba(task23)
    t23_seconds = time.perf_counter() - started
    result = {
        "settings": vars(args), "n_train": len(train), "n_valid": len(valid), "n_eval_task1": len(evaluation),
        "n_eval_task23": len(task23), "training": detector.training_, "train_seconds": round(train_seconds, 1),
        "task1_frame_auc": float(frame_auc), "task1_video_auc": float(video_auc),
        "task23_auc": float(roc_auc_score(task23.label, scores23)),
        "task1_images_per_s": len(evaluation) / t1_seconds, "task23_images_per_s": len(task23) / t23_seconds,
    }
    Path(args.out).write_text(json.dumps(result, indent=2, default=str))
    print(json.dumps({k: v for k, v in result.items() if k != "training"}, indent=2, default=str))


if __name__ == "__main__":
    main()
