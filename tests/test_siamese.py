"""Siamese detector: pair construction, a short real training per head, pair accuracy, save/load."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from sklearn.metrics import roc_auc_score

from dflab.detectors import create, load_detector
from dflab.detectors.deep.siamese import pair_accuracy, pair_threshold
from dflab.detectors.deep.pairs import pair_links, sample_pairs, sample_triplets
from dflab.detectors.deep.tensors import resize_square


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # Tiny networks: one thread is as fast on a quiet machine and far faster on a shared one.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def paired_videos(folder, n_videos: int, frames: int, seed: int, size: int = 48) -> pd.DataFrame:
    """A manifest of PNG frames: each real video is a smooth random colour field (frames differ by
    noise and a small shift); its fake ``<video>_fake`` is the same frames with a blocky, lower-
    resolution square pasted at a random place (the visible artefact), linked by ``pair``."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for v in range(n_videos):
        video = f"s{seed}v{v}"
        base = resize_square(rng.integers(40, 215, (5, 5, 3)).astype(np.uint8), size + 8).astype(np.int16)
        for f in range(frames):
            dy, dx = rng.integers(0, 9, 2)
            real = base[dy:dy + size, dx:dx + size] + rng.integers(-10, 11, (size, size, 3))
            side = size // 2
            y, x = rng.integers(0, size - side, 2)
            patch = np.kron(rng.integers(0, 256, (side // 6 + 1, side // 6 + 1, 3)), np.ones((6, 6, 1)))
            fake = real.copy()
            fake[y:y + side, x:x + side] = (fake[y:y + side, x:x + side] + patch[:side, :side]) // 2
            for label, name, img in ((0, video, real), (1, f"{video}_fake", fake)):
                path = folder / f"{name}_{f}.png"
                Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path)
                rows.append({"path": str(path), "label": label, "video": name, "pair": video})
    return pd.DataFrame(rows)


# -- pair and triplet construction --------------------------------------------------------------

def _manifest_arrays(n_videos=6, frames=3, unlinked=1):
    videos, labels, links = [], [], []
    for v in range(n_videos):
        for label, name in ((0, f"v{v}"), (1, f"v{v}_fake")):
            for _ in range(frames):
                videos.append(name), labels.append(label)
                links.append("" if (label == 1 and v < unlinked) else f"v{v}")
    return np.asarray(labels), np.asarray(videos), np.asarray(links, dtype=object)


def test_pairs_link_real_frames_to_their_own_fakes_and_never_pair_one_video():
    labels, videos, links = _manifest_arrays()
    first, second, similar = sample_pairs(labels, videos, links, 400, np.random.default_rng(0))
    assert len(first) == 400 and similar.sum() == 200
    assert np.all(videos[first] != videos[second]), "two frames of one video were paired"
    dissimilar = similar == 0
    assert np.all(labels[first[dissimilar]] != labels[second[dissimilar]])
    assert np.all(labels[first[~dissimilar]] == labels[second[~dissimilar]])
    # A linked fake is always paired with a frame of its own source video ...
    linked = dissimilar & (links[second] != "")
    assert linked.sum() > 100
    assert np.all(links[first[linked]] == links[second[linked]])
    assert np.all(np.char.add(videos[first[linked]].astype(str), "_fake") == videos[second[linked]].astype(str))
    # ... and a fake without a known source still gets a real frame of another video.
    unlinked = dissimilar & (links[second] == "")
    assert unlinked.any() and np.all(labels[first[unlinked]] == 0)
    # Deterministic for a seed, different for another.
    again = sample_pairs(labels, videos, links, 400, np.random.default_rng(0))
    assert all(np.array_equal(a, b) for a, b in zip((first, second, similar), again))
    assert not np.array_equal(first, sample_pairs(labels, videos, links, 400, np.random.default_rng(1))[0])


def test_pairs_without_links_or_one_class_are_handled():
    labels, videos, _ = _manifest_arrays()
    first, second, similar = sample_pairs(labels, videos, None, 50, np.random.default_rng(0))
    assert np.all(videos[first] != videos[second]) and set(similar) == {0.0, 1.0}
    with pytest.raises(ValueError, match="both real and fake"):
        sample_pairs(np.zeros(4, int), np.arange(4).astype(str), None, 10, np.random.default_rng(0))
    assert pair_links(pd.DataFrame({"path": ["a"], "label": [0], "pair": [None]})) is None


def test_triplets_take_positives_and_negatives_from_other_videos():
    labels, videos, links = _manifest_arrays()
    rows = sample_triplets(labels, videos, np.random.default_rng(0), links=links)
    assert sorted(rows[:, 0]) == list(range(len(labels)))
    a, p, n = rows.T
    assert np.all(labels[a] == labels[p]) and np.all(labels[a] != labels[n])
    assert np.all(videos[a] != videos[p]) and np.all(videos[a] != videos[n])
    own = (labels[a] == 1) & (links[a] != "") & (links[n] == links[a])
    assert own.any(), "no fake anchor got its own source as the negative"


def test_pair_threshold_separates_distances():
    distances = np.array([0.1, 0.2, 0.3, 0.9, 1.1, 1.2])
    similar = np.array([1, 1, 1, 0, 0, 0])
    threshold, accuracy = pair_threshold(distances, similar)
    assert accuracy == 1.0 and 0.3 < threshold <= 0.9
    assert pair_accuracy(distances, similar, threshold) == 1.0
    assert pair_accuracy(distances, 1 - similar, threshold) == 0.0


# -- training -----------------------------------------------------------------------------------

SMALL = dict(arch="tiny-efficientnet", pretrained=False, input_size=48, embedding_dim=16, contrastive_epochs=6,
             pairs_per_epoch=96, batch_size=16, lr=3e-3, warmup_epochs=0.3, augment=False, device="cpu", seed=1)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("siamese")
    return (paired_videos(root / "train", 8, 3, seed=0), paired_videos(root / "valid", 4, 2, seed=1),
            paired_videos(root / "test", 8, 1, seed=2))


@pytest.fixture(scope="module")
def trained_mlp(data):
    train, valid, _ = data
    started = time.perf_counter()
    detector = create("siamese", **SMALL).fit(train, valid=valid)
    detector.fit_seconds_ = time.perf_counter() - started
    return detector


@pytest.mark.slow
def test_siamese_mlp_beats_chance_and_records_pair_accuracy(trained_mlp, data):
    _, valid, test = data
    history = trained_mlp.training_["contrastive"]["history"]
    assert len(history) == SMALL["contrastive_epochs"]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert trained_mlp.pair_accuracy_set_ == "validation"
    assert 0.0 <= trained_mlp.pair_accuracy_ <= 1.0 and 0.0 <= trained_mlp.pair_auc_ <= 1.0
    assert trained_mlp.training_["train_pair_accuracy"] > 0.8  # the contrastive stage learnt its pairs
    auc = roc_auc_score(test.label, trained_mlp.predict_proba(test))
    print(f"siamese mlp: test AUC {auc:.3f}, validation pair accuracy {trained_mlp.pair_accuracy_:.3f} "
          f"(pair AUC {trained_mlp.pair_auc_:.3f}), "
          f"fit {trained_mlp.fit_seconds_:.1f} s")
    assert auc > 0.7
    embeddings = trained_mlp.embed(test.path.tolist()[:3])
    assert embeddings.shape == (3, 16)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, rtol=1e-5)


@pytest.mark.slow
def test_siamese_save_load_round_trip_is_identical(trained_mlp, data, tmp_path):
    _, _, test = data
    before = trained_mlp.predict_proba(test)
    trained_mlp.save(tmp_path / "siamese")
    assert not list(tmp_path.glob("siamese/*.pkl")) and (tmp_path / "siamese" / "head.skops").is_file()
    loaded = load_detector(tmp_path / "siamese", device="cpu")
    np.testing.assert_array_equal(loaded.predict_proba(test), before)
    assert loaded.pair_accuracy_ == trained_mlp.pair_accuracy_
    assert loaded.pair_threshold_ == trained_mlp.pair_threshold_


def test_siamese_training_is_deterministic(trained_mlp, data):
    train, valid, test = data
    params = {**SMALL, "contrastive_epochs": 1}
    a = create("siamese", **params).fit(train, valid=valid)
    b = create("siamese", **params).fit(train, valid=valid)
    np.testing.assert_array_equal(a.predict_proba(test), b.predict_proba(test))
    assert a.pair_accuracy_ == b.pair_accuracy_


def test_siamese_finetune_head_trains_the_whole_network(data, tmp_path):
    train, valid, test = data
    detector = create("siamese-finetune", **{**SMALL, "contrastive_epochs": 3, "epochs": 3, "finetune_lr": 3e-3})
    detector.fit(train, valid=valid)
    assert detector.model_.classifier is not None
    finetune = detector.training_["finetune"]
    assert finetune["history"] and all("valid_auc" in h for h in finetune["history"])
    scores = detector.predict_proba(test)
    print(f"siamese finetune: test AUC {roc_auc_score(test.label, scores):.3f}")
    assert np.all((scores > 0) & (scores < 1))
    detector.save(tmp_path / "ft.zip")
    np.testing.assert_array_equal(load_detector(tmp_path / "ft.zip", device="cpu").predict_proba(test), scores)


def test_siamese_bad_input_is_a_clear_error(trained_mlp, data, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    good = data[2].path.tolist()[:2]
    scores = trained_mlp.predict_proba([good[0], str(broken), good[1]], on_error="nan")
    assert np.isnan(scores[1]) and np.isfinite(scores[[0, 2]]).all()
    with pytest.raises(Exception, match="broken.png"):
        trained_mlp.predict_proba([str(broken)])
    with pytest.raises(ValueError, match="unknown siamese head"):
        create("siamese", head="svm").build_model(pretrained=False)
