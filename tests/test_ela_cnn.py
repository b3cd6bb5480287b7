"""ela-cnn: the network input against the ELA functions, augmentation before the ELA, a small CNN
that learns a re-compressed region, save/load, bad files, the ELA x saliency map, Lite0's weights, ../shared."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import roc_auc_score

from dflab.detectors import create, load_detector
from dflab.detectors.handcrafted.ela import ela_image, ela_map
from dflab.detectors.deep.ela_cnn import ELADataset, ela_input
from dflab.augment.policy import Augmentation
from dflab.detectors.deep.tensors import resize_square

from .conftest import shared_task1_subsample

TINY = dict(input_size=32, width=16, epochs=10, batch_size=8, lr=5e-3, device="cpu", workers=0)


def textured(rng: np.random.Generator, size: int = 48) -> np.ndarray:
    base = np.asarray(Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)).resize((size, size)),
                      dtype=np.float64)
    return np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)


def pasted(image: np.ndarray) -> np.ndarray:
    """A 'swapped-in' centre that went through JPEG at quality 40 before being pasted back: it
    re-compresses with less error than the untouched noisy frame around it."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=40)
    compressed = np.asarray(Image.open(buffer).convert("RGB"))
    out = image.copy()
    out[8:40, 8:40] = compressed[8:40, 8:40]
    return out


def compression_data(n: int, seed: int):
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for i in range(n):
        image = textured(rng)
        images.append(pasted(image) if i % 2 else image)
        labels.append(i % 2)
    return images, np.array(labels)


@pytest.mark.parametrize("color", [False, True])
def test_network_input_is_the_ela_times_gain(color):
    image = textured(np.random.default_rng(0))
    got = ela_input(image, 90, color, 8.0)
    assert got.shape == image.shape and got.dtype == np.uint8
    if color:
        expected = np.clip(ela_image(image, 90) * 8.0, 0, 255).astype(np.uint8)
    else:
        expected = np.repeat(np.clip(ela_map(image, 90).astype(np.float32) * 8.0, 0, 255).astype(np.uint8)[:, :, None],
                             3, axis=2)
    np.testing.assert_array_equal(got, expected)
    assert ela_input(image, 90, color, 1000.0).max() == 255  # clipped, not wrapped


def test_dataset_items_are_resized_ela_and_augmented_before_it():
    image = textured(np.random.default_rng(1))
    plain = ELADataset([image], [1], input_size=24, mean=(0, 0, 0), std=(1, 1, 1), quality=85, gain=4.0)
    x, label, error = plain[0]
    expected = resize_square(ela_input(image, 85, False, 4.0), 24)
    np.testing.assert_allclose(x.numpy().transpose(1, 2, 0), expected / 255.0, atol=1e-6)
    assert label == 1.0 and error == ""
    raw = plain.as_raw()
    assert isinstance(raw, ELADataset)
    np.testing.assert_array_equal(raw[0][0].numpy(), expected)
    mirror = Augmentation(flip=1.0, colour=0.0, blur=0.0, rescale=0.0, jpeg=0.0)
    flipped = ELADataset([image], [1], input_size=24, mean=(0, 0, 0), std=(1, 1, 1), quality=85, gain=4.0,
                         photo_augmentation=mirror)
    # the ELA of the mirrored photo (JPEG blocks start at the new left edge), not the mirrored ELA
    np.testing.assert_array_equal(flipped.as_raw()[0][0].numpy(),
                                  resize_square(ela_input(np.ascontiguousarray(image[:, ::-1]), 85, False, 4.0), 24))


@pytest.mark.slow
def test_small_cnn_learns_a_recompressed_region_and_round_trips(tmp_path):
    train, y_train = compression_data(48, 0)
    test, y_test = compression_data(16, 1)
    detector = create("ela-cnn", **TINY).fit((train, y_train))
    scores = detector.predict_proba(test)
    assert roc_auc_score(y_test, scores) > 0.9
    detector.save(tmp_path / "model")
    loaded = load_detector(tmp_path / "model", device="cpu")
    np.testing.assert_allclose(loaded.predict_proba(test), scores, rtol=0, atol=1e-6)
    again = create("ela-cnn", **TINY).fit((train, y_train))
    np.testing.assert_allclose(again.predict_proba(test), scores, rtol=0, atol=1e-6)

    broken = tmp_path / "broken.png"
    broken.write_bytes(b"no image")
    good = tmp_path / "good.png"
    Image.fromarray(test[1]).save(good)
    mixed = detector.predict_proba([str(broken), str(good)], on_error="nan")
    assert np.isnan(mixed[0]) and mixed[1] == pytest.approx(scores[1], abs=1e-6)
    with pytest.raises(ValueError, match="broken.png"):
        detector.predict_proba([str(broken)])

    heatmap = detector.explain(test[1])
    assert heatmap.shape == (48, 48) and heatmap.min() >= 0 and heatmap.max() <= 1
    # the map is the ELA weighted by saliency: zero wherever the ELA is zero
    error = ela_input(test[1], 90, False, 32.0)[:, :, 0]
    assert (heatmap[error == 0] == 0).all()


def test_lite0_variant_starts_from_imagenet_weights():
    from dflab.detectors.deep.pretrained import imagenet_state

    detector = create("ela-cnn-lite0", device="cpu")
    assert detector.mean == (0.485, 0.456, 0.406)
    net = detector.build_model(pretrained=True)
    stem = imagenet_state("efficientnet-lite0")["_conv_stem.weight"]
    assert torch.equal(net.net.conv_stem.weight.detach(), stem)
    with pytest.raises(ValueError, match="unknown ela-cnn arch"):
        create("ela-cnn", arch="vgg").build_model(pretrained=False)


@pytest.mark.slow
def test_real_faces_train_and_score():
    train, test = shared_task1_subsample(train_frames=1, test_frames=1)
    detector = create("ela-cnn", input_size=64, epochs=1, device="cpu").fit(train)
    scores = detector.predict_proba(test)
    assert scores.shape == (len(test),) and np.isfinite(scores).all()
    assert detector.explain(test["path"][0]).shape == (256, 256)
