"""identity-reference: NCC against the direct formula, the rotation search, a detector that finds one
identity among others, calibration that only rises, save/load, bad files, references-only scoring,
`dflab predict --reference`, and ../shared Task 1."""

from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.metrics import roc_auc_score

from dflab.detectors import create, load_detector
from dflab.detectors.handcrafted.identity_reference import central_face, ncc, ncc_templates, normalised

from .conftest import shared_task1_subsample


def smooth_face(rng: np.random.Generator, size: int = 80) -> np.ndarray:
    """A random smooth 'face': low-frequency structure, the same in every frame of one identity."""
    field = rng.normal(0, 1, (10, 10, 3))
    field = (field - field.min()) / np.ptp(field) * 200 + 20
    return np.asarray(Image.fromarray(field.astype(np.uint8)).resize((size, size), Image.Resampling.BICUBIC))


def frame_of(face: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One frame of a face: tilted a few degrees, a little brighter or darker, sensor noise."""
    size = face.shape[0]
    matrix = cv2.getRotationMatrix2D(((size - 1) / 2, (size - 1) / 2), float(rng.uniform(-6, 6)), 1.0)
    turned = cv2.warpAffine(face, matrix, (size, size), borderMode=cv2.BORDER_REFLECT_101).astype(np.float64)
    return np.clip(turned * rng.uniform(0.9, 1.1) + rng.normal(0, 4, turned.shape), 0, 255).astype(np.uint8)


def identity_data(n_videos: int, frames: int, seed: int, identity: np.ndarray):
    """Fake videos: the identity's face; real videos: each its own person."""
    rng = np.random.default_rng(seed)
    rows = []
    for video in range(n_videos):
        label = video % 2
        person = identity if label else smooth_face(rng)
        for _ in range(frames):
            rows.append({"image": frame_of(person, rng), "label": label, "video": f"{seed}-{video}"})
    return rows


def as_manifest(rows, folder):
    folder.mkdir(parents=True, exist_ok=True)
    records = []
    for i, row in enumerate(rows):
        path = folder / f"{row['video']}_{i}.png"
        Image.fromarray(row["image"]).save(path)
        records.append({"path": str(path), "label": row["label"], "video": row["video"]})
    return pd.DataFrame(records)


def test_ncc_templates_are_the_textbook_ncc():
    rng = np.random.default_rng(0)
    first, second = smooth_face(rng, 48), smooth_face(rng, 48)
    a = ncc_templates(first, 32, (0.0,), (1.0,))[0]
    b = ncc_templates(second, 32, (0.0,), (1.0,))[0]

    def window(face):
        grey = cv2.equalizeHist(cv2.cvtColor(cv2.resize(face, (32, 32), interpolation=cv2.INTER_AREA),
                                             cv2.COLOR_RGB2GRAY))
        return grey[8:24, 8:24]

    expected = np.corrcoef(window(first).ravel().astype(float), window(second).ravel().astype(float))[0, 1]
    assert a @ b == pytest.approx(ncc(window(first), window(second)), abs=1e-9)
    assert ncc(window(first), window(second)) == pytest.approx(expected, abs=1e-9)
    assert a @ a == pytest.approx(1.0)
    assert ncc(np.ones((4, 4)), np.arange(16.0).reshape(4, 4)) == 0.0  # a flat window has no correlation
    rows = rng.normal(size=(3, 10))
    np.testing.assert_allclose(normalised(rows).sum(axis=1), 0, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(normalised(rows), axis=1), 1)


def test_rotation_search_undoes_a_tilt():
    rng = np.random.default_rng(1)
    face = smooth_face(rng, 64)
    matrix = cv2.getRotationMatrix2D((31.5, 31.5), 8.0, 1.0)
    tilted = cv2.warpAffine(face, matrix, (64, 64), borderMode=cv2.BORDER_REFLECT_101)
    reference = ncc_templates(face, 64, (0.0,), (1.0,))[0]
    angles = (-8.0, -4.0, 0.0, 4.0, 8.0)
    similarity = ncc_templates(tilted, 64, angles, (1.0,)) @ reference
    assert int(np.argmax(similarity)) == 0  # turning the query back by -8 degrees matches best
    assert similarity[0] > similarity[2] + 0.05


def test_central_face():
    image = np.arange(130 * 130 * 3).reshape(130, 130, 3).astype(np.uint8)
    face = central_face(image, 1.3)
    assert face.shape == (100, 100, 3)
    np.testing.assert_array_equal(face, image[15:115, 15:115])


@pytest.fixture(scope="module")
def identity_sets(tmp_path_factory):
    identity = smooth_face(np.random.default_rng(99))
    root = tmp_path_factory.mktemp("identity")
    train = as_manifest(identity_data(16, 3, 0, identity), root / "train")
    test = as_manifest(identity_data(10, 2, 1, identity), root / "test")
    return train, test, root


def test_detector_finds_the_identity_and_round_trips(identity_sets, tmp_path):
    train, test, _ = identity_sets
    detector = create("identity-reference").fit(train)
    # references: one frame from each of 4 of the 8 fake videos (half at most), the rest calibrates
    assert detector.reference_templates_.shape[0] == 4 and detector.calibration_["coef"] > 0
    assert detector.calibration_["n_calibration"] == len(train) - 4 * 3
    scores = detector.predict_proba(test)
    assert roc_auc_score(test["label"], scores) > 0.95
    similarity = detector.identity_similarity(detector.templates(list(test["path"])))
    order = np.argsort(similarity)
    assert np.all(np.diff(scores[order]) >= 0)  # P(fake) rises with the similarity
    detector.save(tmp_path / "model")
    loaded = load_detector(tmp_path / "model")
    np.testing.assert_array_equal(loaded.predict_proba(test), scores)
    np.testing.assert_array_equal(create("identity-reference").fit(train).predict_proba(test), scores)
    heatmap = detector.explain(test["path"][1])
    assert heatmap.shape == (80, 80) and heatmap.max() == pytest.approx(1.0) and heatmap[:10].max() == 0


def test_bad_files_score_nan(identity_sets, tmp_path):
    train, test, _ = identity_sets
    detector = create("identity-reference").fit(train)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG broken")
    scores = detector.predict_proba([str(broken), test["path"][0], str(tmp_path / "none.png")], on_error="nan")
    assert np.isnan(scores[0]) and np.isfinite(scores[1]) and np.isnan(scores[2])
    with pytest.raises(ValueError, match="broken.png"):
        detector.predict_proba([str(broken)])


def test_fakes_unlike_the_references_give_a_flat_calibration(identity_sets, tmp_path):
    train, test, _ = identity_sets
    # the premise inverted: real videos show one person, every fake another: similarity to the fakes'
    # references says nothing about the other fakes, the real faces are the alike ones
    rows = identity_data(16, 3, 7, smooth_face(np.random.default_rng(98)))
    for row in rows:
        row["label"] = 1 - row["label"]
    inverted = as_manifest(rows, tmp_path / "inverted")
    detector = create("identity-reference").fit(inverted)
    assert detector.calibration_["coef"] == 0.0
    scores = detector.predict_proba(test)
    calibration_labels = inverted["label"].to_numpy()
    assert np.ptp(scores) == 0
    # the constant is the fake rate of the calibration images (the reference videos are fakes, left out)
    assert 0 < scores[0] < calibration_labels.mean()


@pytest.mark.slow
def test_references_folder_and_predict_command(identity_sets, tmp_path):
    train, test, root = identity_sets
    references = tmp_path / "refs"
    identity = smooth_face(np.random.default_rng(99))
    rng = np.random.default_rng(3)
    for video in range(4):  # four 'videos' of the person, three frames each
        (references / f"v{video}").mkdir(parents=True)
        for frame in range(3):
            Image.fromarray(frame_of(identity, rng)).save(references / f"v{video}" / f"{frame}.png")
    detector = create("identity-reference", references=str(references)).fit(train)
    assert detector.reference_templates_.shape[0] == 12 and detector.calibration_["n_calibration"] == len(train)
    assert roc_auc_score(test["label"], detector.predict_proba(test)) > 0.95
    # references only: P(fake) is the rank among the references' similarities to the other videos
    ranked = create("identity-reference").set_references([str(p) for p in sorted(references.rglob("*.png"))])
    scores = ranked.predict_proba(test)
    assert ranked.calibration_["kind"] == "references" and ((scores >= 0) & (scores <= 1)).all()
    # other people are less alike than any two of the person's videos; the person's new frames rank
    # among the references' own similarities
    is_fake = test["label"].to_numpy() == 1
    assert (scores[~is_fake] == 0).all() and scores[is_fake].mean() > 0.2
    fake_frame = test[test["label"] == 1]["path"].iloc[0]
    result = subprocess.run([sys.executable, "-m", "dflab", "predict", fake_frame, "--reference", str(references),
                             "-q"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert float(result.stdout.split()[0]) == pytest.approx(ranked.predict_proba([fake_frame])[0], abs=1e-3)
    missing = subprocess.run([sys.executable, "-m", "dflab", "predict", fake_frame, "--reference",
                              str(tmp_path / "nobody")], capture_output=True, text=True)
    assert missing.returncode == 2 and "nobody" in missing.stderr


@pytest.mark.slow
def test_embedding_similarity(identity_sets):
    train, test, _ = identity_sets
    small_train = train.groupby("video").head(1).reset_index(drop=True)
    detector = create("identity-reference-embedding").fit(small_train)
    same = detector.templates([test["path"][0], test["path"][0]])
    assert same[0].shape == (1, 1280) and (same[0] @ same[1].T).item() == pytest.approx(1.0, abs=1e-5)
    scores = detector.predict_proba(test[:4])
    assert np.isfinite(scores).all() and ((scores > 0) & (scores < 1)).all()


def test_task1_identity():
    train, test = shared_task1_subsample(train_frames=2, test_frames=2)
    detector = create("identity-reference").fit(train)
    assert detector.reference_templates_.shape[0] == 16 and detector.calibration_["coef"] > 0
    assert roc_auc_score(test["label"], detector.predict_proba(test)) > 0.7
