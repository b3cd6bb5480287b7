"""ELA detectors: the features against slow reference code, JPEG colour handling, every registered
classifier on generated data, a save/load round trip and a subsampled ../shared run."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.metrics import roc_auc_score

from dflab.detectors import create, load_detector
from dflab.detectors.handcrafted.ela import ELAFeatures, map_statistics
from dflab.media.ela import ELA_ENCODER, ela_image, ela_map
from dflab.media.images import jpeg_round_trip

from .conftest import shared_task1_subsample


def reference_ela_features(image, qualities, grid, color):
    parts = []
    for quality in qualities:
        if color:
            error = np.abs(image.astype(int) - jpeg_round_trip(image, quality, encoder=ELA_ENCODER).astype(int)).mean(axis=2)
            error = np.floor(error + 0.5)  # round half up like OpenCV's saturate_cast of the mean
        else:
            gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
            error = np.abs(gray.astype(int) - jpeg_round_trip(gray, quality, encoder=ELA_ENCODER).astype(int))
        height, width = error.shape
        cells = [error[r * height // grid:(r + 1) * height // grid, c * width // grid:(c + 1) * width // grid].mean()
                 for r in range(grid) for c in range(grid)]
        flat = error.ravel()
        stats = [flat.mean(), flat.std(), *np.percentile(flat, (50, 90, 99), method="inverted_cdf"), flat.max()]
        parts += cells + stats
    return np.log1p(np.array(parts))


@pytest.mark.parametrize("color", [False, True])
def test_features_match_reference(color):
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)
    image[16:48, 24:72] = rng.normal(150, 5, (32, 48, 3)).clip(0, 255).astype(np.uint8)
    extractor = ELAFeatures(quality=90, grid=8, extra_qualities=(50, 75), color=color)
    got = extractor(image)
    assert got.shape == (extractor.n_features,) == (3 * (64 + 6),) and got.dtype == np.float32
    np.testing.assert_allclose(got, reference_ela_features(image, (90, 50, 75), 8, color), rtol=1e-5, atol=2e-3)


def test_statistics_match_numpy():
    rng = np.random.default_rng(0)
    # ELA-like maps (few levels: read level by level, 99th percentile at 16 and past it at 17 or
    # more) and noise (read from the histogram).
    few_levels = [rng.geometric(0.5, (224, 224)) - 1, rng.integers(0, 17, (224, 224)), rng.integers(0, 18, (224, 224))]
    assert [int(np.percentile(values, 99, method="inverted_cdf")) for values in few_levels[1:]] == [16, 17]
    # Exactly half the pixels at 0: the 50th percentile is 0, on either path.
    halves = [np.repeat([0, 1], 50).reshape(10, 10), np.repeat([0, 200], 50).reshape(10, 10)]
    for values in (*few_levels, *halves, rng.integers(0, 40, (50, 70)), rng.integers(0, 256, (3, 5)),
                   np.zeros((4, 4), int)):
        error = values.astype(np.uint8)
        expected = [error.mean(), error.std(), *np.percentile(error, (50, 90, 99), method="inverted_cdf"),
                    error.max()]
        np.testing.assert_allclose(map_statistics(error), expected, rtol=1e-12, atol=1e-12)


def test_jpeg_roundtrip_keeps_colours_and_matches_pillow():
    red = np.zeros((32, 32, 3), np.uint8)
    red[..., 0] = 230
    back = jpeg_round_trip(red, 90, encoder=ELA_ENCODER)
    assert back[..., 0].mean() > 200 and back[..., 2].mean() < 30  # RGB order survives OpenCV's BGR
    image = np.random.default_rng(1).integers(0, 256, (48, 48, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=90)
    pillow = np.asarray(Image.open(buffer).convert("RGB")).astype(int)
    # Both are libjpeg with 4:2:0 chroma; only rounding inside the codecs may differ.
    assert np.abs(jpeg_round_trip(image, 90, encoder=ELA_ENCODER).astype(int) - pillow).mean() < 1.0
    assert ela_image(image, 90).shape == (48, 48, 3)
    with pytest.raises(ValueError, match="quality"):
        jpeg_round_trip(image, 101, encoder=ELA_ENCODER)


def test_odd_inputs_give_finite_features():
    extractor = ELAFeatures()
    for image in (np.zeros((1, 1, 3), np.uint8), np.full((20, 13, 3), 200, np.uint8),
                  np.random.default_rng(0).integers(0, 256, (30, 30), dtype=np.uint8)[:, :, None].repeat(3, 2)):
        features = extractor(image)
        assert features.shape == (extractor.n_features,) and np.isfinite(features).all()
    assert ela_map(np.full((16, 16, 3), 77, np.uint8)).max() <= 1  # flat images barely change


def _image(rng: np.random.Generator, fake: bool, size: int = 64) -> np.ndarray:
    """Camera-like noise; a 'fake' carries a pasted region that was JPEG-compressed harder."""
    image = rng.normal(128, 20, (size, size, 3)).clip(0, 255).astype(np.uint8)
    if fake:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=40)
        pasted = np.asarray(Image.open(buffer))
        image[16:48, 16:48] = pasted[16:48, 16:48]
    return image


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ela_images")
    rng = np.random.default_rng(7)
    rows = []
    for i in range(100):
        path = folder / f"{i:03d}.png"
        Image.fromarray(_image(rng, fake=i % 2 == 1)).save(path)
        rows.append({"path": str(path), "label": i % 2, "video": f"v{i}"})
    frame = pd.DataFrame(rows)
    # Enough training images for histogram gradient boosting's 20-sample leaves to split.
    return frame.iloc[:64].reset_index(drop=True), frame.iloc[64:80].reset_index(drop=True), \
        frame.iloc[80:].reset_index(drop=True)


@pytest.mark.parametrize("name", ["ela-logreg", "ela-svm", "ela-rf", "ela-gb", "ela-adaboost"])
def test_every_classifier_finds_the_recompressed_patch(generated, tmp_path, name):
    train, valid, test = generated
    detector = create(name, workers=1, cache_dir=str(tmp_path)).fit(train, valid=valid)
    scores = detector.predict_proba(test)
    assert np.all((scores >= 0) & (scores <= 1))
    assert roc_auc_score(test["label"], scores) > 0.9


def test_round_trip_and_explain(generated, tmp_path):
    train, valid, test = generated
    detector = create("ela-logreg", color=True, extra_qualities=(60, 95), workers=1,
                      cache_dir=str(tmp_path)).fit(train, valid=valid)
    detector.save(tmp_path / "model")
    loaded = load_detector(tmp_path / "model", workers=1, cache_dir=str(tmp_path / "other"))
    assert loaded.color is True and tuple(loaded.extra_qualities) == (60, 95)
    np.testing.assert_array_equal(loaded.predict_proba(test), detector.predict_proba(test))
    heat = loaded.explain(test["path"][1])
    assert heat.shape == (64, 64) and heat.max() == 1.0 and heat.min() >= 0


@pytest.mark.slow
@pytest.mark.shared
def test_shared_task1_subsample(tmp_path):
    train, test = shared_task1_subsample(train_frames=3, test_frames=2)
    detector = create("ela-gb", workers=1, cache_dir=str(tmp_path)).fit(train)
    scores = detector.predict_proba(test)
    # 0.96 frame AUC with all of Task_1/development; 3 frames per video still separate well.
    assert roc_auc_score(test["label"], scores) > 0.8


@pytest.mark.parametrize("shape", [(224, 224), (7, 13), (1100, 1000)])
def test_level_counts_are_the_exact_histogram(shape):
    """Counted in lanes (small maps) or in one histogram (maps over a megapixel): the same counts as
    np.bincount, on a map of few levels (the slow case for one histogram) and on noise."""
    from dflab.detectors.handcrafted.ela import level_counts

    rng = np.random.default_rng(shape[0])
    for error in (rng.integers(0, 6, shape).astype(np.uint8), rng.integers(0, 256, shape).astype(np.uint8)):
        counts = level_counts(error)
        assert counts.dtype == np.float64 and counts.shape == (256,)
        np.testing.assert_array_equal(counts, np.bincount(error.ravel(), minlength=256))


def test_cell_means_are_exact_on_big_maps():
    """Cell means from the integral image, exact on a map whose pixel sum passes int32 (9 megapixels
    of level 255) and on one whose cells split unevenly."""
    from dflab.detectors.handcrafted.ela import cell_means

    bright = np.full((3000, 3000), 255, np.uint8)
    np.testing.assert_array_equal(cell_means(bright, 8), np.full(64, 255.0))
    uneven = np.random.default_rng(5).integers(0, 256, (37, 61), dtype=np.uint8)
    edges_y, edges_x = (np.arange(9) * 37) // 8, (np.arange(9) * 61) // 8
    expected = [uneven[edges_y[r]:edges_y[r + 1], edges_x[c]:edges_x[c + 1]].mean() for r in range(8) for c in range(8)]
    np.testing.assert_allclose(cell_means(uneven, 8), expected, rtol=1e-12)
