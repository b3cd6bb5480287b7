"""benchmarks/leaderboard.py: metrics.json -> leaderboard rows, and RESULTS.md never drifts from
benchmarks/runs (standard library only; no dflab internals)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "leaderboard.py"

_spec = importlib.util.spec_from_file_location("leaderboard", SCRIPT)
leaderboard = importlib.util.module_from_spec(_spec)
sys.modules["leaderboard"] = leaderboard  # dataclasses look the module up by name
_spec.loader.exec_module(leaderboard)

LAB = "dflab lab --task1 ../shared/datasets/Task_1 --task23 ../shared/datasets/Task_2_3"


def _level(n, auc, ci=None, eer=None):
    m = {"n": n, "auc": auc}
    if ci:
        m["auc_ci"] = ci
    if eer is not None:
        m["eer"] = eer
    return m


def _write_run(runs: Path, name: str, created: str, command: str, tasks: dict, **info) -> None:
    folder = runs / name
    folder.mkdir(parents=True)
    meta = {"created": created, "command": command}
    (folder / "metrics.json").write_text(json.dumps({"meta": meta, "tasks": tasks}))
    if info:
        (folder / "run.json").write_text(json.dumps(info))


def _tiny_tasks(auc1=0.9651, auc2=0.58):
    return {
        "task1": {"detectors": {"ela-gb": {
            "frame": _level(384, auc1, [0.8967, 0.9981], eer=0.0990),
            "video_mean_prob": _level(24, 0.9583, [0.8601, 1.0], eer=0.0833)}}},
        "task2": {"detectors": {"ela-gb": {
            "frame": _level(600, auc2, [0.5361, 0.6282], eer=0.45),
            "video_mean_prob": _level(600, auc2, [0.5361, 0.6282], eer=0.45)}}},
    }


def test_tiny_metrics_give_the_expected_rows(tmp_path):
    runs = tmp_path / "runs"
    _write_run(runs, "hc", "2026-12-02T03:00:00", f"{LAB} --detector ela-gb --no-task3 --out out/hc",
               _tiny_tasks())
    lines = leaderboard.section(runs).splitlines()
    assert lines[0] == leaderboard.BEGIN and lines[-1] == leaderboard.END
    header = ("| detector | Task 1 frame AUC [95% CI] | Task 1 video AUC [95% CI] | Task 1 EER (frame) "
              "| Task 2 AUC [95% CI] | Task 2 EER | date | run |")
    assert header in lines  # Task 2's video level equals its frames: no column; no Task 3 at all
    assert ("| `ela-gb` | 0.965 [0.897, 0.998] | 0.958 [0.860, 1.000] | 0.099 | 0.580 [0.536, 0.628] "
            "| 0.450 | 2026-12-02 | [hc](runs/hc/) |") in lines
    assert "- [`hc`](runs/hc/) (2026-12-02, measured): " \
           f"`{LAB} --detector ela-gb --no-task3 --out out/hc`" in lines
    assert not any("†" in line for line in lines)


def test_newest_run_wins_params_make_rows_and_transcribed_runs_are_marked(tmp_path):
    runs = tmp_path / "runs"
    _write_run(runs, "old", "2026-11-29", f"{LAB} --detector ela-gb --out out/old",
               _tiny_tasks(auc1=0.9370), source="transcribed", date="2026-11-29")
    _write_run(runs, "new", "2026-12-02T03:00:00", f"{LAB} --detector ela-gb --out out/new",
               _tiny_tasks())
    _write_run(runs, "tuned", "2026-11-28", f"{LAB} --detector ela-gb --param ela-gb.n_estimators=50 "
               "--param seed=1 --out out/tuned", _tiny_tasks(auc1=0.5), source="transcribed")
    text = leaderboard.section(runs)
    assert "0.937" not in text and "runs/old/" not in text  # superseded: gone
    rows = [line for line in text.splitlines() if line.startswith("| `ela-gb`")]
    assert len(rows) == 2
    assert rows[0].startswith("| `ela-gb` | **0.965**") and rows[0].endswith("[new](runs/new/) |")
    assert rows[1].startswith("| `ela-gb` (n_estimators=50, seed=1) | 0.500")
    assert rows[1].endswith("[tuned](runs/tuned/)† |")
    assert "† transcribed" in text


def test_task3_data_makes_its_own_protocol_and_empty_columns_go(tmp_path):
    runs = tmp_path / "runs"
    _write_run(runs, "hc", "2026-12-02T03:00:00", f"{LAB} --detector ela-gb --out out/hc", _tiny_tasks())
    _write_run(runs, "pool", "2026-12-02T01:30:00",
               f"{LAB} --task3-data ../shared/datasets/dfdc_pool --tasks 3 --detector ela-gb --out out/p",
               {"task3": {"train": "everything", "detectors": {"ela-gb": {
                   "frame": _level(600, 0.7, [0.66, 0.74], eer=0.3)}}}})
    text = leaderboard.section(runs)
    assert text.index("### The lab protocol") < text.index("### Task 3 with more public data: dfdc_pool")
    pool = text.split("dfdc_pool\n", 1)[1]
    assert "| detector | Task 3 AUC [95% CI] | Task 3 EER | date | run |" in pool
    assert "| `ela-gb` | 0.700 [0.660, 0.740] | 0.300 | 2026-12-02 | [pool](runs/pool/) |" in pool


def test_write_then_check(tmp_path):
    runs = tmp_path / "runs"
    _write_run(runs, "hc", "2026-12-02T03:00:00", f"{LAB} --detector ela-gb --out out/hc", _tiny_tasks())
    page = tmp_path / "RESULTS.md"
    page.write_text(f"# Results\n\n{leaderboard.BEGIN}\nstale\n{leaderboard.END}\n\n## Speed\n")
    args = ["--runs", str(runs), "--page", str(page)]
    assert leaderboard.main(args + ["--check"]) == 1
    assert leaderboard.main(args + ["--write"]) == 0
    assert leaderboard.main(args + ["--check"]) == 0
    text = page.read_text()
    assert text.startswith("# Results\n\n") and text.endswith(f"{leaderboard.END}\n\n## Speed\n")
    assert "stale" not in text


def test_committed_page_is_what_the_runs_give():
    """benchmarks/RESULTS.md's leaderboards are exactly what benchmarks/runs/*/metrics.json give."""
    result = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr


def test_committed_runs_are_well_formed():
    runs = leaderboard.load_runs()
    assert runs
    for run in runs:
        assert run.command and len(run.date) == 10, run.name
        if run.transcribed:
            assert "transcribed" in run.metrics["meta"]["source"], run.name


def test_table_mode_prints_every_level(tmp_path):
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"tasks": _tiny_tasks()}))
    lines = leaderboard.detail_table(json.loads(metrics.read_text()), ["frame", "video_mean_prob"])
    assert lines[0].startswith("| task | detector | level | n | AUC [95% CI] |")
    assert [line.split(" | ")[2] for line in lines[2:]] == ["frame", "video_mean_prob", "frame"]
