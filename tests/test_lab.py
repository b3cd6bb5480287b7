"""End to end: the lab on a tiny generated lab (with a bad file), resume, and on ../shared."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from dflab.lab.config import LabConfig
from dflab.lab.protocol import run_lab
from dflab.data.synthetic.demo_lab import make_lab

from .conftest import require_shared


@pytest.fixture(scope="module")
def tiny_lab(tmp_path_factory):
    root = tmp_path_factory.mktemp("lab")
    make_lab(root, n_videos_dev=10, n_videos_eval=6, frames_per_video=3, size=96, n_t23_dev=24, n_t23_eval=16,
             seed=3)
    # A corrupt file in Task 1 evaluation: it must be skipped, reported, and not stop the run.
    bad = root / "Task_1" / "evaluation" / "real" / sorted(p.name for p in (root / "Task_1/evaluation/real").iterdir())[0]
    (bad / "999.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    return root


def _config(root, out, **kwargs):
    return LabConfig(task1=root / "Task_1", task23=root / "Task_2_3", detectors=["ela-logreg"], out=out,
                     n_boot=50, workers=1, synthetic=True, **kwargs)


@pytest.mark.slow
def test_lab_end_to_end(tiny_lab, tmp_path):
    out = tmp_path / "out"
    result = run_lab(_config(tiny_lab, out))
    assert set(result["tasks"]) == {"task1", "task2", "task3"}
    for task in ("task1", "task2", "task3"):
        entry = result["tasks"][task]["detectors"]["ela-logreg"]
        for level in ("frame", "video_mean_prob", "video_mean_logit"):
            m = entry[level]
            assert 0 <= m["auc"] <= 1 and 0 <= m["eer"] <= 1
            assert m["auc_ci"][0] <= m["auc"] <= m["auc_ci"][1]
            assert "threshold" in m and "apcer" in m  # threshold from development data, applied to evaluation
        calibration = entry["calibration"]
        assert set(calibration) == {"raw", "platt", "isotonic"}
        assert all(0 <= c["brier"] <= 1 and 0 <= c["ece"] <= 1 for c in calibration.values())
    # The synthetic manipulation of Task 1 is easy to learn: Task 1 must be well above chance.
    assert result["tasks"]["task1"]["detectors"]["ela-logreg"]["frame"]["auc"] > 0.75

    # Task 3 selects its model on the target database's validation part only.
    task3_info = json.loads((out / "models" / "ela-logreg" / "task3" / "config.json").read_text())["info"]
    assert task3_info["n_valid"] == len(pd.read_csv(out / "manifests" / "task23_valid.csv"))

    scores = pd.read_csv(out / "scores.csv")
    assert set(scores["task"]) == {"task1", "task2", "task3"}
    n_t1_eval = len(list((tiny_lab / "Task_1" / "evaluation").rglob("*.png")))
    assert (scores["task"] == "task1").sum() == n_t1_eval
    assert (scores["task"] == "task2").sum() == 32
    skipped = result["skipped"]
    assert len(skipped) == 1 and skipped[0]["path"].endswith("999.png") and skipped[0]["reason"]
    assert json.loads((out / "metrics.json").read_text())["skipped"] == skipped

    html = (out / "report.html").read_text()
    assert "999.png" in html and "ela-logreg" in html and "synthetic" in html.lower()
    assert "Calibration" in html and "ECE (Platt)" in html
    assert (out / "report.md").exists()
    assert (out / "plots" / "roc_task1.png").exists() and (out / "plots" / "roc_task2.svg").exists()
    assert (out / "models" / "ela-logreg" / "task1" / "config.json").exists()
    # No evaluation file is ever used for training or threshold choice.
    manifests = {p.stem: pd.read_csv(p) for p in (out / "manifests").glob("*.csv")}
    used = set(manifests["task1_train"].path) | set(manifests["task1_valid"].path)
    assert not used & set(manifests["task1_eval"].path)
    assert not set(manifests["task1_train"].video) & set(manifests["task1_valid"].video)


@pytest.mark.slow
def test_lab_resumes_and_is_reproducible(tiny_lab, tmp_path):
    out = tmp_path / "out"
    first = run_lab(_config(tiny_lab, out, task3=False))
    model_config = out / "models" / "ela-logreg" / "task1" / "config.json"
    stamp = model_config.stat().st_mtime_ns
    # Interrupted run: drop the last scored rows, as if the process stopped mid-way.
    scores = pd.read_csv(out / "scores.csv")
    scores.iloc[: len(scores) // 2].to_csv(out / "scores.csv", index=False)
    second = run_lab(_config(tiny_lab, out, task3=False))
    assert model_config.stat().st_mtime_ns == stamp  # the trained model was reused
    rescored = pd.read_csv(out / "scores.csv")
    assert len(rescored) == len(scores) and not rescored.duplicated(["task", "detector", "path"]).any()
    for task in ("task1", "task2"):
        assert first["tasks"][task]["detectors"] == second["tasks"][task]["detectors"]
    # Same seed in a fresh folder: same numbers.
    third = run_lab(_config(tiny_lab, tmp_path / "again", task3=False))
    np.testing.assert_allclose(third["tasks"]["task1"]["detectors"]["ela-logreg"]["frame"]["auc"],
                               first["tasks"]["task1"]["detectors"]["ela-logreg"]["frame"]["auc"])


@pytest.mark.slow
@pytest.mark.shared
def test_lab_on_shared_data_subsampled(tmp_path):
    task1 = require_shared("datasets", "Task_1")
    task23 = require_shared("datasets", "Task_2_3")
    config = LabConfig(task1=task1, task23=task23, detectors=["ela-logreg"], out=tmp_path / "out", n_boot=100,
                       per_video=3, max_videos=40, task3=False, workers=2)
    result = run_lab(config)
    task1_auc = result["tasks"]["task1"]["detectors"]["ela-logreg"]["frame"]["auc"]
    task2 = result["tasks"]["task2"]["detectors"]["ela-logreg"]["frame"]
    assert task1_auc > 0.7  # ELA separates UADFV's face swaps well above chance
    assert task2["n"] > 0 and 0 <= task2["auc"] <= 1
    assert (tmp_path / "out" / "report.html").exists()


@pytest.mark.slow
def test_the_task3_tuning_script_trains_as_the_lab_does(tiny_lab, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    out = tmp_path / "out"
    result = run_lab(_config(tiny_lab, out))
    model = tmp_path / "task3-model"
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "train_task3.py"
    subprocess.run([sys.executable, str(script), str(out / "manifests"), "--detector", "ela-logreg",
                    "--out", str(model)], check=True, capture_output=True, text=True)
    summary = json.loads((model / "task3_summary.json").read_text())
    manifests = {name: pd.read_csv(out / "manifests" / f"{name}.csv")
                 for name in ("task1_train", "task23_train", "task23_valid")}
    assert summary["n_train"] == len(manifests["task1_train"]) + len(manifests["task23_train"])
    # Same data, same validation part, same seed: the lab's Task 3 evaluation AUC, to the digit.
    lab_auc = result["tasks"]["task3"]["detectors"]["ela-logreg"]["frame"]["auc"]
    assert summary["task23_eval_auc"] == pytest.approx(lab_auc, abs=1e-4)
    assert json.loads((model / "config.json").read_text())["info"]["n_valid"] == len(manifests["task23_valid"])


@pytest.mark.slow
def test_task3_data_joins_task3_training_and_tasks_3_keeps_the_others(tiny_lab, tmp_path):
    extra = tmp_path / "extra"
    make_lab(extra, n_videos_dev=2, n_videos_eval=2, frames_per_video=1, size=96, n_t23_dev=14, n_t23_eval=2, seed=9)
    out = tmp_path / "out"
    first = run_lab(_config(tiny_lab, out, task3=False))
    assert set(first["tasks"]) == {"task1", "task2"}
    extra_root = extra / "Task_2_3"
    n_extra = len([p for p in (extra_root / "development").rglob("*") if p.is_file()])
    result = run_lab(_config(tiny_lab, out, task3_data=[extra_root], tasks=(3,)))
    # Tasks 1 and 2 are kept from the first run; Task 3 is trained with the extra rows.
    assert set(result["tasks"]) == {"task1", "task2", "task3"}
    assert result["tasks"]["task1"] == first["tasks"]["task1"]
    n_train = len(pd.read_csv(out / "manifests" / "task1_train.csv")) + len(pd.read_csv(out / "manifests" / "task23_train.csv"))
    assert len(pd.read_csv(out / "manifests" / "task3_extra.csv")) == n_extra
    info = json.loads((out / "models" / "ela-logreg" / "task3" / "config.json").read_text())["info"]
    assert info["n_train"] == n_train + n_extra
    assert info["n_valid"] == len(pd.read_csv(out / "manifests" / "task23_valid.csv"))
    # The report names every training set with its size.
    assert f"{extra_root.name}/development ({n_extra})" in result["tasks"]["task3"]["train"]
    assert f"{extra_root.name}/development ({n_extra})" in (out / "report.html").read_text()
    scores = pd.read_csv(out / "scores.csv")
    assert (scores["task"] == "task3").sum() == 32


class _BatchShapedScores:
    """Scores that depend on the batch a file is scored in, as BLAS's last digit does."""

    def predict_proba(self, chunk, on_error="raise"):
        return np.array([int(path[-5]) / 10 + len(chunk) / 1000 for path in chunk["path"]])


def test_a_resumed_run_scores_every_file_in_the_batch_of_an_uninterrupted_one(tmp_path, monkeypatch):
    from dflab.lab import scoring

    monkeypatch.setattr(scoring, "SCORE_CHUNK", 4)
    manifest = pd.DataFrame({"dataset": "d", "path": [f"/data/{i}.png" for i in range(10)],
                             "video": [str(i) for i in range(10)], "label": [i % 2 for i in range(10)]})
    whole = scoring.score_manifest(_BatchShapedScores(), manifest, scores_file=tmp_path / "whole.csv",
                                   task="task1", detector_name="d", split="evaluation")
    # A run stopped after 5 rows: its second chunk (files 4-7) is half written.
    cut = tmp_path / "cut.csv"
    lines = (tmp_path / "whole.csv").read_text().splitlines(keepends=True)
    cut.write_text("".join(lines[:1 + 5]))
    resumed = scoring.score_manifest(_BatchShapedScores(), manifest, scores_file=cut, task="task1",
                                     detector_name="d", split="evaluation")
    pd.testing.assert_frame_equal(resumed, whole)
    assert cut.read_text() == (tmp_path / "whole.csv").read_text()
