"""MesoNet: the PyTorch port against a plain NumPy implementation of the Keras layers, the published
weights' conventions on Task_1, training, save/load."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from dflab.detectors import create, load_detector
from dflab.detectors.deep.mesonet import MesoNet, keras_hidden_activation, load_keras_h5
from dflab.runtime.weights import WeightsError

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
MESO_WEIGHTS = SHARED / "weights" / "mesonet"
torch.set_num_threads(2)


def _needs_weights(monkeypatch=None):
    """Skip without ../shared; with ``monkeypatch``, point $DFLAB_WEIGHTS at its weights (the
    published detectors find their files there)."""
    if not (MESO_WEIGHTS / "Meso4_DF.h5").is_file():
        pytest.skip(f"../shared not present: no MesoNet weights at {MESO_WEIGHTS}")
    if monkeypatch is not None:
        monkeypatch.setenv("DFLAB_WEIGHTS", str(MESO_WEIGHTS.parent))


# -- a NumPy implementation of the Keras layers (NHWC, as Keras computes) ----------------------

def np_conv_same(x, kernel, bias, dilation=1):
    """Keras Conv2D(padding='same', stride 1, dilation_rate) + bias: x (N,H,W,C), kernel (kh,kw,in,out)."""
    kh, kw = kernel.shape[:2]
    ph, pw = dilation * (kh - 1) // 2, dilation * (kw - 1) // 2
    padded = np.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)))
    h, w = x.shape[1:3]
    out = np.zeros(x.shape[:3] + (kernel.shape[3],), np.float64)
    for i in range(kh):
        for j in range(kw):
            window = padded[:, i * dilation:i * dilation + h, j * dilation:j * dilation + w]
            out += window @ kernel[i, j]
    return out + bias


def np_bn(x, w, eps=1e-3):
    return (x - w["moving_mean"]) / np.sqrt(w["moving_variance"] + eps) * w["gamma"] + w["beta"]


def np_maxpool(x, k):
    n, h, w, c = x.shape
    return x.reshape(n, h // k, k, w // k, k, c).max(axis=(2, 4))


relu = lambda x: np.maximum(x, 0)  # noqa: E731


def _read(path):
    with h5py.File(path, "r") as f:
        return {name: {k.split(":")[0]: np.asarray(v) for k, v in f[name][name].items()}
                for name in f.keys() if name in f[name]}


def np_meso4(x, w):
    # Meso4_DF.h5 layer names: conv2d_5..8, batch_normalization_5..8, dense_3, dense_4 (linear hidden).
    for i, (conv, bn, pool) in enumerate(zip(range(5, 9), range(5, 9), (2, 2, 2, 4))):
        c = w[f"conv2d_{conv}"]
        x = np_maxpool(np_bn(relu(np_conv_same(x, c["kernel"], c["bias"])), w[f"batch_normalization_{bn}"]), pool)
    x = x.reshape(len(x), -1)
    x = x @ w["dense_3"]["kernel"] + w["dense_3"]["bias"]
    x = x @ w["dense_4"]["kernel"] + w["dense_4"]["bias"]
    return x[:, 0]  # the logit of Keras' sigmoid output


def np_mesoinception(x, w):
    def conv(x, n, dilation=1):
        return relu(np_conv_same(x, w[f"conv2d_{n}"]["kernel"], w[f"conv2d_{n}"]["bias"], dilation))

    def inception(x, first):
        a = conv(x, first)
        b = conv(conv(x, first + 1), first + 2)
        c = conv(conv(x, first + 3), first + 4, dilation=2)
        d = conv(conv(x, first + 5), first + 6, dilation=3)
        return np.concatenate([a, b, c, d], axis=-1)

    x = np_maxpool(np_bn(inception(x, 1), w["batch_normalization_1"]), 2)
    x = np_maxpool(np_bn(inception(x, 8), w["batch_normalization_2"]), 2)
    x = np_maxpool(np_bn(conv(x, 15), w["batch_normalization_3"]), 2)
    x = np_maxpool(np_bn(conv(x, 16), w["batch_normalization_4"]), 4)
    x = x.reshape(len(x), -1) @ w["dense_1"]["kernel"] + w["dense_1"]["bias"]
    x = np.where(x > 0, x, 0.1 * x)  # LeakyReLU(0.1)
    x = x @ w["dense_2"]["kernel"] + w["dense_2"]["bias"]
    return x[:, 0]


@pytest.mark.parametrize("filename, inception, reference", [("Meso4_DF.h5", False, np_meso4),
                                                            ("MesoInception_DF.h5", True, np_mesoinception)])
def test_port_matches_numpy_keras_reference(filename, inception, reference):
    _needs_weights()
    path = MESO_WEIGHTS / filename
    activation = keras_hidden_activation(path)
    assert activation == ("leaky_relu" if inception else "linear")
    x = np.random.default_rng(0).random((2, 256, 256, 3))
    expected_logit_real = reference(x, _read(path))
    net = MesoNet(inception=inception, hidden_activation=activation)
    load_keras_h5(net, path)
    with torch.inference_mode():
        logit_fake = net.eval()(torch.from_numpy(x.transpose(0, 3, 1, 2)).float())[:, 0].double().numpy()
    # Our logit of P(fake) is minus Keras' logit of P(real).
    np.testing.assert_allclose(logit_fake, -expected_logit_real, rtol=1e-4, atol=1e-4)
    assert abs(expected_logit_real[0] - expected_logit_real[1]) > 1e-3  # the inputs really differ downstream


def test_wrong_variant_file_is_refused():
    _needs_weights()
    with pytest.raises(WeightsError, match="conv2d layers"):
        load_keras_h5(MesoNet(inception=True), MESO_WEIGHTS / "Meso4_DF.h5")


def test_published_weights_detect_task1_fakes_in_their_sense(monkeypatch):
    """The published Meso4_DF, fed [0, 1] pixels and read as P(fake) = 1 - sigmoid, beats chance on
    UADFV (Task_1/evaluation, 2 frames per video)."""
    _needs_weights(monkeypatch)
    root = SHARED / "datasets" / "Task_1" / "evaluation"
    if not root.is_dir():
        pytest.skip(f"../shared not present: no {root}")
    paths, labels = [], []
    for label, kind in ((0, "real"), (1, "fake")):
        for video in sorted((root / kind).iterdir()):
            frames = sorted(video.glob("*.png"))
            paths += [str(f) for f in frames[::8]]
            labels += [label] * len(frames[::8])
    detector = create("mesonet4-df", device="cpu")
    assert detector.trainable is False and detector.ready_to_load() and not detector.is_fitted()
    detector.fit()
    auc = roc_auc_score(labels, detector.predict_proba(paths))
    assert auc > 0.65, f"published Meso4_DF AUC {auc:.3f} on Task_1"


def test_published_detector_without_file_is_a_clear_error(monkeypatch, tmp_path):
    detector = create("mesoinception4-f2f", weights=str(tmp_path / "missing.h5"), device="cpu")
    with pytest.raises(WeightsError, match="mesoinception4-f2f: weights file .*missing.h5 not found"):
        detector.fit()
    # Nothing is looked for outside $DFLAB_WEIGHTS (../shared from the package was, once).
    monkeypatch.setenv("DFLAB_WEIGHTS", str(tmp_path))
    detector = create("mesoinception4-f2f", device="cpu")
    with pytest.raises(WeightsError, match="mesoinception4-f2f: weights not found at .*mesonet/MesoInception_F2F.h5; "
                                           "run `dflab weights fetch mesoinception4-f2f`"):
        detector.fit()


def test_a_published_file_that_is_not_the_published_one_is_refused(monkeypatch, tmp_path):
    _needs_weights()
    (tmp_path / "mesonet").mkdir()
    # The F2F weights under the DF name: a readable Meso4 file, not the one the name promises.
    (tmp_path / "mesonet" / "Meso4_DF.h5").write_bytes((MESO_WEIGHTS / "Meso4_F2F.h5").read_bytes())
    monkeypatch.setenv("DFLAB_WEIGHTS", str(tmp_path))
    with pytest.raises(WeightsError, match="sha256 does not match the published mesonet4-df weights"):
        create("mesonet4-df", device="cpu").fit()


def _blobs(n, seed, size=64):
    """Random smooth images; fakes have a high-frequency checkerboard patch (a visible artefact)."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for i in range(n):
        base = np.kron(rng.integers(30, 220, (4, 4, 3)), np.ones((size // 4, size // 4, 1))).astype(np.int16)
        base += rng.integers(-10, 11, base.shape).astype(np.int16)
        if i % 2:
            y, x = rng.integers(0, size // 2, 2)
            checker = (np.indices((size // 2, size // 2)).sum(0) % 2 * 120 - 60)[..., None]
            base[y:y + size // 2, x:x + size // 2] += checker.astype(np.int16)
        images.append(np.clip(base, 0, 255).astype(np.uint8))
        labels.append(i % 2)
    return images, np.asarray(labels)


@pytest.mark.slow
def test_meso4_trains_and_round_trips(tmp_path):
    images, labels = _blobs(48, seed=0)
    detector = create("meso4", input_size=64, epochs=4, batch_size=16, lr=3e-3, device="cpu", seed=1)
    detector.fit((images, labels))
    test_images, test_labels = _blobs(32, seed=1)
    scores = detector.predict_proba(test_images)
    assert roc_auc_score(test_labels, scores) > 0.7
    detector.save(tmp_path / "meso")
    loaded = load_detector(tmp_path / "meso", device="cpu")
    np.testing.assert_array_equal(loaded.predict_proba(test_images), scores)


def test_published_model_saves_with_its_resolved_activation(tmp_path, monkeypatch):
    _needs_weights(monkeypatch)
    detector = create("mesonet4-f2f", device="cpu").fit()
    images = _blobs(4, seed=3, size=256)[0]
    scores = detector.predict_proba(images)
    detector.save(tmp_path / "m.zip")
    loaded = load_detector(tmp_path / "m.zip", device="cpu")
    assert loaded.model_.hidden_activation == "linear"
    np.testing.assert_array_equal(loaded.predict_proba(images), scores)
