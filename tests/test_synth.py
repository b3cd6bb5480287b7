"""The synthetic lab generator: face images, the two manipulations, the on-disk layout, determinism,
and that database A is learnable with simple features while database B is harder for that detector."""

from __future__ import annotations

import io
import re

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from dflab.data import synthetic as synth

LAB_SIZES = dict(n_videos_dev=12, n_videos_eval=6, frames_per_video=4, size=96, n_t23_dev=5, n_t23_eval=40)
TINY_SIZES = dict(n_videos_dev=2, n_videos_eval=1, frames_per_video=2, size=64, n_t23_dev=2, n_t23_eval=2)


def read_rgb(path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def tree_bytes(root) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthlab")
    info = synth.make_lab(root, seed=0, **LAB_SIZES)
    return root, info


# ------------------------------------------------------------------------------------------ faces


def test_make_face_is_a_textured_rgb_image_with_a_face_in_the_middle():
    img = synth.make_face(np.random.default_rng(3), size=128)
    assert img.shape == (128, 128, 3) and img.dtype == np.uint8
    assert img.std() > 15  # not constant: background, skin, hair, eyes differ
    assert all(np.ptp(img[..., c]) > 80 for c in range(3))
    # Sensor noise and skin texture: a smooth face patch still has pixel-level variation.
    cheek = img[70:80, 40:50].astype(float)
    assert 0.5 < np.abs(np.diff(cheek, axis=1)).mean() < 20
    # The eyes (dark iris and pupil next to bright sclera) give the upper face more contrast
    # than the cheeks.
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(float)
    eye_band = grey[45:65, 30:98]
    assert eye_band.max() - eye_band.min() > 80


def test_make_face_is_reproducible_from_the_generator_state():
    a = synth.make_face(np.random.default_rng(11), size=64)
    b = synth.make_face(np.random.default_rng(11), size=64)
    c = synth.make_face(np.random.default_rng(12), size=64)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_frames_of_one_video_share_identity_but_vary():
    rng = np.random.default_rng(5)
    frames = synth.make_video_frames(rng, 4, size=96)
    other = synth.make_video_frames(np.random.default_rng(6), 1, size=96)[0]
    assert len(frames) == 4 and all(f.shape == (96, 96, 3) and f.dtype == np.uint8 for f in frames)

    def dist(x, y):
        return np.abs(x.astype(float) - y.astype(float)).mean()

    within = [dist(frames[0], f) for f in frames[1:]]
    assert min(within) > 0.5  # pose, light and noise change from frame to frame
    assert max(within) < dist(frames[0], other)  # ...but much less than a different person/room


def test_domains_differ_and_bad_domain_is_rejected():
    rng_a, rng_b = np.random.default_rng(0), np.random.default_rng(0)
    a = [synth.make_face(rng_a, 64, domain="A") for _ in range(6)]
    b = [synth.make_face(rng_b, 64, domain="B") for _ in range(6)]
    # Database B rooms are bright, database A rooms darker: compare the background corners.
    corner = lambda imgs: np.mean([img[:8, :8].mean() for img in imgs])  # noqa: E731
    assert corner(b) > corner(a) + 30
    with pytest.raises(ValueError, match="domain"):
        synth.make_face(np.random.default_rng(0), 64, domain="C")
    with pytest.raises(ValueError, match="size"):
        synth.make_face(np.random.default_rng(0), 16)


# ---------------------------------------------------------------------------------- manipulations


def _region_change(before: np.ndarray, after: np.ndarray) -> tuple[float, float]:
    """Mean absolute change in the face centre and in the four corners."""
    diff = np.abs(before.astype(float) - after.astype(float)).mean(axis=2)
    h, w = diff.shape
    centre = diff[int(0.45 * h):int(0.7 * h), int(0.35 * w):int(0.65 * w)].mean()
    k = h // 8
    corners = np.concatenate([diff[:k, :k].ravel(), diff[:k, -k:].ravel(), diff[-k:, :k].ravel(),
                              diff[-k:, -k:].ravel()]).mean()
    return float(centre), float(corners)


def test_resample_paste_replaces_the_inner_face_and_recompresses_everything():
    rng = np.random.default_rng(1)
    real = synth.make_face(rng, 128)
    fake = synth.manipulate_resample_paste(real, np.random.default_rng(2))
    assert fake.shape == real.shape and fake.dtype == np.uint8
    centre, corners = _region_change(real, fake)
    assert centre > 8 and centre > 3 * corners
    assert corners > 0.3  # double JPEG touched the whole image, not only the face
    # The pasted region was resampled: less pixel-level (Laplacian) energy than the real face there.
    lap = lambda x: np.abs(cv2.Laplacian(cv2.cvtColor(x, cv2.COLOR_RGB2GRAY).astype(np.float32), cv2.CV_32F))  # noqa: E731
    assert lap(fake)[60:90, 45:83].mean() < 0.8 * lap(real)[60:90, 45:83].mean()
    # Same generator state, same fake; an explicit donor must match the image shape.
    assert np.array_equal(fake, synth.manipulate_resample_paste(real, np.random.default_rng(2)))
    with pytest.raises(ValueError, match="donor"):
        synth.manipulate_resample_paste(real, rng, donor=real[:64])


def test_soft_blend_changes_only_a_feathered_face_region():
    real = synth.make_face(np.random.default_rng(4), 128, domain="B")
    untouched_corners = 0
    for seed in range(6):
        fake = synth.manipulate_soft_blend(real, np.random.default_rng(seed))
        assert fake.shape == real.shape and fake.dtype == np.uint8
        # Low-pass both first: the optional mild JPEG only perturbs pixel-level noise.
        lowpass = lambda x: cv2.GaussianBlur(x.astype(np.float32), (0, 0), 2.0).astype(np.uint8)  # noqa: E731
        centre, corners = _region_change(lowpass(real), lowpass(fake))
        assert centre > 2.0 and corners < 0.3 * centre
        # Without the JPEG pass, nothing outside the feathered mask changes at all.
        untouched_corners += np.array_equal(real[:16, :16], fake[:16, :16])
    assert untouched_corners >= 1


def test_manipulations_keep_non_square_sizes_and_reject_bad_images():
    img = np.ascontiguousarray(synth.make_face(np.random.default_rng(0), 128)[:, 8:108])
    for manipulate in (synth.manipulate_resample_paste, synth.manipulate_soft_blend):
        out = manipulate(img, np.random.default_rng(0))
        assert out.shape == (128, 100, 3) and not np.array_equal(out, img)
        with pytest.raises(ValueError, match=r"img: expected an RGB uint8"):
            manipulate(img[..., 0], np.random.default_rng(0))
        with pytest.raises(ValueError, match=r"img: expected an RGB uint8"):
            manipulate(img.astype(np.float32), np.random.default_rng(0))
        with pytest.raises(ValueError, match="too small"):
            manipulate(img[:20, :20], np.random.default_rng(0))


# --------------------------------------------------------------------------------------- the lab


def test_task1_layout_counts_and_pairs(lab):
    root, info = lab
    task = root / "Task_1"
    assert info["task1"] == task and info["task23"] == root / "Task_2_3"
    all_ids = {}
    for split, n_videos in (("development", 12), ("evaluation", 6)):
        reals = sorted(p.name for p in (task / split / "real").iterdir())
        fakes = sorted(p.name for p in (task / split / "fake").iterdir())
        assert len(reals) == n_videos and all(re.fullmatch(r"\d{4}", v) for v in reals)
        assert fakes == [f"{v}_fake" for v in reals]
        all_ids[split] = set(reals)
        for video in reals:
            real_frames = sorted(p.name for p in (task / split / "real" / video).iterdir())
            fake_frames = sorted(p.name for p in (task / split / "fake" / f"{video}_fake").iterdir())
            assert len(real_frames) == 4 and real_frames == fake_frames
            assert all(re.fullmatch(r"\d{3}\.png", f) for f in real_frames)
        counts = info["counts"]["Task_1"][split]
        assert counts == {"real_videos": n_videos, "fake_videos": n_videos,
                          "real_frames": 4 * n_videos, "fake_frames": 4 * n_videos}
    assert not all_ids["development"] & all_ids["evaluation"]  # split by source video


def test_task1_fakes_come_from_their_real_frames(lab):
    root, _ = lab
    base = root / "Task_1" / "evaluation"
    videos = sorted(p.name for p in (base / "real").iterdir())
    first = {v: sorted((base / "real" / v).glob("*.png"))[0] for v in videos}
    for video in videos:
        real = read_rgb(first[video])
        fake = read_rgb(base / "fake" / f"{video}_fake" / first[video].name)
        assert fake.shape == real.shape == (96, 96, 3) and fake.dtype == np.uint8
        with Image.open(first[video]) as im:
            assert im.format == "PNG" and im.mode == "RGB"
        own = np.abs(real.astype(float) - fake).mean()
        assert own > 1.0  # the fake really differs...
        others = [np.abs(read_rgb(first[v]).astype(float) - fake).mean() for v in videos if v != video]
        assert own < min(others)  # ...but is a manipulation of its own real frame


def test_task23_layout_pairs_csv_and_names(lab):
    root, info = lab
    task = root / "Task_2_3"
    seen: set[str] = set()
    for split, n in (("development", 5), ("evaluation", 40)):
        pairs = pd.read_csv(task / f"{split}_pairs.csv")
        assert list(pairs.columns) == ["real", "fake"] and len(pairs) == n
        reals = sorted(p.name for p in (task / split / "real").iterdir())
        fakes = sorted(p.name for p in (task / split / "fake").iterdir())
        assert sorted(pairs["real"]) == reals and sorted(pairs["fake"]) == fakes
        names = reals + fakes
        assert all(re.fullmatch(r"[a-z]{10}\.jpg", name) for name in names)
        assert len(set(names)) == 2 * n and not seen & set(names)  # unique, across splits too
        seen |= set(names)
        assert info["counts"]["Task_2_3"][split] == {"real": n, "fake": n}
    readme = (root / "README.txt").read_text()
    assert "SYNTHETIC" in readme.upper() and "seed=0" in readme and "dflab.data.synthetic.make_lab" in readme


def test_task23_fake_is_made_from_the_real_of_its_row(lab):
    root, _ = lab
    base = root / "Task_2_3" / "evaluation"
    pairs = pd.read_csv(root / "Task_2_3" / "evaluation_pairs.csv").head(12)
    reals = [read_rgb(base / "real" / name).astype(float) for name in pairs["real"]]
    for row, fake_name in enumerate(pairs["fake"]):
        with Image.open(base / "fake" / fake_name) as im:
            assert im.format == "JPEG" and im.size == (96, 96)
        fake = read_rgb(base / "fake" / fake_name)
        distances = [np.abs(real - fake).mean() for real in reals]
        assert distances[row] > 0.5 and int(np.argmin(distances)) == row


def test_same_seed_gives_identical_bytes_and_other_seed_differs(tmp_path):
    synth.make_lab(tmp_path / "a", seed=7, **TINY_SIZES)
    synth.make_lab(tmp_path / "b", seed=7, **TINY_SIZES)
    synth.make_lab(tmp_path / "c", seed=8, **TINY_SIZES)
    a, b, c = (tree_bytes(tmp_path / name) for name in "abc")
    assert a == b
    images_a = {k: v for k, v in a.items() if k.endswith((".png", ".jpg"))}
    assert len(images_a) == 3 * 2 * 2 + 4 * 2  # Task_1: 3 videos x 2 frames x real/fake; Task_2_3: 4 pairs
    assert not set(images_a.values()) & set(c.values())  # no image repeated under another seed


def test_existing_lab_needs_overwrite_and_bad_arguments_are_rejected(tmp_path):
    synth.make_lab(tmp_path, seed=1, **TINY_SIZES)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        synth.make_lab(tmp_path, seed=1, **TINY_SIZES)
    stale = tmp_path / "Task_1" / "development" / "real" / "stale.txt"
    stale.write_text("left over")
    synth.make_lab(tmp_path, seed=1, overwrite=True, **TINY_SIZES)
    assert not stale.exists()
    for bad, match in ((dict(n_videos_dev=0), "n_videos_dev"), (dict(n_t23_eval=-1), "n_t23_eval"),
                       (dict(size=16), "size"), (dict(frames_per_video=2.5), "frames_per_video"),
                       (dict(seed=-3), "seed")):
        with pytest.raises(ValueError, match=match):
            synth.make_lab(tmp_path / "bad", **{**TINY_SIZES, **bad})


# ------------------------------------------------------------------- learnable, and shifted between A and B


def simple_features(path) -> list[float]:
    """ELA mean (JPEG q90 re-save) and pixel-level (Laplacian) energy of the inner face and the image."""
    img = read_rgb(path)
    buffer = io.BytesIO()
    Image.fromarray(img).save(buffer, format="JPEG", quality=90)
    ela = np.abs(img.astype(float) - read_rgb(buffer)).mean()
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32)
    lap = np.abs(cv2.Laplacian(grey, cv2.CV_32F))
    h, w = grey.shape
    inner = lap[int(0.4 * h):int(0.75 * h), int(0.32 * w):int(0.68 * w)].mean()
    return [ela, float(np.log(inner + 1e-3)), float(np.log(lap.mean() + 1e-3))]


def labelled_features(folder, pattern):
    x, y = [], []
    for label, name in ((0, "real"), (1, "fake")):
        for path in sorted((folder / name).rglob(pattern)):
            x.append(simple_features(path))
            y.append(label)
    return np.array(x), np.array(y)


def test_database_a_is_learnable_and_database_b_is_harder_for_it(lab):
    root, _ = lab
    x_dev, y_dev = labelled_features(root / "Task_1" / "development", "*.png")
    x_eval, y_eval = labelled_features(root / "Task_1" / "evaluation", "*.png")
    x_b, y_b = labelled_features(root / "Task_2_3" / "evaluation", "*.jpg")
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(x_dev, y_dev)
    auc_intra = roc_auc_score(y_eval, model.predict_proba(x_eval)[:, 1])
    auc_inter = roc_auc_score(y_b, model.predict_proba(x_b)[:, 1])
    assert auc_intra > 0.8
    assert auc_inter < auc_intra - 0.1
