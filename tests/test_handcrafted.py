"""block-DCT and spectrum features against slow, obvious reference implementations; detector behaviour."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.fft
from PIL import Image

from dflab.detectors import create, load_detector
from dflab.detectors.block_dct import BlockDCTFeatures, skin_mask, zigzag_indices
from dflab.detectors.spectrum import SpectrumFeatures, azimuthal_average

from .conftest import require_shared


def _gray(image):
    import cv2

    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


def _reference_zigzag(size):
    """JPEG zig-zag by walking the anti-diagonals one by one."""
    order = []
    for s in range(2 * size - 1):
        cells = [(r, s - r) for r in range(size) if 0 <= s - r < size]
        order.extend(cells if s % 2 == 1 else cells[::-1])
    return [r * size + c for r, c in order]


@pytest.mark.parametrize("size", [2, 4, 8, 32])
def test_zigzag_matches_walking_the_diagonals(size):
    assert zigzag_indices(size).tolist() == _reference_zigzag(size)


@pytest.mark.parametrize("block,stride", [(32, 32), (16, 16), (32, 16)])
def test_block_features_match_a_loop_over_blocks(block, stride):
    rng = np.random.default_rng(block + stride)
    image = rng.integers(0, 256, (70, 90, 3), dtype=np.uint8)
    extractor = BlockDCTFeatures(block=block, stride=stride, dct_coefficients=10, hist_coefficients=6)
    features = extractor(image)
    gray = _gray(image)
    mask = skin_mask(image)
    zigzag = _reference_zigzag(block)[:10]
    rows = []
    for y in range(0, gray.shape[0] - block + 1, stride):
        for x in range(0, gray.shape[1] - block + 1, stride):
            tile = gray[y:y + block, x:x + block].astype(np.float64)
            dct = scipy.fft.dctn(tile, norm="ortho").ravel()[zigzag]
            histogram = np.histogram(gray[y:y + block, x:x + block], bins=256, range=(0, 256))[0] / block ** 2
            hist_dct = scipy.fft.dct(histogram, norm="ortho")[:6]
            skin = mask[y:y + block, x:x + block].mean()
            rows.append(np.concatenate([np.log1p(np.abs(dct)), hist_dct, [skin]]))
    np.testing.assert_allclose(features, np.array(rows), rtol=1e-4, atol=1e-4)


def _reference_azimuthal(gray):
    """Full-plane shifted spectrum, one explicit loop over every frequency."""
    spectrum = np.fft.fftshift(np.fft.fft2(gray.astype(np.float64)))
    magnitude = 20 * np.log(np.abs(spectrum) + 1e-8)
    cy, cx = gray.shape[0] // 2, gray.shape[1] // 2
    sums, counts = {}, {}
    for y in range(gray.shape[0]):
        for x in range(gray.shape[1]):
            ring = int(np.floor(np.hypot(y - cy, x - cx)))
            sums[ring] = sums.get(ring, 0.0) + magnitude[y, x]
            counts[ring] = counts.get(ring, 0) + 1
    return np.array([sums[r] / counts[r] for r in range(max(sums) + 1)])


@pytest.mark.parametrize("shape", [(32, 32), (31, 40), (24, 17)])
def test_azimuthal_average_matches_explicit_loop(shape):
    gray = np.random.default_rng(sum(shape)).integers(0, 256, shape).astype(np.float64)
    np.testing.assert_allclose(azimuthal_average(gray), _reference_azimuthal(gray), rtol=1e-9, atol=1e-6)


def test_spectrum_features_normalised_and_flat_images_do_not_break():
    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    curve = SpectrumFeatures(n_points=50)(image)
    assert curve.shape == (50,) and curve.min() == 0 and curve.max() == 1
    flat = SpectrumFeatures(n_points=50)(np.full((40, 40, 3), 128, np.uint8))
    assert np.isfinite(flat).all()


def _face_like(rng, fake: bool, size=64):
    """A skin-coloured disc on a dark background; fakes carry a smoothed (resampled) inner region."""
    img = np.zeros((size, size, 3), np.uint8) + np.array([30, 40, 50], np.uint8)
    yy, xx = np.mgrid[:size, :size]
    disc = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size * 0.45) ** 2
    skin = np.array([200, 150, 120]) + rng.normal(0, 12, (size, size, 3))
    img[disc] = np.clip(skin[disc], 0, 255)
    pil = Image.fromarray(img)
    if fake:
        inner = pil.crop((16, 16, 48, 48)).resize((8, 8)).resize((32, 32), Image.BILINEAR)
        pil.paste(inner, (16, 16))
    return pil


@pytest.fixture(scope="module")
def face_set(tmp_path_factory):
    folder = tmp_path_factory.mktemp("faces")
    rng = np.random.default_rng(1)
    rows = []
    for i in range(32):
        path = folder / f"{i:02d}.png"
        _face_like(rng, i % 2 == 1).save(path)
        rows.append({"path": str(path), "label": i % 2, "video": f"v{i}"})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("name,params", [
    ("block-dct", {"block": 16, "stride": 16, "classifier": "logreg"}),
    ("block-dct", {"block": 16, "stride": 16, "classifier": "gb"}),
    ("spectrum-logreg", {}),
    ("spectrum-svm", {}),
])
def test_detectors_learn_and_round_trip(face_set, tmp_path, name, params):
    detector = create(name, workers=1, cache_dir=str(tmp_path / "cache"), **params)
    detector.fit(face_set.iloc[:24], valid=face_set.iloc[24:])
    scores = detector.predict_proba(face_set)
    assert np.all((scores >= 0) & (scores <= 1))
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(face_set.label, scores) > 0.8  # the smoothed patch is easy to see
    detector.save(tmp_path / "model.zip")
    np.testing.assert_array_equal(load_detector(tmp_path / "model.zip", workers=1).predict_proba(face_set), scores)


def test_block_dct_explain_and_awkward_inputs(face_set, tmp_path, capsys):
    detector = create("block-dct", block=16, stride=16, workers=1, cache_dir=str(tmp_path / "c"))
    detector.fit(face_set)
    heatmap = detector.explain(face_set.path[1])
    assert heatmap.shape == (64, 64) and 0 <= heatmap.min() and heatmap.max() <= 1
    tiny = np.full((8, 10, 3), 180, np.uint8)  # smaller than one block: upscaled with a warning
    grey = np.repeat(np.random.default_rng(0).integers(0, 256, (40, 40, 1), dtype=np.uint8), 3, axis=2)
    single_colour = np.zeros((40, 40, 3), np.uint8)
    scores = detector.predict_proba([tiny, grey, single_colour])
    assert np.isfinite(scores).all()


def test_block_dct_trains_on_all_blocks_when_there_is_no_skin(tmp_path, capsys):
    rng = np.random.default_rng(3)
    blue = [np.clip(rng.normal([20, 40, 200], 10, (32, 32, 3)), 0, 255).astype(np.uint8) for _ in range(8)]
    labels = [0, 1] * 4
    for image, label in zip(blue, labels):
        if label:
            image[8:24, 8:24] = 255
    detector = create("block-dct", block=16, stride=16, workers=1, cache_dir=str(tmp_path / "c"))
    detector.fit((blue, labels))
    assert "no training block" in capsys.readouterr().err
    assert detector.selection_["training_blocks"] == detector.selection_["all_blocks"] == 8 * 4
    assert np.isfinite(detector.predict_proba(blue)).all()


@pytest.mark.shared
def test_block_dct_on_shared_task1_subsample(tmp_path):
    from dflab import data

    manifest = data.scan(require_shared("datasets", "Task_1"))
    small = data.subsample(manifest, per_video=2, max_videos_per_label=12, seed=0)
    train = small[small.split == "development"]
    test = small[small.split == "evaluation"]
    detector = create("block-dct", workers=2, cache_dir=str(tmp_path / "c")).fit(train)
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(test.label, detector.predict_proba(test)) > 0.7
