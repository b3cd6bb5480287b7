from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from dflab.augment.sbi import (
    BLEND_RATIOS, SelfBlendedDataset, face_hull, make_sbi_batch, sbi_grid, self_blend,
)
from dflab.data.synthetic.faces import make_face

SIZE = 96
# MTCNN order: left eye, right eye, nose, left mouth corner, right mouth corner (pixels of a 96 px crop).
FIVE_POINTS = np.array([[36, 42], [60, 42], [48, 55], [39, 68], [57, 68]], dtype=float)


@pytest.fixture(scope="module")
def faces() -> list[np.ndarray]:
    rng = np.random.default_rng(11)
    return [make_face(rng, size=SIZE) for _ in range(3)]


def _region(shape, polygon=None, box=None, margin=0.0) -> np.ndarray:
    """Pixels of a polygon or a box (x0, y0, x1, y1), dilated by ``margin`` pixels."""
    region = np.zeros(shape, np.uint8)
    if polygon is not None:
        cv2.fillConvexPoly(region, np.round(polygon).astype(np.int32), 1)
    else:
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        region[max(0, y0):y1 + 1, max(0, x0):x1 + 1] = 1
    if margin > 0:
        radius = int(np.ceil(margin))
        region = cv2.dilate(region, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1,) * 2))
    return region.astype(bool)


def _ellipse_box(info) -> tuple[float, float, float, float]:
    (cx, cy), (ax, ay) = info["centre"], info["axes"]
    r = max(ax, ay)  # rotated by at most 8 degrees: the larger axis bounds both directions
    return cx - r, cy - r, cx + r, cy + r


# Worst-case spread of the mask beyond its hull: scale/shift (~6 %), elastic wobble (~5 %),
# dilation (4 %) and feathering (~7 % on the resized mask).
MARGIN = 0.2 * SIZE


@pytest.mark.parametrize("seed", range(6))
def test_landmark_mask_lies_inside_the_expanded_hull_and_covers_its_core(faces, seed):
    image = faces[seed % 3]
    blended, mask, info = self_blend(image, seed, landmarks=FIVE_POINTS, return_info=True)
    hull = face_hull(FIVE_POINTS)
    assert info["kind"] == "landmarks"
    assert not (mask > 0)[~_region(mask.shape, polygon=hull, margin=MARGIN)].any()
    # The centre of the face (between eyes and mouth) gets the full blend ratio or close to it.
    core = mask[50:58, 44:52]
    assert core.min() > 0.5 * info["ratio"]
    # Corners of the image are background.
    assert mask[:8, :8].max() == 0 and mask[-8:, -8:].max() == 0


def test_five_point_hull_is_a_face_outline():
    hull = face_hull(FIVE_POINTS)
    eye_distance = 24.0
    xs, ys = hull[:, 0], hull[:, 1]
    # Wider than the eyes, from above the eyes (brows) to below the mouth (chin).
    assert xs.min() < 36 - 0.5 * eye_distance and xs.max() > 60 + 0.5 * eye_distance
    assert ys.min() < 42 - 0.3 * eye_distance and ys.max() > 68 + 0.4 * eye_distance
    for point in FIVE_POINTS:
        assert cv2.pointPolygonTest(hull.astype(np.float32), tuple(map(float, point)), False) > 0
    # A 68-point layout uses its own convex hull.
    angles = np.linspace(0, 2 * np.pi, 68, endpoint=False)
    ring = np.c_[48 + 30 * np.cos(angles), 50 + 38 * np.sin(angles)]
    assert len(face_hull(ring)) == 68
    with pytest.raises(ValueError, match="landmarks"):
        face_hull(np.zeros((2, 2)))


def test_68_point_mask_follows_the_landmarks(faces):
    angles = np.linspace(0, 2 * np.pi, 68, endpoint=False)
    ring = np.c_[40 + 18 * np.cos(angles), 55 + 22 * np.sin(angles)]  # an off-centre face
    for seed in range(3):
        _, mask = self_blend(faces[0], seed, landmarks=ring)
        assert not (mask > 0)[~_region(mask.shape, polygon=ring, margin=MARGIN)].any()
        ys, xs = np.nonzero(mask > 0.5 * mask.max())
        assert abs(xs.mean() - 40) < 6 and abs(ys.mean() - 55) < 6


@pytest.mark.parametrize("seed", range(6))
def test_ellipse_mask_lies_inside_its_expanded_bounding_box(faces, seed):
    _, mask, info = self_blend(faces[seed % 3], seed, return_info=True)
    assert info["kind"] == "ellipse"
    (cx, cy), (ax, ay) = info["centre"], info["axes"]
    assert abs(cx / SIZE - 0.5) < 0.04 and abs(cy / SIZE - 0.52) < 0.05
    assert 0.3 <= ax / SIZE <= 0.4 and 0.3 <= ay / SIZE <= 0.4
    assert not (mask > 0)[~_region(mask.shape, box=_ellipse_box(info), margin=MARGIN)].any()
    assert mask[int(cy), int(cx)] > 0.5 * info["ratio"]


@pytest.mark.parametrize("seed", range(4))
def test_blend_boundary_present_and_background_untouched(faces, seed):
    image = faces[seed % 3]
    blended, mask, info = self_blend(image, seed, swap_prob=0.0, return_info=True)
    diff = np.abs(blended.astype(float) - image.astype(float)).mean(axis=2)
    # Outside the mask the image is unchanged, bit for bit.
    assert (diff[mask == 0] == 0).all()
    # A soft transition exists: a band where 0 < mask < ratio, lying on the mask's edge.
    soft = (mask > 0.05 * info["ratio"]) & (mask < 0.95 * info["ratio"])
    assert soft.sum() > 0.02 * mask.size
    inner = mask >= 0.95 * info["ratio"]
    outer = mask == 0
    distance_to_inner = cv2.distanceTransform((~inner).astype(np.uint8), cv2.DIST_L2, 3)
    distance_to_outer = cv2.distanceTransform((~outer).astype(np.uint8), cv2.DIST_L2, 3)
    assert np.median(np.minimum(distance_to_inner, distance_to_outer)[soft]) < 0.1 * SIZE
    # The change is inside the mask: almost all of the absolute difference sits where mask > 0,
    # and the blended face differs from the original there.
    assert diff[mask > 0].sum() / max(diff.sum(), 1e-9) == pytest.approx(1.0)
    assert diff[inner].mean() > 1.0


def test_swapped_copy_changes_the_background_instead(faces):
    # With swap_prob=1 the outer copy is the jittered one: the background changes, the mask's
    # inside is the (shifted) original.
    image = faces[1]
    blended, mask, info = self_blend(image, 5, swap_prob=1.0, return_info=True)
    assert info["swapped"]
    background = mask == 0
    assert np.abs(blended.astype(float) - image.astype(float))[background].mean() > 0.5


def test_blend_ratio_is_drawn_from_the_papers_set(faces):
    ratios = [self_blend(faces[0], seed, return_info=True)[2]["ratio"] for seed in range(24)]
    assert set(ratios) <= set(BLEND_RATIOS) and len(set(ratios)) >= 3
    for seed in range(3):
        _, mask, info = self_blend(faces[0], seed, return_info=True)
        assert mask.max() == pytest.approx(info["ratio"], rel=1e-5) and mask.min() == 0.0
        assert mask.dtype == np.float32 and mask.shape == (SIZE, SIZE)


def test_deterministic_with_a_seed_and_different_between_seeds(faces):
    a = self_blend(faces[0], np.random.default_rng(42), landmarks=FIVE_POINTS)
    b = self_blend(faces[0], np.random.default_rng(42), landmarks=FIVE_POINTS)
    c = self_blend(faces[0], np.random.default_rng(43), landmarks=FIVE_POINTS)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0]) and not np.array_equal(a[1], c[1])


def test_make_sbi_batch_labels_order_and_determinism(faces):
    images, labels = make_sbi_batch(faces, 7)
    assert labels.tolist() == [0, 0, 0, 1, 1, 1]
    for real, out in zip(faces, images[:3]):
        np.testing.assert_array_equal(real, out)  # reals are untouched
    for real, fake in zip(faces, images[3:]):
        assert fake.shape == real.shape and fake.dtype == np.uint8 and not np.array_equal(fake, real)
    again, _ = make_sbi_batch(faces, np.random.default_rng(7))
    for x, y in zip(images, again):
        np.testing.assert_array_equal(x, y)
    other, _ = make_sbi_batch(faces, 8)
    assert any(not np.array_equal(x, y) for x, y in zip(images[3:], other[3:]))
    with pytest.raises(ValueError, match="landmark entries"):
        make_sbi_batch(faces, 0, landmarks=[FIVE_POINTS])


def test_greyscale_as_rgb_and_small_images():
    rng = np.random.default_rng(0)
    grey = cv2.cvtColor(make_face(rng, size=64), cv2.COLOR_RGB2GRAY)
    for image in (grey, np.repeat(grey[..., None], 3, axis=2)):
        blended, mask = self_blend(image, 1, swap_prob=0.0)
        assert blended.shape == (64, 64, 3) and mask.shape == (64, 64)
        assert (blended[mask == 0] == np.repeat(grey[..., None], 3, axis=2)[mask == 0]).all()
        assert mask.max() > 0
    face = make_face(rng, size=64)
    for size in (16, 24, 32):
        small = cv2.resize(face, (size, size), interpolation=cv2.INTER_AREA)
        blended, mask = self_blend(small, 2)
        assert blended.shape == small.shape and 0 < mask.max() <= 1 and np.isfinite(mask).all()
    # Non-square crops work too.
    blended, mask = self_blend(make_face(rng, size=64)[:, 8:56], 3)
    assert blended.shape == (64, 48, 3) and mask.shape == (64, 48)


def test_landmarks_outside_the_image_are_refused(faces):
    with pytest.raises(ValueError, match="face mask is empty"):
        self_blend(faces[0], 0, landmarks=FIVE_POINTS + 1000)
    with pytest.raises(ValueError, match="NaN"):
        self_blend(faces[0], 0, landmarks=np.full((5, 2), np.nan))


def test_dataset_is_deterministic_per_epoch_and_reads_files(tmp_path, faces):
    paths = []
    for i, face in enumerate(faces[:2]):
        paths.append(tmp_path / f"real{i}.png")
        Image.fromarray(face).save(paths[-1])
    dataset = SelfBlendedDataset(paths, seed=3)
    assert len(dataset) == 4
    real, label = dataset[0]
    assert label == 0 and np.array_equal(real, faces[0])
    fake, label = dataset[2]
    assert label == 1 and fake.shape == faces[0].shape and not np.array_equal(fake, faces[0])
    np.testing.assert_array_equal(fake, SelfBlendedDataset(paths, seed=3)[2][0])
    dataset.set_epoch(1)
    assert not np.array_equal(fake, dataset[2][0])  # new blends each epoch
    with pytest.raises(IndexError):
        dataset[4]


def test_sbi_grid_writes_a_png(tmp_path, faces):
    out = sbi_grid(faces[:2], tmp_path / "grid" / "sbi.png", landmarks=[FIVE_POINTS, None])
    with Image.open(out) as grid:
        assert grid.format == "PNG" and grid.height > grid.width / 3 * 1.5
    with pytest.raises(ValueError, match="no images"):
        sbi_grid([], tmp_path / "empty.png")
