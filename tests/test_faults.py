"""Faults: `dflab lab` killed with -9 at random moments resumes to the same results as an
uninterrupted run, and two runs on one output folder are refused (a killed run leaves no stuck lock)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dflab.data.synthetic.demo_lab import make_lab

DFLAB = Path(sys.executable).with_name("dflab")


@pytest.fixture(scope="module")
def lab_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults-lab")
    make_lab(root, n_videos_dev=10, n_videos_eval=6, frames_per_video=4, size=96, n_t23_dev=30, n_t23_eval=20, seed=8)
    return root


def _command(root: Path, out: Path) -> list[str]:
    return [str(DFLAB), "lab", "--task1", str(root / "Task_1"), "--task23", str(root / "Task_2_3"),
            "--detector", "ela-logreg", "--detector", "block-dct", "--n-boot", "50", "--workers", "1",
            "--out", str(out), "--quiet"]


def _env(cache: Path) -> dict:
    return {**os.environ, "DFLAB_CACHE": str(cache), "OMP_NUM_THREADS": "1"}


def _results(out: Path):
    scores = pd.read_csv(out / "scores.csv").sort_values(["task", "detector", "path"]).reset_index(drop=True)
    tasks = json.loads((out / "metrics.json").read_text())["tasks"]
    return scores, tasks


@pytest.mark.slow
def test_kill_9_at_random_moments_then_resume_gives_the_same_results(lab_root, tmp_path):
    reference_out = tmp_path / "reference"
    started = time.perf_counter()
    subprocess.run(_command(lab_root, reference_out), check=True, env=_env(tmp_path / "cache-ref"),
                   capture_output=True)
    full_time = time.perf_counter() - started
    out, cache = tmp_path / "killed", tmp_path / "cache-killed"
    rng = np.random.default_rng(11)
    kills = 0
    for fraction in sorted(rng.uniform(0.15, 0.95, size=4)):
        process = subprocess.Popen(_command(lab_root, out), env=_env(cache), stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        try:
            process.wait(timeout=fraction * full_time)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.wait()
            kills += 1
    assert kills >= 2  # the run really was interrupted, more than once
    finished = subprocess.run(_command(lab_root, out), env=_env(cache), capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr
    scores, tasks = _results(out)
    reference_scores, reference_tasks = _results(reference_out)
    pd.testing.assert_frame_equal(scores, reference_scores)
    assert tasks == reference_tasks
    assert not list(out.rglob("*.tmp"))


@pytest.mark.slow
def test_a_second_lab_on_the_same_folder_is_refused_and_a_killed_one_leaves_no_lock(lab_root, tmp_path):
    out = tmp_path / "out"
    first = subprocess.Popen(_command(lab_root, out), env=_env(tmp_path / "cache"), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while not (out / ".dflab-lab.lock").exists() or not (out / ".dflab-lab.lock").read_text().strip():
            assert time.time() < deadline and first.poll() is None
            time.sleep(0.1)
        second = subprocess.run(_command(lab_root, out), env=_env(tmp_path / "cache"), capture_output=True,
                                text=True, timeout=120)
        assert second.returncode == 2
        lines = [line for line in second.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and "another dflab lab is running" in lines[0] and str(first.pid) in lines[0]
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    again = subprocess.run(_command(lab_root, out), env=_env(tmp_path / "cache"), capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 0, again.stderr
