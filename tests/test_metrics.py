"""Tests for dflab.metrics: ROC/AUC against scikit-learn, EER against a brute-force reference,
error rates, video aggregation, group bootstrap against a slow reference loop, JSON reports."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from dflab import metrics
from dflab.metrics.bootstrap import _weighted_auc_eer
from dflab.metrics.core import MetricsError


def _random_case(rng: np.random.Generator, *, ties: bool) -> tuple[np.ndarray, np.ndarray]:
    """Random labels (both classes present) and overlapping P(fake)-like scores."""
    n = int(rng.integers(4, 120))
    labels = rng.integers(0, 2, size=n)
    labels[0], labels[1] = 0, 1
    separation = rng.uniform(-0.3, 0.6)
    scores = np.clip(rng.normal(0.5 + separation * (labels - 0.5), 0.25), 0.0, 1.0)
    if ties:
        scores = np.round(scores, 1)
    return labels, scores


def _brute_force_min_max_error(labels: np.ndarray, scores: np.ndarray) -> float:
    """min over all thresholds (every score and one above all) of max(FPR, FNR), rule score >= t."""
    real, fake = scores[labels == 0], scores[labels == 1]
    candidates = np.r_[np.unique(scores), scores.max() + 1.0]
    best = math.inf
    for threshold in candidates:
        fpr = np.mean(real >= threshold)
        fnr = np.mean(fake < threshold)
        best = min(best, max(fpr, fnr))
    return best


# --------------------------------------------------------------------------- ROC / AUC


@pytest.mark.parametrize("ties", [False, True])
def test_roc_curve_and_auc_match_sklearn(ties: bool) -> None:
    rng = np.random.default_rng(11 + ties)
    for _ in range(30):
        labels, scores = _random_case(rng, ties=ties)
        fpr, tpr, thresholds = metrics.roc_curve(labels, scores)
        ref_fpr, ref_tpr, ref_thresholds = sk_roc_curve(labels, scores, drop_intermediate=False)
        np.testing.assert_array_equal(fpr, ref_fpr)
        np.testing.assert_array_equal(tpr, ref_tpr)
        np.testing.assert_array_equal(thresholds, ref_thresholds)
        assert metrics.roc_auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_roc_auc_ties_count_half() -> None:
    # one real and one fake with the same score: the only pair is a tie -> 0.5
    assert metrics.roc_auc([0, 1], [0.3, 0.3]) == 0.5
    # pairs (real, fake): (0.2,0.2) tie, (0.2,0.9) win, (0.5,0.2) loss, (0.5,0.9) win -> 2.5/4
    assert metrics.roc_auc([0, 0, 1, 1], [0.2, 0.5, 0.2, 0.9]) == pytest.approx(0.625)


# --------------------------------------------------------------------------- EER


def test_eer_matches_brute_force_without_ties() -> None:
    rng = np.random.default_rng(5)
    for _ in range(60):
        labels, scores = _random_case(rng, ties=False)
        rate, threshold = metrics.eer(labels, scores)
        step = 1.0 / min(np.sum(labels == 0), np.sum(labels == 1))
        reference = _brute_force_min_max_error(labels, scores)
        # Interpolated crossing lies on the ROC segment between the two points bracketing it,
        # so it is never above the best achievable max(FPR, FNR) and at most one step below.
        assert rate <= reference + 1e-12
        assert reference - rate <= step + 1e-12
        # At the interpolated threshold the realised FPR (bpcer) and FNR (apcer) differ by at
        # most one ROC step, and the EER lies between them (within that step).
        rates = metrics.error_rates_at(labels, scores, threshold)
        assert abs(rates["apcer"] - rates["bpcer"]) <= step + 1e-12
        assert min(rates["apcer"], rates["bpcer"]) - step - 1e-12 <= rate
        assert rate <= max(rates["apcer"], rates["bpcer"]) + step + 1e-12
        assert np.isfinite(threshold)


def test_eer_interpolates_the_crossing_not_the_nearest_point() -> None:
    # reals 0.1, 0.2, 0.3, 0.7 ; fakes 0.4, 0.8.
    # ROC points (fpr, fnr): (0,1) (0,.5)@0.8 (.25,.5)@0.7 (.25,0)@0.4 ...
    # FNR-FPR: 0.25 at (0.25,0.5) and -0.25 at (0.25,0) -> crossing halfway: EER = 0.25,
    # threshold halfway between 0.7 and 0.4.
    labels = [0, 0, 0, 0, 1, 1]
    scores = [0.1, 0.2, 0.3, 0.7, 0.4, 0.8]
    rate, threshold = metrics.eer(labels, scores)
    assert rate == pytest.approx(0.25)
    assert threshold == pytest.approx(0.55)
    # a segment with both FPR and FNR changing: reals 0.1,0.5 ; fakes 0.5,0.9
    # points (fpr,fnr): (0,1) (0,.5)@.9 (.5,0)@.5 -> diff .5 then -.5 -> EER .25, thr .7
    rate, threshold = metrics.eer([0, 0, 1, 1], [0.1, 0.5, 0.5, 0.9])
    assert rate == pytest.approx(0.25)
    assert threshold == pytest.approx(0.7)


def test_eer_perfect_separation_gives_zero_and_a_separating_threshold() -> None:
    rng = np.random.default_rng(3)
    real = rng.uniform(0.0, 0.4, size=30)
    fake = rng.uniform(0.6, 1.0, size=20)
    labels = np.r_[np.zeros(30, int), np.ones(20, int)]
    scores = np.r_[real, fake]
    rate, threshold = metrics.eer(labels, scores)
    assert rate == 0.0
    assert real.max() < threshold <= fake.min()
    assert threshold == pytest.approx((real.max() + fake.min()) / 2)
    rates = metrics.error_rates_at(labels, scores, threshold)
    assert rates == {"accuracy": 1.0, "apcer": 0.0, "bpcer": 0.0, "threshold": threshold}


def test_eer_all_equal_scores_is_one_half() -> None:
    rate, threshold = metrics.eer([0, 1, 0, 1, 1], [0.7] * 5)
    assert rate == 0.5
    assert np.isfinite(threshold)
    assert metrics.roc_auc([0, 1, 0, 1, 1], [0.7] * 5) == 0.5


def test_eer_inverted_scores() -> None:
    labels = np.r_[np.zeros(10, int), np.ones(10, int)]
    scores = np.r_[np.linspace(0.6, 1.0, 10), np.linspace(0.0, 0.4, 10)]  # fakes scored lower
    assert metrics.roc_auc(labels, scores) == 0.0
    rate, _ = metrics.eer(labels, scores)
    assert rate == pytest.approx(1.0)


def test_choose_threshold_is_the_eer_threshold() -> None:
    rng = np.random.default_rng(8)
    labels, scores = _random_case(rng, ties=False)
    assert metrics.choose_threshold(labels, scores) == metrics.eer(labels, scores)[1]


# --------------------------------------------------------------------------- error rates


def test_error_rates_at_hand_computed() -> None:
    labels = [0, 0, 0, 1, 1, 1]
    scores = [0.1, 0.4, 0.6, 0.3, 0.6, 0.9]
    # threshold 0.6, fake if score >= 0.6: real 0.6 -> fake (1/3 bpcer); fake 0.3 -> real (1/3 apcer)
    rates = metrics.error_rates_at(labels, scores, 0.6)
    assert rates["bpcer"] == pytest.approx(1 / 3)
    assert rates["apcer"] == pytest.approx(1 / 3)
    assert rates["accuracy"] == pytest.approx(4 / 6)
    assert rates["threshold"] == 0.6
    # threshold 0.35: reals 0.4, 0.6 -> fake; all fakes except 0.3 -> fake
    rates = metrics.error_rates_at(labels, scores, 0.35)
    assert rates["bpcer"] == pytest.approx(2 / 3)
    assert rates["apcer"] == pytest.approx(1 / 3)
    assert rates["accuracy"] == pytest.approx(3 / 6)
    # threshold above everything: every sample real
    rates = metrics.error_rates_at(labels, scores, 2.0)
    assert (rates["apcer"], rates["bpcer"], rates["accuracy"]) == (1.0, 0.0, 0.5)


# --------------------------------------------------------------------------- input errors


@pytest.mark.parametrize(
    ("labels", "scores", "message"),
    [
        ([0] * 12, np.linspace(0, 1, 12), r"need both real and fake samples; got only real \(n=12\)"),
        ([1, 1, 1], [0.1, 0.2, 0.3], r"got only fake \(n=3\)"),
        ([], [], "empty"),
        ([0, 1, 1], [0.1, 0.2], "differ in length"),
        ([0, 1, 1], [0.1, float("nan"), 0.3], "NaN"),
        ([0, 1, 2], [0.1, 0.2, 0.3], "labels must be 0"),
    ],
)
def test_bad_input_raises_metrics_error(labels, scores, message) -> None:
    for function in (metrics.roc_auc, metrics.eer, metrics.roc_curve, metrics.choose_threshold):
        with pytest.raises(MetricsError, match=message):
            function(labels, scores)
    with pytest.raises(MetricsError, match=message):
        metrics.error_rates_at(labels, scores, 0.5)
    with pytest.raises(MetricsError, match=message):
        metrics.evaluate(labels, scores, n_boot=10)


def test_metrics_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        metrics.roc_auc([0, 0], [0.1, 0.2])


# --------------------------------------------------------------------------- aggregation


def _hand_frames() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "video": ["a", "a", "a", "b", "c", "c", "d", "d"],
            "label": [1, 1, 1, 0, 0, 0, 1, 1],
            "score": [0.5, 0.9, np.nan, 0.1, 0.0, 1.0, np.nan, np.nan],
            "frame": [0, 1, 2, 0, 0, 1, 0, 1],  # extra column, must be ignored
        }
    )


def test_aggregate_by_video_mean_prob() -> None:
    videos = metrics.aggregate_by_video(_hand_frames(), method="mean_prob")
    assert list(videos.columns) == ["video", "label", "score", "n_frames"]
    assert videos["video"].tolist() == ["a", "b", "c"]  # d has no valid frame -> dropped
    assert videos["label"].tolist() == [1, 0, 0]
    np.testing.assert_allclose(videos["score"], [0.7, 0.1, 0.5])
    assert videos["n_frames"].tolist() == [2, 1, 2]


def test_aggregate_by_video_mean_logit() -> None:
    videos = metrics.aggregate_by_video(_hand_frames(), method="mean_logit")
    # a: (logit 0.5 + logit 0.9) / 2 = (0 + ln 9) / 2 = ln 3 -> sigmoid = 3/4
    # c: 0 and 1 are clipped to 1e-6 and 1-1e-6, whose logits cancel -> 1/2
    np.testing.assert_allclose(videos["score"], [0.75, 0.1, 0.5], rtol=1e-9)
    assert videos["n_frames"].tolist() == [2, 1, 2]
    assert ((videos["score"] > 0) & (videos["score"] < 1)).all()


def test_aggregate_by_video_confident_is_the_rule_predict_applies() -> None:
    """The lab's video level can measure ``dflab predict --aggregation confident``: the same function."""
    from dflab.metrics import aggregate_frames

    clips = {"fake_clip": [0.9] * 13 + [0.3] * 19, "real_clip": [0.1] * 29 + [0.5] * 3, "mixed": [0.3, 0.6, float("nan")]}
    frames = pd.DataFrame([{"video": video, "label": int(video == "fake_clip"), "score": score}
                           for video, scores in clips.items() for score in scores])
    videos = metrics.aggregate_by_video(frames, method="confident").set_index("video")
    for video, scores in clips.items():
        assert videos.loc[video, "score"] == aggregate_frames(scores, "confident")
    assert videos.loc["fake_clip", "score"] == pytest.approx(0.9)  # the confident frames alone
    assert videos.loc["real_clip", "score"] == pytest.approx(0.1)
    assert videos.loc["mixed", "n_frames"] == 2


def test_aggregate_by_video_rejects_conflicting_labels_and_unknown_method() -> None:
    frames = pd.DataFrame(
        {"video": ["clip_07", "clip_07", "x"], "label": [0, 1, 0], "score": [0.2, 0.3, 0.4]}
    )
    with pytest.raises(MetricsError, match="clip_07"):
        metrics.aggregate_by_video(frames)
    with pytest.raises(MetricsError, match="unknown aggregation 'median'"):
        metrics.aggregate_by_video(_hand_frames(), method="median")
    with pytest.raises(MetricsError, match="lacks column"):
        metrics.aggregate_by_video(_hand_frames().drop(columns="label"))


# --------------------------------------------------------------------------- bootstrap


def test_fast_weighted_auc_eer_matches_exact_metrics() -> None:
    rng = np.random.default_rng(21)
    for _ in range(20):
        labels, scores = _random_case(rng, ties=bool(rng.integers(0, 2)))
        order = np.argsort(-scores, kind="stable")
        sorted_scores = scores[order]
        starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
        # integer weights, some zero, as bootstrap multiplicities would be
        weights = rng.integers(0, 3, size=(3, scores.size)).astype(float)
        weights[0] = 1.0
        auc, rate, valid = _weighted_auc_eer(weights, labels[order] == 1, starts)
        for row in range(3):
            repeated = np.repeat(np.arange(scores.size), weights[row][np.argsort(order)].astype(int))
            present = set(labels[repeated].tolist())
            assert valid[row] == (present == {0, 1})
            if valid[row]:
                assert auc[row] == pytest.approx(roc_auc_score(labels[repeated], scores[repeated]), abs=1e-12)
                assert rate[row] == pytest.approx(metrics.eer(labels[repeated], scores[repeated])[0], abs=1e-12)


def _video_case(rng: np.random.Generator, n_videos: int, frames_per_video: int):
    video_labels = np.arange(n_videos) % 2
    video_means = np.clip(rng.normal(0.45 + 0.15 * video_labels, 0.2), 0.0, 1.0)
    groups = np.repeat([f"v{k:03d}" for k in range(n_videos)], frames_per_video)
    labels = np.repeat(video_labels, frames_per_video)
    scores = np.clip(np.repeat(video_means, frames_per_video) + rng.normal(0, 0.1, labels.size), 0, 1)
    return labels, scores, groups


def _slow_reference_bootstrap(labels, scores, groups, n_boot, seed, alpha=0.05):
    """One resample at a time with scikit-learn, using the documented rng draws."""
    names = np.unique(groups)  # sorted, as documented
    members = [np.flatnonzero(groups == name) for name in names]
    rng = np.random.default_rng(seed)
    drawn = rng.integers(0, len(names), size=(n_boot, len(names)))
    aucs, eers = [], []
    for row in drawn:
        index = np.concatenate([members[g] for g in row])
        if len(np.unique(labels[index])) < 2:
            continue
        aucs.append(roc_auc_score(labels[index], scores[index]))
        eers.append(metrics.eer(labels[index], scores[index])[0])
    q = [100 * alpha / 2, 100 * (1 - alpha / 2)]
    return np.percentile(aucs, q), np.percentile(eers, q)


def test_bootstrap_matches_slow_group_resampling_reference() -> None:
    rng = np.random.default_rng(4)
    labels, scores, groups = _video_case(rng, n_videos=6, frames_per_video=5)
    scores = np.round(scores, 1)  # ties included
    # few groups so that some resamples have one class and must be skipped
    ci = metrics.bootstrap_ci(labels, scores, groups, n_boot=100, seed=9)
    ref_auc, ref_eer = _slow_reference_bootstrap(labels, scores, groups, 100, 9)
    np.testing.assert_allclose(ci["auc"], ref_auc, atol=1e-12)
    np.testing.assert_allclose(ci["eer"], ref_eer, atol=1e-12)


def test_bootstrap_is_deterministic_and_contains_point_estimate() -> None:
    rng = np.random.default_rng(12)
    labels, scores, groups = _video_case(rng, n_videos=60, frames_per_video=8)
    first = metrics.bootstrap_ci(labels, scores, groups, n_boot=300, seed=1)
    again = metrics.bootstrap_ci(labels, scores, groups, n_boot=300, seed=1)
    other = metrics.bootstrap_ci(labels, scores, groups, n_boot=300, seed=2)
    assert first == again
    assert first != other
    auc = metrics.roc_auc(labels, scores)
    rate = metrics.eer(labels, scores)[0]
    assert first["auc"][0] < auc < first["auc"][1]
    assert first["eer"][0] < rate < first["eer"][1]
    assert set(first) == {"auc", "eer"}


def test_bootstrap_resamples_groups_not_frames() -> None:
    rng = np.random.default_rng(30)
    n_videos, per_video = 40, 10
    video_labels = np.arange(n_videos) % 2
    video_scores = np.clip(rng.normal(0.45 + 0.15 * video_labels, 0.2), 0, 1)
    names = np.array([f"v{k:03d}" for k in range(n_videos)])
    # every frame of a video has the video's score: frames carry no extra information
    frame_labels = np.repeat(video_labels, per_video)
    frame_scores = np.repeat(video_scores, per_video)
    frame_groups = np.repeat(names, per_video)

    by_video = metrics.bootstrap_ci(frame_labels, frame_scores, frame_groups, n_boot=400, seed=3)
    one_row_per_video = metrics.bootstrap_ci(video_labels, video_scores, None, n_boot=400, seed=3)
    by_frame = metrics.bootstrap_ci(frame_labels, frame_scores, None, n_boot=400, seed=3)
    # resampling videos of identical frames = resampling one row per video (same draws)
    np.testing.assert_allclose(by_video["auc"], one_row_per_video["auc"], atol=1e-12)
    np.testing.assert_allclose(by_video["eer"], one_row_per_video["eer"], atol=1e-12)
    # resampling frames pretends 400 independent samples: a much narrower interval
    for key in ("auc", "eer"):
        frame_width = by_frame[key][1] - by_frame[key][0]
        video_width = by_video[key][1] - by_video[key][0]
        assert frame_width < 0.6 * video_width


def test_bootstrap_rejects_bad_groups() -> None:
    with pytest.raises(MetricsError, match="groups and scores differ in length"):
        metrics.bootstrap_ci([0, 1, 0], [0.1, 0.9, 0.2], ["a", "b"], n_boot=10)


# --------------------------------------------------------------------------- reports


def test_evaluate_keys_and_threshold_fields() -> None:
    rng = np.random.default_rng(17)
    labels, scores, groups = _video_case(rng, n_videos=30, frames_per_video=4)
    result = metrics.evaluate(labels, scores, groups=groups, threshold=0.5, n_boot=200, seed=0)
    assert result["n"] == labels.size
    assert result["n_real"] == int(np.sum(labels == 0))
    assert result["n_fake"] == int(np.sum(labels == 1))
    assert result["auc"] == pytest.approx(roc_auc_score(labels, scores))
    assert (result["eer"], result["eer_threshold"]) == metrics.eer(labels, scores)
    assert isinstance(result["auc_ci"], list) and len(result["auc_ci"]) == 2
    assert result["auc_ci"] == list(metrics.bootstrap_ci(labels, scores, groups, n_boot=200, seed=0)["auc"])
    expected_rates = metrics.error_rates_at(labels, scores, 0.5)
    for key in ("threshold", "accuracy", "apcer", "bpcer"):
        assert result[key] == expected_rates[key]
    without_threshold = metrics.evaluate(labels, scores, n_boot=50)
    assert "apcer" not in without_threshold and "threshold" not in without_threshold


def test_evaluate_levels_is_json_serialisable_and_counts_missing() -> None:
    rng = np.random.default_rng(23)
    labels, scores, groups = _video_case(rng, n_videos=24, frames_per_video=6)
    scores[[0, 7, 20]] = np.nan  # failed frames
    frame = pd.DataFrame({"video": groups, "label": labels, "score": scores, "path": "x.png"})
    frame.loc[frame["video"] == "v005", "score"] = np.nan  # a video with no valid frame

    thresholds = {"frame": 0.5, "video_mean_prob": 0.55, "video_mean_logit": 0.6}
    report = metrics.evaluate_levels(frame, thresholds=thresholds, n_boot=100, seed=0)
    text = json.dumps(report, allow_nan=False)
    assert json.loads(text) == report
    assert set(report) == {"frame", "video_mean_prob", "video_mean_logit"}

    n_nan = int(frame["score"].isna().sum())
    assert report["frame"]["n_missing"] == n_nan
    assert report["frame"]["n"] == len(frame) - n_nan
    assert report["video_mean_prob"]["n_missing"] == 1
    assert report["video_mean_prob"]["n"] == 23
    for level, threshold in thresholds.items():
        assert report[level]["threshold"] == threshold

    valid = frame.dropna(subset=["score"])
    assert report["frame"]["auc"] == pytest.approx(roc_auc_score(valid["label"], valid["score"]))
    # frame level bootstraps videos: same CI as bootstrap_ci grouped by video
    expected = metrics.bootstrap_ci(valid["label"], valid["score"], valid["video"], n_boot=100, seed=0)
    assert report["frame"]["auc_ci"] == list(expected["auc"])
    videos = metrics.aggregate_by_video(frame, method="mean_logit")
    assert report["video_mean_logit"]["auc"] == pytest.approx(roc_auc_score(videos["label"], videos["score"]))

    with pytest.raises(MetricsError, match="unknown level"):
        metrics.evaluate_levels(frame, thresholds={"video": 0.5}, n_boot=10)
