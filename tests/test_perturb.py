from __future__ import annotations

import io
import os

import cv2
import numpy as np
import pytest
from PIL import Image

from dflab.media.images import ImageError, load_image
from dflab.augment.perturb import PERTURBATIONS, apply, perturbed_sources
from dflab.data.synthetic.faces import make_face


@pytest.fixture(scope="module")
def face() -> np.ndarray:
    return make_face(np.random.default_rng(7), size=96)


def _jpeg_bytes(image: np.ndarray, quality: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _mse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean((a.astype(float) - b.astype(float)) ** 2))


def test_the_specified_set_is_there():
    assert list(PERTURBATIONS) == ["jpeg90", "jpeg70", "jpeg50", "downscale0.5", "blur", "noise"]
    with pytest.raises(ValueError, match="unknown perturbation 'jpeg10'"):
        apply("jpeg10", np.zeros((8, 8, 3), np.uint8))


@pytest.mark.parametrize("quality", [90, 70, 50])
def test_jpeg_is_pillow_at_that_quality(face, quality):
    out = apply(f"jpeg{quality}", face)
    with Image.open(io.BytesIO(_jpeg_bytes(face, quality))) as reference:
        np.testing.assert_array_equal(out, np.asarray(reference.convert("RGB")))
    assert out.shape == face.shape and out.dtype == np.uint8


def test_jpeg_quality_ordering(face):
    sizes = [len(_jpeg_bytes(face, q)) for q in (90, 70, 50)]
    assert sizes[0] > sizes[1] > sizes[2]
    errors = [_mse(apply(name, face), face) for name in ("jpeg90", "jpeg70", "jpeg50")]
    assert 0 < errors[0] < errors[1] < errors[2]
    # The luminance quantisation table of quality 50 is libjpeg's standard table (DC step 16).
    with Image.open(io.BytesIO(_jpeg_bytes(face, 50))) as encoded:
        assert encoded.quantization[0][0] == 16


def _high_frequency_energy(image: np.ndarray) -> float:
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(float)
    spectrum = np.abs(np.fft.fftshift(np.fft.fft2(grey - grey.mean()))) ** 2
    h, w = grey.shape
    yy, xx = np.mgrid[:h, :w]
    radius = np.hypot((yy - h / 2) / (h / 2), (xx - w / 2) / (w / 2))
    return float(spectrum[radius > 0.5].sum())


def test_downscale_removes_high_frequencies_keeps_size_and_low_frequencies(face):
    rng = np.random.default_rng(0)
    textured = np.clip(face.astype(float) + rng.normal(0, 12, face.shape), 0, 255).astype(np.uint8)
    out = apply("downscale0.5", textured)
    assert out.shape == textured.shape and out.dtype == np.uint8
    assert _high_frequency_energy(out) < 0.2 * _high_frequency_energy(textured)
    # What survives is the coarse image: both agree after a low-pass filter.
    low_in, low_out = (cv2.GaussianBlur(x, (0, 0), 3).astype(float) for x in (textured, out))
    assert np.abs(low_in - low_out).mean() < 2.0
    # Odd sizes round-trip to the same size too.
    assert apply("downscale0.5", textured[:37, :51]).shape == (37, 51, 3)


def test_blur_reduces_laplacian_variance_with_sigma_1_5(face):
    out = apply("blur", face)
    lap = lambda x: cv2.Laplacian(cv2.cvtColor(x, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var()  # noqa: E731
    assert lap(out) < 0.5 * lap(face)
    np.testing.assert_array_equal(out, cv2.GaussianBlur(face, (0, 0), 1.5, borderType=cv2.BORDER_REFLECT_101))


def test_noise_has_the_specified_std_and_is_seeded():
    grey = np.full((128, 128, 3), 128, np.uint8)  # mid-grey: no clipping bias
    out = apply("noise", grey, np.random.default_rng(3))
    diff = out.astype(float) - grey
    assert diff.std() == pytest.approx(5.0, rel=0.03)
    assert abs(diff.mean()) < 0.1
    np.testing.assert_array_equal(out, apply("noise", grey, np.random.default_rng(3)))
    assert not np.array_equal(out, apply("noise", grey, np.random.default_rng(4)))
    # Deterministic perturbations ignore the generator.
    np.testing.assert_array_equal(apply("blur", grey, np.random.default_rng(1)), apply("blur", grey))


def test_perturbed_sources_writes_cached_pngs_in_order(tmp_path, face):
    rng = np.random.default_rng(1)
    paths = []
    for i in range(3):
        image = face if i == 0 else make_face(rng, size=64)
        path = tmp_path / f"img{i}.png"
        Image.fromarray(image).save(path)
        paths.append(path)
    out = perturbed_sources(paths, "jpeg70", tmp_path / "perturbed", seed=0)
    assert len(out) == 3 and len(set(out)) == 3
    for source, copy in zip(paths, out):
        np.testing.assert_array_equal(load_image(copy), apply("jpeg70", load_image(source)))
    # Cached: a second call returns the same files without rewriting them.
    stamps = [os.stat(p).st_mtime_ns for p in out]
    assert perturbed_sources(paths, "jpeg70", tmp_path / "perturbed", seed=0) == out
    assert [os.stat(p).st_mtime_ns for p in out] == stamps

    noisy = perturbed_sources(paths, "noise", tmp_path / "perturbed", seed=5)
    again = perturbed_sources(list(reversed(paths)), "noise", tmp_path / "other", seed=5)[::-1]
    for a, b in zip(noisy, again):  # the noise of an image does not depend on the others' order
        np.testing.assert_array_equal(load_image(a), load_image(b))
    other_seed = perturbed_sources(paths[:1], "noise", tmp_path / "perturbed", seed=6)
    assert other_seed[0] != noisy[0]
    assert not np.array_equal(load_image(other_seed[0]), load_image(noisy[0]))


def test_perturbed_sources_bad_files(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(ImageError, match="broken.png"):
        perturbed_sources([bad], "blur", tmp_path / "out")
    missing = tmp_path / "missing.png"
    assert perturbed_sources([bad, missing], "blur", tmp_path / "out", on_error="keep") == [bad, missing]
    grey = np.full((16, 16), 90, np.uint8)  # arrays are accepted too (greyscale becomes RGB)
    (copy,) = perturbed_sources([grey], "downscale0.5", tmp_path / "out")
    assert load_image(copy).shape == (16, 16, 3)
