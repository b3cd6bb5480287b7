"""Block-DCT detector: features against slow per-block reference code, the detector's contract,
bad inputs, a lab run on generated data and a subsampled run on ../shared."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import scipy.fft
from PIL import Image
from sklearn.metrics import roc_auc_score

from dflab.detectors import create, load_detector
from dflab.detectors.handcrafted.block_dct import (
    BlockDCTFeatures, block_heatmap, grid_shape, skin_mask, zigzag_indices,
)
from dflab.detectors.handcrafted.ela import ela_map
from dflab.media.images import ImageError

from .conftest import require_shared

SKIN_RGB = (220, 170, 140)  # YCrCb (182, 155, 104): inside the default skin box


# -- generated images ---------------------------------------------------------------------------

def face_image(rng: np.random.Generator, fake: bool, size: int = 96) -> np.ndarray:
    """A bluish noisy background with a skin-coloured, finely textured ellipse; in a 'fake' the
    ellipse's texture is blurred away (a swapped face that lost its detail)."""
    image = np.clip(rng.normal((70, 90, 120), 20, (size, size, 3)), 0, 255).astype(np.uint8)
    face = np.zeros((size, size), np.uint8)
    cv2.ellipse(face, (size // 2, size // 2), (size * 3 // 8, size * 7 // 16), 0, 0, 360, 1, -1)
    texture = np.clip(np.asarray(SKIN_RGB) + rng.normal(0, 9, (size, size, 1)), 0, 255).astype(np.uint8)
    if fake:
        texture = cv2.GaussianBlur(texture, (0, 0), 2.0)
    image[face > 0] = texture[face > 0]
    return image


def write_set(folder, n: int, seed: int, size: int = 96) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        fake = i % 2 == 1
        path = folder / f"{seed}_{i:03d}.png"
        Image.fromarray(face_image(rng, fake, size)).save(path)
        rows.append({"path": str(path), "label": int(fake), "video": f"s{seed}v{i}"})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    folder = tmp_path_factory.mktemp("block_dct_images")
    return write_set(folder, 24, seed=1), write_set(folder, 12, seed=2), write_set(folder, 16, seed=3)


# -- reference implementations (slow, obvious) --------------------------------------------------

def reference_zigzag(size: int) -> list[int]:
    """Walk the anti-diagonals, alternating direction, as JPEG does."""
    order = []
    for diagonal in range(2 * size - 1):
        cells = [(r, diagonal - r) for r in range(size) if 0 <= diagonal - r < size]  # row increasing
        if diagonal % 2 == 0:
            cells.reverse()  # even diagonals run upwards
        order += [r * size + c for r, c in cells]
    return order


def reference_block_features(image, block, stride, n_dct, n_hist, n_ela=0, ela_quality=90, magnitude="log"):
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    ela = ela_map(image, ela_quality, color=True).astype(np.float64)
    ycrcb = cv2.cvtColor(image, cv2.COLOR_RGB2YCrCb)
    zigzag = reference_zigzag(block)
    rows = []
    for top in range(0, gray.shape[0] - block + 1, stride):
        for left in range(0, gray.shape[1] - block + 1, stride):
            patch = gray[top:top + block, left:left + block].astype(np.float64)
            coefficients = scipy.fft.dctn(patch, norm="ortho").ravel()[zigzag[:n_dct]]
            histogram, _ = np.histogram(patch, bins=256, range=(0, 256))
            hist_dct = scipy.fft.dct(histogram / patch.size, norm="ortho")[:n_hist]
            ela_dct = scipy.fft.dctn(ela[top:top + block, left:left + block], norm="ortho").ravel()[zigzag[:n_ela]]
            skin = 0
            for y in range(top, top + block):
                for x in range(left, left + block):
                    _, cr, cb = ycrcb[y, x]
                    skin += (133 <= cr <= 173) and (77 <= cb <= 127)
            if magnitude == "log":
                coefficients, ela_dct = np.log1p(np.abs(coefficients)), np.log1p(np.abs(ela_dct))
            rows.append(np.concatenate([coefficients, hist_dct, ela_dct, [skin / block ** 2]]))
    return np.array(rows)


def reference_heatmap(scores, height, width, block, stride):
    total = np.zeros((height, width))
    count = np.zeros((height, width))
    rows, cols = grid_shape(height, width, block, stride)
    for r in range(rows):
        for c in range(cols):
            total[r * stride:r * stride + block, c * stride:c * stride + block] += scores[r, c]
            count[r * stride:r * stride + block, c * stride:c * stride + block] += 1
    heat = np.zeros((height, width))
    for y in range(height):
        for x in range(width):
            yy, xx = y, x
            while count[yy, xx] == 0:  # uncovered border: take the nearest covered pixel
                yy, xx = min(yy, (rows - 1) * stride + block - 1), min(xx, (cols - 1) * stride + block - 1)
            heat[y, x] = total[yy, xx] / count[yy, xx]
    return heat


# -- features -----------------------------------------------------------------------------------

def test_zigzag_is_the_jpeg_scan():
    jpeg_first_16 = [0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5]  # JPEG standard, 8x8
    assert zigzag_indices(8)[:16].tolist() == jpeg_first_16
    for size in (4, 7, 16, 32):
        assert zigzag_indices(size).tolist() == reference_zigzag(size)


@pytest.mark.parametrize("block,stride,n_dct,n_hist,n_ela,magnitude", [
    (32, 32, 64, 32, 0, "log"),
    (16, 8, 100, 20, 6, "log"),
    (16, 16, 256, 256, 0, "raw"),
    (8, 4, 5, 0, 3, "raw"),
])
def test_block_features_match_reference(block, stride, n_dct, n_hist, n_ela, magnitude):
    rng = np.random.default_rng(block + stride)
    image = rng.integers(0, 256, (70, 101, 3), dtype=np.uint8)
    image[10:60, 20:80] = np.clip(np.asarray(SKIN_RGB) + rng.normal(0, 6, (50, 60, 3)), 0, 255)  # some skin
    extractor = BlockDCTFeatures(block=block, stride=stride, dct_coefficients=n_dct, hist_coefficients=n_hist,
                                 ela_coefficients=n_ela, magnitude=magnitude)
    got = extractor(image)
    expected = reference_block_features(image, block, stride, n_dct, n_hist, n_ela, magnitude=magnitude)
    assert got.dtype == np.float32 and got.shape == expected.shape == (np.prod(grid_shape(70, 101, block, stride)),
                                                                        extractor.n_features + 1)
    # float32 matrix products against float64 FFTs: DC terms reach 255 * block, hence the atol.
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=2e-3 * block)
    assert 0 <= got[:, -1].min() < got[:, -1].max() <= 1  # skin fractions vary over the blocks


def test_skin_mask_uses_the_ycbcr_box():
    image = np.array([[SKIN_RGB, (40, 90, 200), (128, 128, 128)]], dtype=np.uint8)
    assert skin_mask(image).tolist() == [[True, False, False]]
    assert skin_mask(image, cr_range=(0, 255), cb_range=(0, 255)).all()


def test_heatmap_matches_reference():
    rng = np.random.default_rng(0)
    for height, width, block, stride in ((64, 64, 32, 32), (70, 101, 16, 8), (45, 50, 32, 5)):
        rows, cols = grid_shape(height, width, block, stride)
        scores = rng.random((rows, cols))
        np.testing.assert_allclose(block_heatmap(scores, height, width, block, stride),
                                   reference_heatmap(scores, height, width, block, stride), atol=1e-12)


def test_feature_parameters_are_checked():
    with pytest.raises(ValueError, match="switched off"):
        BlockDCTFeatures(dct_coefficients=0, hist_coefficients=0)
    with pytest.raises(ValueError, match="dct_coefficients"):
        BlockDCTFeatures(block=8, dct_coefficients=65)
    assert BlockDCTFeatures().cache_key() != BlockDCTFeatures(stride=16).cache_key()


def test_bad_images_still_give_features(capsys):
    extractor = BlockDCTFeatures()
    tiny = extractor(np.full((12, 20, 3), 200, np.uint8))
    assert tiny.shape == (1, 97) and np.isfinite(tiny).all()
    assert "smaller than one 32x32 block" in capsys.readouterr().err
    for image in (np.zeros((64, 64, 3), np.uint8), np.full((64, 64, 3), SKIN_RGB, np.uint8),
                  np.random.default_rng(0).integers(0, 256, (64, 80), dtype=np.uint8)[:, :, None].repeat(3, 2)):
        features = extractor(image)
        assert features.shape == (4, 97) and np.isfinite(features).all()
    assert extractor(np.full((64, 64, 3), SKIN_RGB, np.uint8))[:, -1].tolist() == [1.0] * 4


# -- the detector -------------------------------------------------------------------------------

def test_fit_save_load_identical_scores_and_explain(generated, tmp_path):
    train, valid, test = generated
    detector = create("block-dct-logreg", workers=1, cache_dir=str(tmp_path / "cache"))
    detector.fit(train, valid=valid)
    assert detector.selection_["selection"].startswith("validation AUC")
    assert 0 < detector.selection_["training_blocks"] == detector.selection_["skin_blocks"] \
        < detector.selection_["all_blocks"]
    scores = detector.predict_proba(test)
    assert scores.shape == (16,) and np.all((scores >= 0) & (scores <= 1))
    assert roc_auc_score(test["label"], scores) > 0.9  # blurred skin is what the features see

    detector.save(tmp_path / "model")
    loaded = load_detector(tmp_path / "model", workers=1, cache_dir=str(tmp_path / "cache2"))
    np.testing.assert_array_equal(loaded.predict_proba(test), scores)
    heat = loaded.explain(test["path"][1])
    np.testing.assert_array_equal(heat, detector.explain(test["path"][1]))
    assert heat.shape == (96, 96) and 0 <= heat.min() and heat.max() <= 1
    # With stride = block the heatmap is each block's own score.
    blocks = loaded.block_scores(test["path"][1])
    assert blocks.shape == (3, 3)
    np.testing.assert_allclose(heat[::32, ::32], blocks)


@pytest.mark.parametrize("aggregate", ["skin", "all"])
def test_image_score_is_the_mean_block_score(generated, tmp_path, aggregate):
    train, _, test = generated
    detector = create("block-dct-logreg", aggregate=aggregate, workers=1, cache_dir=str(tmp_path)).fit(train)
    path = test["path"][0]
    blocks = detector.block_scores(path).ravel()
    skin = detector.make_extractor()(np.asarray(Image.open(path)))[:, -1] >= 0.5
    expected = blocks[skin].mean() if aggregate == "skin" else blocks.mean()
    assert 0 < skin.sum() < len(skin)
    # block_scores runs in this process (BLAS threads may sum in another order): float32-level agreement
    assert detector.predict_proba([path])[0] == pytest.approx(expected, rel=1e-6)


def test_no_skin_anywhere_warns_and_trains_on_all_blocks(tmp_path, capsys):
    rng = np.random.default_rng(5)
    images = [rng.integers(0, 256, (64, 64), dtype=np.uint8) for _ in range(12)]  # grayscale: never skin
    images = [cv2.GaussianBlur(im, (0, 0), 1.5) if i % 2 else im for i, im in enumerate(images)]
    labels = [i % 2 for i in range(12)]
    detector = create("block-dct-logreg", workers=1, cache_dir=str(tmp_path)).fit((images, labels))
    assert "no training block is at least 50% skin" in capsys.readouterr().err
    assert detector.selection_["training_blocks"] == detector.selection_["all_blocks"] == 48
    scores = detector.predict_proba(images)
    assert np.isfinite(scores).all()  # no skin block at scoring time either: all blocks are used


def test_bad_inputs_in_scoring(generated, tmp_path):
    train, _, _ = generated
    detector = create("block-dct-logreg", workers=1, cache_dir=str(tmp_path)).fit(train)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    tiny = np.full((10, 7, 3), SKIN_RGB, np.uint8)
    inputs = [str(broken), tiny, np.full((40, 40), 90, np.uint8), train["path"][0]]
    scores = detector.predict_proba(inputs, on_error="nan")
    assert np.isnan(scores[0]) and np.isfinite(scores[1:]).all()
    with pytest.raises(ImageError, match="broken.png"):
        detector.predict_proba(inputs)
    assert detector.explain(tiny).shape == (10, 7)


def test_unknown_options_are_refused(generated):
    with pytest.raises(ValueError, match="aggregate"):
        create("block-dct", aggregate="median").fit(generated[0])
    with pytest.raises(ValueError, match="unknown classifier"):
        create("block-dct", classifier="knn").fit(generated[0])


@pytest.mark.slow
def test_lab_runs_block_dct_end_to_end(tmp_path):
    from dflab.lab.config import LabConfig
    from dflab.lab.protocol import run_lab
    from dflab.data.synthetic.demo_lab import make_lab

    make_lab(tmp_path / "data", n_videos_dev=6, n_videos_eval=4, frames_per_video=2, size=64, n_t23_dev=8,
             n_t23_eval=8, seed=4)
    config = LabConfig(task1=tmp_path / "data" / "Task_1", task23=tmp_path / "data" / "Task_2_3",
                       detectors=["block-dct-logreg"], out=tmp_path / "out", n_boot=20, workers=1,
                       synthetic=True, task3=False)
    result = run_lab(config)
    for task in ("task1", "task2"):
        frame = result["tasks"][task]["detectors"]["block-dct-logreg"]["frame"]
        assert 0 <= frame["auc"] <= 1 and 0 <= frame["eer"] <= 1
    assert (tmp_path / "out" / "models" / "block-dct-logreg" / "task1" / "config.json").exists()


@pytest.mark.slow
@pytest.mark.shared
def test_shared_task1_subsample(tmp_path):
    from dflab import data

    root = require_shared("datasets", "Task_1")
    development, evaluation = data.scan(root / "development"), data.scan(root / "evaluation")

    def frames(frame, n_pairs, per_video):
        pairs = sorted(frame["pair"].unique())[:n_pairs]
        chosen = frame[frame["pair"].isin(pairs)]
        return chosen.groupby("video").head(per_video).reset_index(drop=True)

    train, test = frames(development, 12, 4), frames(evaluation, 8, 3)
    detector = create("block-dct", workers=1, cache_dir=str(tmp_path)).fit(train)
    scores = detector.predict_proba(test)
    assert np.isfinite(scores).all()
    # 96 training frames of 24 videos: far above chance on unseen videos (0.96 with all the data).
    assert roc_auc_score(test["label"], scores) > 0.75


@pytest.mark.parametrize("height,width,block", [(70, 101, 32), (224, 224, 32), (250, 260, 16), (40, 40, 8)])
def test_one_pass_block_histograms_equal_the_gathered_ones(height, width, block):
    """The 2-D histogram over (block number, grey level) counts exactly what gathering each block
    and counting it does, the pixels right of / below the last whole block left out."""
    from dflab.detectors.handcrafted.block_dct import block_histogram_dct, block_view

    plane = np.random.default_rng(height).integers(0, 256, (height, width), dtype=np.uint8)
    plane[: height // 2] //= 16  # runs of few levels, as in flat skin
    blocks = block_view(plane, block, block)
    one_pass = block_histogram_dct(blocks, 32, plane, block)
    gathered = block_histogram_dct(blocks, 32)
    assert one_pass.shape == (len(blocks), 32)
    np.testing.assert_array_equal(one_pass, gathered)


_KERNEL_SCRIPT = """
import sys
import numpy as np
from dflab.detectors.handcrafted.block_dct import BlockDCTFeatures

rng = np.random.default_rng(0)
rows, cols = np.mgrid[0:224, 0:224]
image = np.stack([120 + 60 * np.sin(rows / 17.0), 90 + 40 * np.cos(cols / 23.0), 70 + rows / 8.0], axis=-1)
image = (image + rng.normal(0, 6, image.shape)).clip(0, 255).astype(np.uint8)
blocks = rng.integers(0, 256, (49, 32, 32)).astype(np.float32)
basis = rng.standard_normal((11, 32)).astype(np.float32)
np.save(sys.argv[1], BlockDCTFeatures(stride=16)(image))
np.save(sys.argv[2], basis @ blocks @ basis.T)
"""


def test_block_features_do_not_depend_on_the_blas_kernel(tmp_path):
    """The same image gives the same features whichever matrix kernel the CPU gets: OpenBLAS's AVX2
    and AVX-512 kernels round float32 products differently (up to 8e-4 in the log-DCT features,
    which moved a Task 1 AUC by 0.016 between two machines); the products run in float64."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists() or "avx512f" not in cpuinfo.read_text():
        pytest.skip("needs a Linux CPU with AVX-512 to run both OpenBLAS kernels")
    results = {}
    for kernel in ("Haswell", "SkylakeX"):
        out = tmp_path / kernel
        env = {**os.environ, "OPENBLAS_CORETYPE": kernel, "OMP_NUM_THREADS": "1"}
        subprocess.run([sys.executable, "-c", _KERNEL_SCRIPT, f"{out}-features.npy", f"{out}-float32.npy"],
                       check=True, env=env, capture_output=True)
        results[kernel] = [np.load(f"{out}-{name}.npy") for name in ("features", "float32")]
    (haswell, haswell_float32), (skylake, skylake_float32) = results["Haswell"], results["SkylakeX"]
    if np.array_equal(haswell_float32, skylake_float32):
        pytest.skip("this NumPy's BLAS gives the same float32 products with both kernels")
    np.testing.assert_allclose(haswell, skylake, rtol=0, atol=1e-9)
