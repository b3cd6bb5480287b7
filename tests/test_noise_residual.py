"""noise-residual: the SRM filters against a naive loop convolution, the co-occurrences and statistics
against direct formulas, a detector that learns a noise difference, save/load, bad files, ../shared."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from dflab.detectors import create, load_detector
from dflab.detectors.handcrafted.noise_residual import (
    MEDIAN_RESIDUAL, SRM_FILTERS, NoiseResidualFeatures, cooccurrence, residual_energy_map,
    residual_statistics, residuals,
)

from .conftest import shared_task1_subsample


def naive_correlation(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """out[y, x] = sum_ij kernel[i, j] * image[y + i - c, x + j - c], borders mirrored without
    repeating the edge pixel (OpenCV's BORDER_REFLECT_101 = NumPy's 'reflect')."""
    c = kernel.shape[0] // 2
    padded = np.pad(image.astype(np.float64), c, mode="reflect")
    out = np.zeros(image.shape, np.float64)
    for y in range(image.shape[0]):
        for x in range(image.shape[1]):
            out[y, x] = np.sum(kernel * padded[y:y + kernel.shape[0], x:x + kernel.shape[1]])
    return out


def test_srm_residuals_match_a_loop_convolution():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (19, 23, 3), dtype=np.uint8)
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float64)
    got = residuals(image)
    for name, kernel in SRM_FILTERS.items():
        np.testing.assert_allclose(got[name], naive_correlation(grey, kernel.astype(np.float64)), atol=1e-3,
                                   err_msg=name)
    # every SRM kernel is a predictor residual: it sums to 0, so a flat image has no residual
    flat = residuals(np.full((9, 9, 3), 77, np.uint8))
    assert all(np.abs(r).max() < 1e-4 for r in flat.values())


def test_median_residual_is_the_image_minus_its_median():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (12, 15, 3), dtype=np.uint8)
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float64)
    padded = np.pad(grey, 1, mode="edge")  # OpenCV's medianBlur replicates the border
    median = np.array([[np.median(padded[y:y + 3, x:x + 3]) for x in range(15)] for y in range(12)])
    np.testing.assert_allclose(residuals(image)[MEDIAN_RESIDUAL], grey - median, atol=1e-4)


def test_cooccurrence_counts_adjacent_pairs():
    rng = np.random.default_rng(2)
    q = rng.integers(-2, 3, (7, 9))
    got = cooccurrence(q, 2)
    horizontal = np.zeros((5, 5))
    vertical = np.zeros((5, 5))
    for y in range(7):
        for x in range(9):
            if x + 1 < 9:
                horizontal[q[y, x] + 2, q[y, x + 1] + 2] += 1
            if y + 1 < 7:
                vertical[q[y, x] + 2, q[y + 1, x] + 2] += 1
    np.testing.assert_allclose(got, np.r_[horizontal.ravel() / horizontal.sum(), vertical.ravel() / vertical.sum()])


def test_statistics_match_scipy():
    r = np.random.default_rng(3).laplace(0, 2, (40, 30))
    got = residual_statistics(r)
    np.testing.assert_allclose(got, [np.log(r.std() + 1e-3), np.log(np.abs(r).mean() + 1e-3),
                                     np.log(stats.kurtosis(r.ravel(), fisher=False))], rtol=1e-9)
    assert residual_statistics(np.zeros((5, 5)))[2] == 0.0


def noisy_faces(n: int, seed: int):
    """Real: a smooth gradient with sensor-like noise everywhere. Fake: the same, with a central
    'pasted face' whose noise was smoothed away (as a rendered, resampled face loses it)."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    base = np.add.outer(np.linspace(60, 180, 40), np.linspace(0, 40, 40))
    for i in range(n):
        image = base[:, :, None] + rng.normal(0, 4, (40, 40, 3))
        if i % 2:
            image[8:32, 8:32] = cv2.GaussianBlur(image[8:32, 8:32].astype(np.float32), (5, 5), 1.5)
        images.append(np.clip(image, 0, 255).astype(np.uint8))
        labels.append(i % 2)
    return images, np.array(labels)


def test_detector_learns_missing_noise_and_round_trips(tmp_path):
    train, y_train = noisy_faces(40, 0)
    test, y_test = noisy_faces(20, 1)
    detector = create("noise-residual", workers=1, cache_dir=None).fit((train, y_train))
    scores = detector.predict_proba(test)
    assert roc_auc_score(y_test, scores) > 0.95
    detector.save(tmp_path / "model")
    loaded = load_detector(tmp_path / "model", workers=1)
    np.testing.assert_array_equal(loaded.predict_proba(test), scores)
    # same seed, same data: the same model
    again = create("noise-residual", workers=1, cache_dir=None).fit((train, y_train))
    np.testing.assert_array_equal(again.predict_proba(test), scores)


def test_bad_files_score_nan(tmp_path):
    train, y_train = noisy_faces(20, 0)
    detector = create("noise-residual-gb", workers=1, cache_dir=None).fit((train, y_train))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    good = tmp_path / "good.png"
    cv2.imwrite(str(good), train[0])
    scores = detector.predict_proba([str(broken), str(good), str(tmp_path / "missing.png")], on_error="nan")
    assert np.isnan(scores[0]) and np.isfinite(scores[1]) and np.isnan(scores[2])
    with pytest.raises(ValueError, match="broken.png"):
        detector.predict_proba([str(broken)])


def test_explain_is_the_local_residual_energy():
    image, _ = noisy_faces(2, 4)
    fake = image[1]
    heatmap = create("noise-residual").explain(fake)
    assert heatmap.shape == fake.shape[:2] and heatmap.min() >= 0 and heatmap.max() == pytest.approx(1.0)
    # the smoothed (pasted) centre has less residual energy than the noisy frame around it
    assert heatmap[14:26, 14:26].mean() < heatmap[:6, :].mean()
    np.testing.assert_array_equal(residual_energy_map(fake), heatmap)


@pytest.mark.slow
def test_features_on_real_faces():
    train, test = shared_task1_subsample(train_frames=1, test_frames=1)
    extractor = NoiseResidualFeatures()
    rows = [extractor(cv2.imread(str(p))[:, :, ::-1].copy()) for p in train["path"][:6]]
    assert all(r.shape == (extractor.n_features,) and np.isfinite(r).all() for r in rows)
    detector = create("noise-residual", workers=1, cache_dir=None).fit(train)
    scores = detector.predict_proba(test)
    assert np.isfinite(scores).all() and roc_auc_score(test["label"], scores) > 0.5
