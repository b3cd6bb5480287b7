"""Train one detector on the lab's Task 3 data and report its validation and evaluation frame AUC.

For tuning Task 3 without a whole ``dflab lab`` run (which also trains and scores Task 1 and 2):
it reads the manifests a lab run wrote, so the splits are the lab's, and trains the way the lab
trains Task 3 — on ``task1_train`` + ``task23_train``, early stopping on ``task23_valid`` (the target
database's validation part, where every choice is made). ``task23_eval`` is scored once, at the end,
for the record. The model is saved to ``--out`` (checkpoints beside it: an interrupted run resumes);
a summary goes to ``--out``/task3_summary.json.

Usage: python benchmarks/train_task3.py MANIFESTS --detector NAME [--param KEY=VALUE ...] --out MODEL_DIR
       [--test-flip]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd
from sklearn.metrics import roc_auc_score

from dflab.cli.common import UserError
from dflab.detectors.registry import parse_params
from dflab.detectors import create
from dflab.runtime.memory import keep_freed_memory


def main() -> None:
    keep_freed_memory()  # as the dflab command does
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("manifests", type=Path, help="the manifests/ folder of a dflab lab run with Task 3")
    parser.add_argument("--detector", required=True)
    parser.add_argument("--param", action="append", default=[], help="KEY=VALUE (JSON or text), repeatable")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--test-flip", action="store_true", help="also score with test_flip (CNN detectors)")
    args = parser.parse_args()

    frames = {name: pd.read_csv(args.manifests / f"{name}.csv")
              for name in ("task1_train", "task23_train", "task23_valid", "task23_eval")}
    train = pd.concat([frames["task1_train"], frames["task23_train"]], ignore_index=True)
    try:
        params = parse_params(args.param, [args.detector]).get(args.detector, {})
    except (UserError, KeyError) as err:  # an unknown detector or parameter
        parser.error(str(err.args[0]) if err.args else str(err))
    detector = create(args.detector, **params)
    if args.test_flip and "test_flip" not in detector.get_params(deep=False):
        parser.error(f"--test-flip: {args.detector} has no test_flip parameter")  # before, not after, training
    if "checkpoint_dir" in detector.get_params(deep=False) and "checkpoint_dir" not in params:
        detector.set_params(checkpoint_dir=str(args.out) + ".checkpoints")

    started = time.perf_counter()
    detector.fit(train, valid=frames["task23_valid"])
    train_seconds = time.perf_counter() - started
    detector.save(args.out, info={"trained_on": f"{args.manifests}: task1_train + task23_train",
                                  "n_train": len(train), "n_valid": len(frames["task23_valid"])})

    summary = {"detector": args.detector, "params": params, "n_train": len(train),
               "train_seconds": round(train_seconds), "history": getattr(detector, "training_", {}).get("history")}
    flips = (False, True) if args.test_flip else (False,)
    for test_flip in flips:
        if args.test_flip:
            detector.set_params(test_flip=test_flip)
        for part in ("task23_valid", "task23_eval"):
            auc = roc_auc_score(frames[part]["label"], detector.predict_proba(list(frames[part]["path"])))
            summary[f"{part}_auc" + ("_test_flip" if test_flip else "")] = round(float(auc), 4)
    (args.out / "task3_summary.json").write_text(json.dumps(summary, indent=2, default=str))
    print(json.dumps({k: v for k, v in summary.items() if k != "history"}, indent=2, default=str))


if __name__ == "__main__":
    main()
