"""Print a `dflab lab` run's metrics.json as the markdown table used in benchmarks/RESULTS.md.

    python benchmarks/results_table.py out/metrics.json [--levels frame,video_mean_prob]

One row per task, detector and level. A level whose video count equals its frame count (one frame
per video, as in Task_2_3) repeats the frame row and is left out.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _interval(value: float, bounds) -> str:
    return f"{value:.3f} [{bounds[0]:.3f}, {bounds[1]:.3f}]" if bounds else f"{value:.3f}"


def rows(metrics: dict, levels: list[str]) -> list[str]:
    header = ["task", "detector", "level", "n", "AUC [95% CI]", "EER [95% CI]", "EER thr", "dev thr",
              "accuracy", "APCER", "BPCER"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for task, task_metrics in metrics["tasks"].items():
        for detector, by_level in task_metrics["detectors"].items():
            frame_n = by_level.get("frame", {}).get("n")
            for level in levels:
                m = by_level.get(level)
                if not m or (level != "frame" and m["n"] == frame_n):
                    continue
                cells = [task, detector, level, str(m["n"]), _interval(m["auc"], m.get("auc_ci")),
                         _interval(m["eer"], m.get("eer_ci")), f"{m['eer_threshold']:.3f}",
                         *(f"{m[key]:.3f}" if m.get(key) is not None else "-"
                           for key in ("threshold", "accuracy", "apcer", "bpcer"))]
                lines.append("| " + " | ".join(cells) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("metrics", type=Path)
    parser.add_argument("--levels", default="frame,video_mean_prob")
    args = parser.parse_args(argv)
    print("\n".join(rows(json.loads(args.metrics.read_text()), args.levels.split(","))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
