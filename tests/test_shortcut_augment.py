"""The shortcut-removing training augmentation (H.264 re-encoding, wide rescaling), fine-tuning from a
dflab model file's weights, and self-blending without face detection."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from skimage import data as skimage_data

import dflab.augment.policy as training
import dflab.detectors.deep.torch_detector as torch_detector
from dflab.augment.policy import PRESETS, Augmentation
from dflab.detectors import create
from dflab.detectors.ready import ready_model_dir
from dflab.media.video import h264_round_trip
from dflab.runtime.weights import WeightsError, load_torch_checkpoint


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0 ** 2 / max(mse, 1e-12)))


def test_h264_round_trip_keeps_the_size_and_loses_more_at_a_higher_crf():
    image = np.ascontiguousarray(skimage_data.astronaut()[:225, :223])  # odd sizes
    fine, coarse = h264_round_trip(image, 18), h264_round_trip(image, 45)
    assert fine.shape == coarse.shape == image.shape and fine.dtype == np.uint8
    assert _psnr(image, fine) > 30 > _psnr(image, coarse) > 15
    with pytest.raises(ValueError, match="CRF"):
        h264_round_trip(image, 60)
    with pytest.raises(ValueError, match="RGB"):
        h264_round_trip(image[:, :, 0], 20)


def test_only_the_shortcut_preset_reencodes_and_the_standard_one_is_unchanged(monkeypatch):
    image = np.ascontiguousarray(skimage_data.astronaut()[::2, ::2])
    calls = []
    monkeypatch.setattr(training, "h264_round_trip", lambda im, crf: calls.append(crf) or im)
    assert PRESETS["standard"] == Augmentation()
    for seed in range(100):
        PRESETS["standard"](image, np.random.default_rng(seed))
    assert calls == []
    for seed in range(100):
        PRESETS["shortcut"](image, np.random.default_rng(seed))
    assert 25 <= len(calls) <= 55 and min(calls) >= 20 and max(calls) <= 38


def test_a_dflab_model_file_seeds_a_training_and_a_bad_file_is_one_line(tmp_path):
    arrays = ready_model_dir() / "arrays.safetensors"
    state = load_torch_checkpoint(arrays)
    assert not any(k.startswith("model.") for k in state)
    assert all(v.dtype != np.float16 for v in state.values())
    net = create("efficientnet-lite0", weights=str(arrays)).build_model(pretrained=True)
    np.testing.assert_array_equal(net.state_dict()["net.conv_stem.weight"].numpy(),
                                  state["net.conv_stem.weight"].numpy())
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(WeightsError, match="bad.safetensors"):
        load_torch_checkpoint(bad)


def test_ellipse_self_blending_finds_no_faces_and_labels_every_blend_fake(tmp_path, monkeypatch):
    from PIL import Image

    paths = []
    for i in range(3):
        path = tmp_path / f"{i}.png"
        Image.fromarray(np.ascontiguousarray(skimage_data.astronaut()[20 * i:200 + 20 * i, 150:330])).save(path)
        paths.append(str(path))
    monkeypatch.setattr(torch_detector, "locate_faces", lambda *a, **k: pytest.fail("no face detection expected"))
    detector = create("efficientnet-lite0", self_blend="mix", sbi_mask="ellipse", augment_preset="shortcut",
                      input_size=64)
    train = pd.DataFrame({"path": paths, "label": [0, 0, 1], "video": ["a", "b", "c"]})
    dataset = detector._training_set(train)
    assert list(dataset.labels) == [0, 0, 1, 1, 1] and list(dataset.blend) == [False, False, True, True, False]
    blended, label, error = dataset[2]
    assert error == "" and label == 1.0 and blended.shape == (3, 64, 64)
    with pytest.raises(ValueError, match="augment_preset"):
        create("efficientnet-lite0", augment_preset="strong")._augmentation()


@pytest.mark.slow
def test_the_shipped_calibration_is_platt_scaling_of_the_network_logit():
    from scipy.special import expit, logit

    from dflab.detectors import load_detector

    detector = load_detector(ready_model_dir())
    scale, shift = detector.logit_scale, detector.logit_shift
    faces = [np.ascontiguousarray(skimage_data.astronaut()[30:250, 150:330]),
             np.ascontiguousarray(skimage_data.astronaut()[40:240, 160:320][:, ::-1])]
    calibrated = detector.predict_proba(faces)
    detector.set_params(logit_scale=1.0, logit_shift=0.0)
    raw = detector.predict_proba(faces)
    np.testing.assert_allclose(calibrated, expit(scale * logit(raw) + shift), rtol=1e-5)
    assert not np.allclose(calibrated, raw)
