"""Train the candidate for ``dflab-face`` version 2: the shipped version 1 fine-tuned with self-blended
pseudo-fakes and shortcut-removing augmentation (see benchmarks/RESULTS.md, "dflab-face 2").

    python benchmarks/train_ready_v2.py --shared ../shared --out /work/runs/ready2

Data (the lab's own splits, seed 0, so the validation parts are the version 1 model's):
- training: Task_1/development and Task_2_3/development training parts, and ``--pool-per-label`` real
  and as many fake faces of dfdc_pool drawn at random (seed 0); every real face also appears
  self-blended as a fake each epoch (new blends every epoch, an ellipse mask on the aligned crop);
- validation (epoch choice, early stopping): the validation parts of Task_1/development (UADFV) and
  Task_2_3/development (DFDC) together: a model that improves on one database only is not chosen.

Every epoch is checkpointed into ``OUT/model.checkpoints``; the same command resumes an interrupted
run. The trained model goes to ``OUT/model``; ``build_ready_detector.py OUT --version 2`` makes the
shipped file from it. Task_1/evaluation, Task_2_3/evaluation and the cross-database samples are not
read here.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from dflab import data
from dflab.detectors import create
from dflab.detectors.registry import parse_params
from dflab.lab.config import LabConfig
from dflab.lab.protocol import prepare_manifests
from dflab.runtime.memory import keep_freed_memory

DETECTOR = "efficientnet-lite0"

#: The recipe: every parameter that differs from a registered efficientnet-lite0's defaults.
RECIPE = {"self_blend": "mix", "sbi_mask": "ellipse", "augment_preset": "shortcut", "epochs": 2, "lr": 1e-4,
          "warmup_epochs": 0.1, "patience": 1}


def training_data(shared: Path, out: Path, pool_per_label: int, seed: int = 0) -> dict[str, pd.DataFrame]:
    datasets = shared / "datasets"
    config = LabConfig(task1=datasets / "Task_1", task23=datasets / "Task_2_3", detectors=[DETECTOR],
                       out=out, seed=seed, task3_data=[datasets / "dfdc_pool"], tasks=(3,))
    manifests = prepare_manifests(config)
    pool = manifests["task3_extra"]
    drawn = pd.concat([part.sample(n=min(pool_per_label, len(part)), random_state=seed)
                       for _, part in pool.groupby("label", sort=True)])
    train = pd.concat([manifests["task1_train"], manifests["task23_train"], drawn.sort_index()], ignore_index=True)
    valid = pd.concat([manifests["task1_valid"], manifests["task23_valid"]], ignore_index=True)
    return {"train": train, "valid": valid, **{k: v for k, v in manifests.items() if k.endswith("_valid")}}


def main() -> None:
    keep_freed_memory()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", type=Path, default=Path("../shared"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--init", type=Path, default=Path("src/dflab/ready/dflab-face/arrays.safetensors"),
                        help="the weights fine-tuned (the shipped version 1)")
    parser.add_argument("--pool-per-label", type=int, default=4000)
    parser.add_argument("--param", action="append", default=[], help="KEY=VALUE over the recipe")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    parts = training_data(args.shared, args.out, args.pool_per_label)
    for name in ("train", "valid"):
        data.save_manifest(parts[name], args.out / "manifests" / f"v2_{name}.csv")
    recipe = {**RECIPE, **parse_params(args.param, [DETECTOR]).get(DETECTOR, {})}
    detector = create(DETECTOR, weights=str(args.init), checkpoint_dir=str(args.out / "model.checkpoints"),
                      **recipe)
    print(f"training on {len(parts['train'])} faces ({int((parts['train']['label'] == 0).sum())} real, each also "
          f"self-blended), validation {len(parts['valid'])}; recipe {recipe}")
    detector.fit(parts["train"], valid=parts["valid"])
    detector.save(args.out / "model", info={"n_train": len(parts["train"]), "n_valid": len(parts["valid"]),
                                            "recipe": recipe, "init": str(args.init), "seed": 0})
    print(f"model: {args.out / 'model'}")


if __name__ == "__main__":
    main()
