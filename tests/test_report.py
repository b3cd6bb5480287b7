"""Tests for dflab.report: plots, the self-contained HTML report and the Markdown report.

Scores are drawn at random (fakes ~ Beta(5, 2), reals ~ Beta(2, 5)); the metrics dict is computed here
with scikit-learn so these tests do not depend on dflab.metrics.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.metrics import roc_auc_score, roc_curve

from dflab.report.tables import format_metric
from dflab.report.plots import plot_roc, plot_score_histograms, save_figure, write_plots
from dflab.report import write_report

NASTY_DETECTOR = "<b>x</b>"
DETECTORS = ("texture_svm", NASTY_DETECTOR)
TASKS = ("task1", "task2")


def make_scores(rng: np.random.Generator, tasks=TASKS, detectors=DETECTORS, n_videos=8, frames=5) -> pd.DataFrame:
    """Frames of real and fake videos with random P(fake); a few scores are NaN (failed files)."""
    rows = []
    for task in tasks:
        for detector in detectors:
            for label in (0, 1):
                for v in range(n_videos):
                    video = f"{task}_{'fake' if label else 'real'}_{v:03d}"
                    # A per-video offset makes frames of one video alike, as in real data.
                    draws = rng.beta(5, 2, frames) if label else rng.beta(2, 5, frames)
                    for f, score in enumerate(draws):
                        rows.append({
                            "task": task, "detector": detector, "path": f"/data/{video}/{f:03d}.png",
                            "video": video, "label": label, "score": float(score), "dataset": "synthetic",
                        })
    scores = pd.DataFrame(rows)
    failed = rng.choice(len(scores), size=3, replace=False)
    scores.loc[failed, "score"] = np.nan
    return scores


def level_metrics(labels: np.ndarray, values: np.ndarray, n_missing: int, with_threshold: bool) -> dict:
    """AUC from sklearn; EER and its threshold from the ROC point where FPR and FNR are closest."""
    fpr, tpr, thresholds = roc_curve(labels, values)
    i = int(np.argmin(np.abs(fpr - (1 - tpr))))
    eer = float((fpr[i] + 1 - tpr[i]) / 2)
    auc = float(roc_auc_score(labels, values))
    result = {
        "n": int(labels.size), "n_real": int((labels == 0).sum()), "n_fake": int((labels == 1).sum()),
        "n_missing": n_missing, "auc": auc, "auc_ci": [max(0.0, auc - 0.05), min(1.0, auc + 0.03)],
        "eer": eer, "eer_ci": [max(0.0, eer - 0.04), min(1.0, eer + 0.06)],
        "eer_threshold": float(min(thresholds[i], 1.0)),
    }
    if with_threshold:
        threshold = 0.5
        predicted_fake = values >= threshold
        result.update({
            "threshold": threshold,
            "accuracy": float(np.mean(predicted_fake == (labels == 1))),
            "apcer": float(np.mean(~predicted_fake[labels == 1])),
            "bpcer": float(np.mean(predicted_fake[labels == 0])),
        })
    return result


def make_metrics(scores: pd.DataFrame, synthetic: bool, skipped=None, failed=None) -> dict:
    tasks = {}
    for task, task_rows in scores.groupby("task"):
        detectors = {}
        for detector, rows in task_rows.groupby("detector"):
            finite = rows[np.isfinite(rows["score"])]
            labels, values = finite["label"].to_numpy(), finite["score"].to_numpy()
            missing = int(len(rows) - len(finite))
            videos = finite.groupby("video").agg(label=("label", "first"), score=("score", "mean"))
            logits = finite.assign(logit=np.log(finite["score"] / (1 - finite["score"])))
            video_logits = logits.groupby("video").agg(label=("label", "first"), logit=("logit", "mean"))
            detectors[detector] = {
                "frame": level_metrics(labels, values, missing, with_threshold=True),
                "video_mean_prob": level_metrics(videos["label"].to_numpy(), videos["score"].to_numpy(), 0, False),
                "video_mean_logit": level_metrics(
                    video_logits["label"].to_numpy(), video_logits["logit"].to_numpy(), 0, False
                ),
            }
        tasks[task] = {"title": f"{task} title", "train": f"{task} development set",
                       "eval": f"{task} evaluation set", "detectors": detectors}
    for task, name, message in failed or []:
        tasks[task]["detectors"][name] = {"error": message}
    return {
        "meta": {"title": "Test lab", "created": "2024-05-01T12:00:00", "dflab_version": "0.1.0",
                 "synthetic": synthetic, "command": "dflab lab --out <dir>", "task1_root": "/data/t1",
                 "task23_root": "/data/t23", "seed": 7, "n_boot": 100},
        "tasks": tasks,
        "skipped": list(skipped or []),
    }


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """One full report with two tasks, two detectors, a failed detector and skipped files."""
    rng = np.random.default_rng(1234)
    scores = make_scores(rng)
    skipped = [
        {"path": "/data/task1_real_009/000.png", "reason": "cannot decode PNG: truncated file", "stage": "load"},
        {"path": "/data/t2/broken.jpg", "reason": "no face found", "stage": "crop"},
    ]
    metrics = make_metrics(scores, synthetic=True, skipped=skipped,
                           failed=[("task2", "cnn_broken", "CUDA out of memory & <crash>")])
    out = tmp_path_factory.mktemp("report")
    paths = write_report(out, scores, metrics)
    return {"out": out, "paths": paths, "scores": scores, "metrics": metrics,
            "html": paths["html"].read_text(encoding="utf-8"),
            "md": paths["markdown"].read_text(encoding="utf-8")}


def test_format_metric_values_intervals_and_missing():
    assert format_metric(0.91234, [0.8712, 0.9481]) == "0.912 [0.871, 0.948]"
    assert format_metric(0.5) == "0.500"
    assert format_metric(0.12345, digits=2) == "0.12"
    assert format_metric(float("nan")) == "—"
    assert format_metric(None, [0.1, 0.2]) == "—"
    # An interval with a missing bound is left out rather than printed half-empty.
    assert format_metric(0.7, [None, 0.8]) == "0.700"
    assert format_metric(0.7, [float("nan"), 0.8]) == "0.700"


@pytest.mark.slow
def test_report_files_exist_and_html_is_self_contained(rendered):
    html_text = rendered["html"]
    assert rendered["paths"]["html"].is_file() and rendered["paths"]["markdown"].is_file()
    assert 'src="http' not in html_text and "src='http" not in html_text
    assert not re.search(r"""(href|src)\s*=\s*["']?(https?:)?//""", html_text)
    assert "<script" not in html_text.lower() and "<link" not in html_text.lower()
    assert "@import" not in html_text
    # Two tasks x (2 ROC charts + 2 histograms) embedded as base64 PNG.
    assert html_text.count('src="data:image/png;base64,') == 8
    assert "<svg" in html_text or "base64," in html_text


def test_html_lists_detectors_metrics_and_skipped(rendered):
    html_text, metrics = rendered["html"], rendered["metrics"]
    assert "texture_svm" in html_text
    for task in TASKS:
        assert f"{task} title" in html_text
        for detector in DETECTORS:
            frame = metrics["tasks"][task]["detectors"][detector]["frame"]
            video = metrics["tasks"][task]["detectors"][detector]["video_mean_logit"]
            assert format_metric(frame["auc"], frame["auc_ci"]) in html_text
            assert format_metric(frame["eer"], frame["eer_ci"]) in html_text
            assert format_metric(video["auc"], video["auc_ci"]) in html_text
            assert format_metric(frame["apcer"]) in html_text
    assert "/data/t2/broken.jpg" in html_text and "no face found" in html_text
    assert "cannot decode PNG: truncated file" in html_text
    # The failed detector is shown with its (escaped) error message.
    assert "cnn_broken" in html_text and "CUDA out of memory &amp; &lt;crash&gt;" in html_text
    for term in ("AUC", "EER threshold", "APCER", "BPCER", "Bootstrap CI over videos"):
        assert term in html_text
    assert "Task 2" in html_text and "database 2" in html_text


def test_html_escapes_detector_names(rendered):
    html_text = rendered["html"]
    assert "&lt;b&gt;x&lt;/b&gt;" in html_text
    assert "<b>x</b>" not in html_text
    assert "<crash>" not in html_text
    assert "dflab lab --out &lt;dir&gt;" in html_text


def test_markdown_has_tables_and_relative_images(rendered):
    md, metrics, out = rendered["md"], rendered["metrics"], rendered["out"]
    assert "| Detector | Samples | AUC [95% CI] |" in md
    frame = metrics["tasks"]["task1"]["detectors"]["texture_svm"]["frame"]
    assert f"| texture_svm | {frame['n']} ({frame['n_real']} real / {frame['n_fake']} fake)" in md
    assert format_metric(frame["auc"], frame["auc_ci"]) in md
    assert "&lt;b&gt;x&lt;/b&gt;" in md
    images = re.findall(r"!\[[^\]]*\]\(<([^>]+)>\)", md)
    assert len(images) == 8
    for relative in images:
        assert relative.startswith("plots/") and relative.endswith(".png")
        assert (out / relative).is_file()
    assert "no face found" in md and "Synthetic data" in md


def test_plot_files_exist_and_pngs_open(rendered):
    plots_dir = rendered["paths"]["plots_dir"]
    for task in TASKS:
        for stem in (f"roc_{task}", f"roc_{task}_video", f"hist_{task}_texture_svm", f"hist_{task}_b_x_b"):
            png, svg = plots_dir / f"{stem}.png", plots_dir / f"{stem}.svg"
            assert png.is_file() and svg.is_file(), stem
            with Image.open(png) as image:
                image.verify()
            with Image.open(png) as image:
                assert image.format == "PNG" and image.width > 300 and image.height > 200
            assert "<svg" in svg.read_text(encoding="utf-8")[:2000]


def test_synthetic_notice_only_when_synthetic(rendered, tmp_path):
    assert "Synthetic data — numbers say nothing about real deepfakes" in rendered["html"]
    assert "synthetic-warning" in rendered["html"]
    rng = np.random.default_rng(5)
    scores = make_scores(rng, tasks=("task1",), detectors=("texture_svm",), n_videos=4, frames=2)
    paths = write_report(tmp_path, scores, make_metrics(scores, synthetic=False))
    html_text = paths["html"].read_text(encoding="utf-8")
    md = paths["markdown"].read_text(encoding="utf-8")
    assert "numbers say nothing about real deepfakes" not in html_text
    assert 'class="synthetic-warning"' not in html_text
    assert "numbers say nothing about real deepfakes" not in md
    assert "<p>none</p>" in html_text  # no skipped files


def test_one_class_task_does_not_crash(tmp_path):
    rng = np.random.default_rng(9)
    scores = make_scores(rng, tasks=("task1", "task3"), detectors=("texture_svm",), n_videos=4, frames=3)
    # Task 3 keeps only fakes: no ROC can be drawn there, but the histogram and the rest of the report can.
    scores = scores[~((scores["task"] == "task3") & (scores["label"] == 0))].reset_index(drop=True)
    metrics = make_metrics(scores[scores["task"] == "task1"], synthetic=True)
    metrics["tasks"]["task3"] = {
        "title": "Task 3 — improved", "train": "dev", "eval": "eval",
        "detectors": {"texture_svm": {"frame": {"n": 12, "n_real": 0, "n_fake": 12, "n_missing": 0,
                                                "auc": None, "auc_ci": [None, None], "eer": float("nan"),
                                                "eer_ci": [None, None], "eer_threshold": None}}},
    }
    paths = write_report(tmp_path, scores, metrics)
    plots_dir = paths["plots_dir"]
    assert (plots_dir / "roc_task1.png").is_file()
    assert not (plots_dir / "roc_task3.png").exists()
    assert not (plots_dir / "roc_task3_video.png").exists()
    assert (plots_dir / "hist_task3_texture_svm.png").is_file()
    html_text = paths["html"].read_text(encoding="utf-8")
    assert "Task 3 — improved" in html_text
    assert "only one class (fake)" in html_text
    assert "12 (0 real / 12 fake)" in html_text


def test_write_plots_skips_detector_without_finite_scores(tmp_path):
    rng = np.random.default_rng(3)
    scores = make_scores(rng, tasks=("task1",), detectors=("good", "dead"), n_videos=4, frames=2)
    scores.loc[scores["detector"] == "dead", "score"] = np.nan
    written = write_plots(scores, {"tasks": {}}, tmp_path)
    record = written["task1"]
    assert set(record["hist"]) == {"good"}
    assert [p.suffix for p in record["roc"]] == [".png", ".svg"]
    assert any("dead" in note and "no finite scores" in note for note in record["notes"])


def test_write_plots_rejects_bad_labels(tmp_path):
    rng = np.random.default_rng(4)
    scores = make_scores(rng, tasks=("task1",), detectors=("good",), n_videos=2, frames=2)
    scores.loc[0, "label"] = 2
    with pytest.raises(ValueError, match="label"):
        write_plots(scores, {}, tmp_path)
    with pytest.raises(ValueError, match="score"):
        write_plots(scores.drop(columns="score"), {}, tmp_path)


def test_plot_functions_return_figures_that_save(tmp_path):
    rng = np.random.default_rng(2)
    labels = np.repeat([0, 1], 50)
    values = np.concatenate([rng.beta(2, 5, 50), rng.beta(5, 2, 50)])
    fpr, tpr, _ = roc_curve(labels, values)
    auc = roc_auc_score(labels, values)
    fig = plot_roc({"a": (fpr, tpr, auc)}, "ROC test")
    legend_texts = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert f"a (AUC {auc:.3f})" in legend_texts
    assert any("EER" in t for t in legend_texts) and "chance" in legend_texts
    paths = save_figure(fig, tmp_path / "sub" / "roc")
    assert [p.name for p in paths] == ["roc.png", "roc.svg"] and all(p.stat().st_size > 0 for p in paths)

    df = pd.DataFrame({"label": labels, "score": values})
    hist = plot_score_histograms(df, "hist test", threshold=0.42)
    ax = hist.axes[0]
    legend_texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "real (n=50)" in legend_texts and "fake (n=50)" in legend_texts
    assert any("0.420" in t for t in legend_texts)
    assert ax.get_xlim() == (0.0, 1.0)
    # Density histograms, one filled outline per class: the peak matches numpy's density for that class.
    assert len(ax.patches) == 2
    edges = np.linspace(0, 1, 41)
    expected_peaks = [np.histogram(values[labels == c], bins=edges, density=True)[0].max() for c in (0, 1)]
    drawn_peaks = [patch.get_path().vertices[:, 1].max() for patch in ax.patches]
    assert np.allclose(drawn_peaks, expected_peaks)


def test_video_with_both_labels_is_rejected(tmp_path):
    rng = np.random.default_rng(6)
    scores = make_scores(rng, tasks=("task1",), detectors=("good",), n_videos=2, frames=2)
    scores["score"] = scores["score"].fillna(0.5)
    first_fake = scores.index[scores["label"] == 1][0]
    scores.loc[first_fake, "video"] = scores.loc[0, "video"]  # a "fake" frame inside a real video
    with pytest.raises(ValueError, match=r"video 'task1_real_000' has frames labelled both real and fake"):
        write_plots(scores, {}, tmp_path)


def test_pair_accuracy_column_only_when_a_detector_reports_it():
    from dflab.report.tables import frame_table

    frame = {"n": 10, "n_real": 5, "n_fake": 5, "auc": 0.9, "auc_ci": [0.8, 1.0], "eer": 0.1, "eer_ci": [0, 0.2],
             "eer_threshold": 0.5}
    header, rows = frame_table({"detectors": {"ela-logreg": {"frame": frame}}})
    assert "Pair accuracy (validation)" not in header
    header, rows = frame_table({"detectors": {"siamese": {"frame": frame, "pair_accuracy": 0.8125},
                                               "ela-logreg": {"frame": frame}}})
    assert header[-1] == "Pair accuracy (validation)"
    assert rows[0][-1] == "0.812" and rows[1][-1] == "—"


@pytest.mark.slow
def test_calibration_table_and_detector_figures_are_reported(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(7)
    scores = make_scores(rng, tasks=("task1",), detectors=("siamese", "ela-logreg"))
    metrics = make_metrics(scores, synthetic=False)
    entry = metrics["tasks"]["task1"]["detectors"]["ela-logreg"]
    entry["calibration"] = {"raw": {"brier": 0.2345, "ece": 0.1234}, "platt": {"brier": 0.18, "ece": 0.031}}
    (tmp_path / "plots").mkdir()
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "plots" / "sbi.png")
    entry["figures"] = [{"path": "plots/sbi.png", "caption": "self-blended training examples"}]
    write_report(tmp_path, scores, metrics)
    html = (tmp_path / "report.html").read_text()
    assert "Calibration" in html and "ECE (Platt)" in html and "0.123" in html and "0.031" in html
    assert "Training examples" in html and "self-blended training examples" in html
    markdown = (tmp_path / "report.md").read_text()
    assert "| ela-logreg |" in markdown.split("### Calibration")[1] and "(<plots/sbi.png>)" in markdown
    # A detector without calibration numbers gets no calibration row.
    assert "| siamese |" not in markdown.split("### Calibration")[1].split("##")[0]
