"""The leaderboards of benchmarks/RESULTS.md, generated from benchmarks/runs/*/metrics.json.

    python benchmarks/leaderboard.py            # print the generated section
    python benchmarks/leaderboard.py --write    # rewrite it in place in benchmarks/RESULTS.md
    python benchmarks/leaderboard.py --check    # exit 1 if the committed page differs from the runs
    python benchmarks/leaderboard.py --table out/metrics.json   # one run's full table (every level,
                                                                # thresholds, APCER/BPCER)

A run is a folder `benchmarks/runs/<name>/` holding the `metrics.json` that `dflab lab` wrote (only
that file: scores and models stay out of git) and, optionally, a `run.json` with the exact
`command`, the `date`, the `data`, the `machine`, `wall_s`, `notes`, `source` ("measured" or
"transcribed") and `protocol`. Without `run.json` the command and date come from the metrics'
`meta`. Any new folder is picked up by the next `--write`.

Rows are detectors; a detector run with `--param` values is its own row (`efficientnet-lite0
(crop_scale=0.7)`). The protocol is `lab` (Task 3 trains on Task_1/development +
Task_2_3/development) unless the command adds `--task3-data`, which makes a protocol of its own.
For every protocol, detector and task the newest run wins (by the `meta.created` time, else the
date); older runs of the same cell do not appear. Needs only the standard library.
"""

from __future__ import annotations

import argparse
import difflib
import json
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
RUNS = HERE / "runs"
PAGE = HERE / "RESULTS.md"
BEGIN = "<!-- leaderboard:begin -->"
END = "<!-- leaderboard:end -->"
TASKS = ("task1", "task2", "task3")
TASK_NAMES = {"task1": "Task 1", "task2": "Task 2", "task3": "Task 3"}
VIDEO_LEVEL = "video_mean_prob"
DASH = "—"
PROTOCOLS = {
    "lab": ("The lab protocol",
            "Task 1: trained on `Task_1/development` (UADFV), evaluated on `Task_1/evaluation` "
            "(384 frames of 24 videos). Task 2: the Task 1 model, untouched, on "
            "`Task_2_3/evaluation` (DFDC, 600 faces). Task 3: trained again on the training parts "
            "of `Task_1/development` + `Task_2_3/development`, evaluated on `Task_2_3/evaluation`."),
}


@dataclass
class Run:
    name: str
    metrics: dict
    info: dict

    @property
    def command(self) -> str:
        return self.info.get("command") or self.metrics.get("meta", {}).get("command", "")

    @property
    def date(self) -> str:
        return (self.info.get("date") or self.metrics.get("meta", {}).get("created", ""))[:10]

    @property
    def order(self) -> tuple:
        """Sort key, newest last: the full creation time where the lab wrote one."""
        created = self.metrics.get("meta", {}).get("created", "")
        return (max(created, self.date), self.name)

    @property
    def transcribed(self) -> bool:
        return (self.info.get("source") == "transcribed"
                or bool(self.metrics.get("meta", {}).get("transcribed")))

    @property
    def protocol(self) -> str:
        if self.info.get("protocol"):
            return self.info["protocol"]
        extra = _option_values(self.command, "--task3-data")
        return "lab" if not extra else "lab+" + "+".join(Path(p).name for p in extra)


@dataclass
class Row:
    label: str
    cells: dict = field(default_factory=dict)  # task -> (levels dict, Run)


def _option_values(command: str, option: str) -> list[str]:
    try:
        words = shlex.split(command)
    except ValueError:
        words = command.split()
    values = []
    for i, word in enumerate(words):
        if word == option and i + 1 < len(words):
            values.append(words[i + 1])
        elif word.startswith(option + "="):
            values.append(word[len(option) + 1:])
    return values


def detector_label(detector: str, command: str) -> str:
    """The detector's name with the `--param` values of the command that apply to it."""
    params = []
    for value in _option_values(command, "--param") + _option_values(command, "-p"):
        key = value.split("=", 1)[0]
        if "." in key:
            owner, _, rest = value.partition(".")
            if owner == detector:
                params.append(rest)
        else:
            params.append(value)
    return f"{detector} ({', '.join(params)})" if params else detector


def load_runs(runs_dir: Path = RUNS) -> list[Run]:
    runs = []
    for path in sorted(runs_dir.glob("*/metrics.json")):
        metrics = json.loads(path.read_text())
        if metrics.get("meta", {}).get("synthetic"):
            continue  # a generated demo lab, not the real data
        info_path = path.parent / "run.json"
        info = json.loads(info_path.read_text()) if info_path.exists() else {}
        runs.append(Run(path.parent.name, metrics, info))
    return runs


def tables(runs: list[Run]) -> dict[str, list[Row]]:
    """protocol -> rows, each cell from the newest run of that protocol, detector and task."""
    newest: dict[tuple, tuple] = {}
    for run in sorted(runs, key=lambda r: r.order):
        for task, task_metrics in run.metrics.get("tasks", {}).items():
            if task not in TASKS:
                continue
            for detector, levels in task_metrics.get("detectors", {}).items():
                if "frame" in levels:
                    key = (run.protocol, detector_label(detector, run.command), task)
                    newest[key] = (levels, run)
    out: dict[str, dict[str, Row]] = {}
    for (protocol, label, task), cell in newest.items():
        out.setdefault(protocol, {}).setdefault(label, Row(label)).cells[task] = cell
    return {p: list(rows.values()) for p, rows in out.items()}


def _value(m: dict | None, key: str) -> float | None:
    return None if not m or m.get(key) is None else float(m[key])


def _fmt(m: dict | None, key: str, with_ci: bool, best: float | None) -> str:
    v = _value(m, key)
    if v is None:
        return DASH
    text = f"{v:.3f}"
    if best is not None and round(v, 3) == round(best, 3):
        text = f"**{text}**"
    ci = m.get(key + "_ci") if with_ci else None
    return f"{text} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else text


def _has_video(rows: list[Row], task: str) -> bool:
    """Whether the task has a video level distinct from its frames (not so in Task_2_3)."""
    for row in rows:
        levels = row.cells.get(task, ({}, None))[0]
        video, frame = levels.get(VIDEO_LEVEL), levels.get("frame", {})
        if video and video.get("n") != frame.get("n"):
            return True
    return False


def render_table(protocol: str, rows: list[Row]) -> list[str]:
    tasks = [t for t in TASKS if any(t in row.cells for row in rows)]
    columns = []  # (header, task, level, key, with_ci, better)
    for t in tasks:
        name = TASK_NAMES[t]
        if _has_video(rows, t):
            columns += [(f"{name} frame AUC [95% CI]", t, "frame", "auc", True, max),
                        (f"{name} video AUC [95% CI]", t, VIDEO_LEVEL, "auc", True, max),
                        (f"{name} EER (frame)", t, "frame", "eer", False, min)]
        else:
            columns += [(f"{name} AUC [95% CI]", t, "frame", "auc", True, max),
                        (f"{name} EER", t, "frame", "eer", False, min)]

    def level(row, t, lvl):
        return row.cells[t][0].get(lvl) if t in row.cells else None

    def sort_key(row):
        return tuple(-(_value(level(row, t, "frame"), "auc") or -1.0) for t in tasks) + (row.label,)

    rows = sorted(rows, key=sort_key)
    bests = []
    for _, t, lvl, key, _, better in columns:
        values = [v for row in rows if (v := _value(level(row, t, lvl), key)) is not None]
        bests.append(better(values) if len(values) > 1 else None)

    header = ["detector"] + [c[0] for c in columns] + ["date", "run"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    used: dict[str, Run] = {}
    for row in rows:
        runs = list(dict.fromkeys(row.cells[t][1].name for t in tasks if t in row.cells))
        by_name = {row.cells[t][1].name: row.cells[t][1] for t in tasks if t in row.cells}
        used.update(by_name)
        name, _, params = row.label.partition(" (")
        cells = [f"`{name}` ({params}" if params else f"`{name}`"]
        for (_, t, lvl, key, with_ci, _), best in zip(columns, bests):
            cells.append(_fmt(level(row, t, lvl), key, with_ci, best))
        cells.append(", ".join(dict.fromkeys(by_name[r].date for r in runs)))
        cells.append(", ".join(f"[{r}](runs/{r}/){'†' if by_name[r].transcribed else ''}"
                               for r in runs))
        lines.append("| " + " | ".join(cells) + " |")

    title, description = PROTOCOLS.get(protocol, (None, None))
    if title is None:
        extra = protocol.split("+", 1)[-1].replace("+", ", ")
        title = f"Task 3 with more public data: {extra}"
        newest = max((r for r in used.values()), key=lambda r: r.order)
        train = newest.metrics.get("tasks", {}).get("task3", {}).get("train", "")
        description = (f"Task 3 trained on {train}; evaluated on `Task_2_3/evaluation`."
                       if train else "")
    out = [f"### {title}", ""]
    if description:
        out += [description, ""]
    out += lines + [""]
    if any(r.transcribed for r in used.values()):
        out += ["† transcribed from an older table of this page: the run's folder was not kept, "
                "so its `metrics.json` holds the numbers as printed (3 decimals; see its `meta`).",
                ""]
    out.append("Runs:")
    out.append("")
    for run in sorted(used.values(), key=lambda r: r.order):
        wall = f", wall time {run.info['wall_s']:,} s" if run.info.get("wall_s") else ""
        source = "transcribed" if run.transcribed else "measured"
        text = f"- [`{run.name}`](runs/{run.name}/) ({run.date}, {source}{wall}): `{run.command}`"
        if run.info.get("notes"):
            text += f" — {run.info['notes']}"
        out.append(text)
    return out


def section(runs_dir: Path = RUNS) -> str:
    by_protocol = tables(load_runs(runs_dir))
    order = sorted(by_protocol, key=lambda p: (p != "lab", p))
    lines = [BEGIN,
             "<!-- generated by `python benchmarks/leaderboard.py --write` from "
             "benchmarks/runs/*/metrics.json: edit the runs, not this section -->", ""]
    for protocol in order:
        lines += render_table(protocol, by_protocol[protocol]) + [""]
    lines.append(END)
    return "\n".join(lines)


def splice(page: str, new_section: str) -> str:
    start, end = page.find(BEGIN), page.find(END)
    if start < 0 or end < start:
        raise SystemExit(f"{PAGE}: markers {BEGIN} ... {END} not found")
    return page[:start] + new_section + page[end + len(END):]


def detail_table(metrics: dict, levels: list[str]) -> list[str]:
    """One run's full table: a row per task, detector and level (a level whose count equals the
    frame count, one frame per video as in Task_2_3, repeats the frame row and is left out)."""
    def interval(value, bounds):
        return f"{value:.3f} [{bounds[0]:.3f}, {bounds[1]:.3f}]" if bounds else f"{value:.3f}"

    header = ["task", "detector", "level", "n", "AUC [95% CI]", "EER [95% CI]", "EER thr",
              "dev thr", "accuracy", "APCER", "BPCER"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for task, task_metrics in metrics["tasks"].items():
        for detector, by_level in task_metrics["detectors"].items():
            frame_n = by_level.get("frame", {}).get("n")
            for lvl in levels:
                m = by_level.get(lvl)
                if not m or (lvl != "frame" and m.get("n") == frame_n):
                    continue
                cells = [task, detector, lvl, str(m.get("n", "")),
                         interval(m["auc"], m.get("auc_ci")),
                         interval(m["eer"], m.get("eer_ci")) if "eer" in m else "-",
                         *(f"{m[key]:.3f}" if m.get(key) is not None else "-"
                           for key in ("eer_threshold", "threshold", "accuracy", "apcer", "bpcer"))]
                lines.append("| " + " | ".join(cells) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="rewrite the section in the page")
    mode.add_argument("--check", action="store_true", help="exit 1 if the page differs")
    mode.add_argument("--table", type=Path, metavar="METRICS_JSON",
                      help="print one run's full table instead")
    parser.add_argument("--levels", default=f"frame,{VIDEO_LEVEL}", help="levels for --table")
    parser.add_argument("--runs", type=Path, default=RUNS, help="folder of run folders")
    parser.add_argument("--page", type=Path, default=PAGE, help="the results page")
    args = parser.parse_args(argv)

    if args.table:
        print("\n".join(detail_table(json.loads(args.table.read_text()), args.levels.split(","))))
        return 0
    new_section = section(args.runs)
    if not (args.write or args.check):
        print(new_section)
        return 0
    page = args.page.read_text(encoding="utf-8")
    updated = splice(page, new_section)
    if args.write:
        if updated != page:
            args.page.write_text(updated, encoding="utf-8")
        return 0
    if updated != page:
        sys.stdout.writelines(difflib.unified_diff(
            page.splitlines(keepends=True), updated.splitlines(keepends=True),
            f"{args.page} (committed)", f"{args.page} (from {args.runs})"))
        print(f"\n{args.page}: the leaderboards differ from {args.runs}; "
              f"run `python benchmarks/leaderboard.py --write`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
