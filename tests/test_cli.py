"""The `dflab` command as a user runs it: exit codes, one-line errors, train -> evaluate -> predict."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from dflab.data.synthetic.demo_lab import make_lab


def dflab(*args, cwd=None):
    result = subprocess.run([sys.executable, "-m", "dflab", *map(str, args)], capture_output=True, text=True,
                            cwd=cwd, env={**__import__("os").environ, "COLUMNS": "200"})
    return result


@pytest.fixture(scope="module")
def lab_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli-lab")
    make_lab(root, n_videos_dev=8, n_videos_eval=4, frames_per_video=3, size=96, n_t23_dev=8, n_t23_eval=8, seed=5)
    return root


@pytest.mark.slow
def test_detectors_lists_names_and_descriptions():
    result = dflab("detectors")
    assert result.returncode == 0
    assert "ela-logreg" in result.stdout and "Error Level Analysis" in result.stdout


@pytest.mark.parametrize("args,needle", [
    (["data", "summary", "/no/such/folder"], "/no/such/folder"),
    (["lab", "--task1", "/no/such/folder", "--detector", "ela-logreg"], "/no/such/folder"),
    (["predict", "/no/such.png", "--detector", "ela-logreg"], "/no/such.png"),
])
@pytest.mark.slow
def test_bad_input_exits_2_with_one_line(args, needle):
    result = dflab(*args)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in result.stderr


@pytest.mark.slow
def test_unknown_detector_and_unreadable_layout(lab_root, tmp_path):
    result = dflab("lab", "--task1", lab_root / "Task_1", "--detector", "nope", "--out", tmp_path / "o")
    assert result.returncode == 2 and "unknown detector 'nope'" in result.stderr
    (tmp_path / "weird").mkdir()
    (tmp_path / "weird" / "x.txt").write_text("hi")
    result = dflab("data", "summary", tmp_path / "weird")
    assert result.returncode == 2 and "weird" in result.stderr and "Traceback" not in result.stderr


def test_detector_params_are_parsed_and_checked():
    from dflab.detectors.registry import ParameterError, parse_params

    params = parse_params(["seed=3", "ela-rf.grid=4", "ela-rf.color=true", "block-dct.classifier=logreg"],
                                   ["ela-rf", "block-dct"])
    assert params == {"ela-rf": {"seed": 3, "grid": 4, "color": True},
                      "block-dct": {"seed": 3, "classifier": "logreg"}}
    for bad, needle in [("epochs", "KEY=VALUE"), ("nope.grid=4", "not one of the chosen"),
                        ("ela-rf.epochs=3", "no parameter 'epochs'"), ("epochs=3", "no parameter 'epochs'")]:
        with pytest.raises(ParameterError, match=needle):
            parse_params([bad], ["ela-rf", "block-dct"])


@pytest.mark.slow
def test_data_summary_counts(lab_root):
    result = dflab("data", "summary", lab_root / "Task_1")
    assert result.returncode == 0, result.stderr
    assert "development" in result.stdout and "evaluation" in result.stdout


@pytest.mark.slow
def test_train_evaluate_predict(lab_root, tmp_path):
    model = tmp_path / "model"
    result = dflab("train", lab_root / "Task_1", "--detector", "ela-logreg", "--out", model, "-j", "1", "--quiet",
                   "--param", "grid=4", "--param", "ela-logreg.extra_qualities=[70]")
    assert result.returncode == 0, result.stderr
    params = json.loads((model / "config.json").read_text())["params"]
    assert params["grid"] == 4 and params["extra_qualities"] == [70]

    result = dflab("evaluate", lab_root / "Task_1", "--model", model, "--out", tmp_path / "ev", "--n-boot", "50",
                   "--perturb", "--quiet")
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    entry = metrics["tasks"]["evaluate"]["detectors"]["ela-logreg"]
    assert entry["frame"]["auc"] > 0.6 and "threshold" in entry["frame"]
    robustness = metrics["robustness"]["ela-logreg"]
    assert set(robustness) == {"none", "jpeg90", "jpeg70", "jpeg50", "downscale0.5", "blur", "noise"}
    assert robustness["none"]["auc"] == entry["frame"]["auc"]  # the unperturbed row is the evaluation itself
    assert all(0 <= m["auc"] <= 1 for m in robustness.values())
    html = (tmp_path / "ev" / "report.html").read_text()
    assert "Robustness" in html and (tmp_path / "ev" / "plots" / "robustness.png").exists()

    images = sorted((lab_root / "Task_1" / "evaluation").rglob("*.png"))[:4]
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, image in enumerate(images):
        (folder / f"{i}.png").write_bytes(image.read_bytes())
    (folder / "broken.png").write_bytes(b"nope")
    result = dflab("predict", folder, "--model", model, "--csv", tmp_path / "p.csv", "--json", tmp_path / "p.json",
                   "--quiet")
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(tmp_path / "p.csv")
    assert len(table) == 5 and table["p_fake"].notna().sum() == 4
    assert table.loc[table.path.str.endswith("broken.png"), "verdict"].item() == "error"
    assert "broken.png" in result.stdout
    assert len(json.loads((tmp_path / "p.json").read_text())["results"]) == 5

    result = dflab("predict", folder / "broken.png", "--model", model)
    assert result.returncode == 2 and "broken.png" in result.stderr


@pytest.mark.slow
def test_weights_list_and_fetch_from_a_local_url(tmp_path):
    result = dflab("weights", "list")
    assert result.returncode == 0 and "icpr-efficientnetb4-dfdc" in result.stdout
    fake_weights = tmp_path / "not-the-real-file.pth"
    fake_weights.write_bytes(b"some bytes that do not match the published sha256")
    result = dflab("weights", "fetch", "icpr-efficientnetb4-dfdc", "--url", fake_weights.as_uri(),
                   "--dest", tmp_path / "w")
    assert result.returncode == 2 and "sha256" in result.stderr
    assert not list((tmp_path / "w").glob("*.pth"))  # a file with the wrong hash is not kept


@pytest.mark.slow
def test_faces_extract_and_predict_on_real_videos(tmp_path, monkeypatch):
    from .conftest import require_shared

    clips = require_shared("datasets", "videos", "ffpp_c23")
    require_shared("weights", "mesonet", "Meso4_DF.h5")
    monkeypatch.setenv("DFLAB_WEIGHTS", str(require_shared("weights")))  # where mesonet4-df's file is
    clip = clips / "fake" / "519_515.mp4"
    result = dflab("faces", "extract", clip, "--out", tmp_path / "faces", "--frames", "3", "--size", "128", "--quiet")
    assert result.returncode == 0, result.stderr
    crops = pd.read_csv(tmp_path / "faces" / "faces.csv")
    assert len(crops) == 3 and (crops["video"] == "519_515").all()

    broken = tmp_path / "broken.mp4"
    broken.write_text("this is text, not a video")
    result = dflab("predict", clip, "--detector", "mesonet4-df", "--frames", "3", "--json", tmp_path / "v.json",
                   "--quiet")
    assert result.returncode == 0, result.stderr
    payload = json.loads((tmp_path / "v.json").read_text())
    video = payload["videos"][0]
    assert video["status"] == "ok" and len(video["frame_scores"]) == 3 and video["aggregation"] == "mean_prob"
    assert 0 <= payload["results"][0]["p_fake"] <= 1
    result = dflab("predict", broken, "--detector", "mesonet4-df")
    assert result.returncode == 2 and "broken.mp4" in result.stderr and "Traceback" not in result.stderr
