"""Crop policy (face re-framing) and self-blended training of the CNN detectors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dflab.faces.framing import FaceLocation, FaceLocator, locate_faces, reframe, square_region

skimage_data = pytest.importorskip("skimage.data")
torch.set_num_threads(2)


@pytest.mark.parametrize("box,scale,expected", [
    ((40, 40, 60, 80), 1.0, (30, 40, 70, 80)),      # square of the longer side around the centre
    ((40, 40, 60, 80), 0.5, (40, 50, 60, 70)),
    ((0, 0, 20, 20), 2.0, (0, 0, 40, 40)),          # moved inside instead of padded
    ((10, 10, 90, 90), 3.0, (0, 0, 100, 100)),      # larger than the image: the whole image
    ((80, 0, 100, 20), 1.0, (80, 0, 100, 20)),
])
def test_square_region_stays_inside_the_image(box, scale, expected):
    assert square_region(box, scale, 100, 120 if expected[2] <= 100 else 100) == expected


def test_reframe_moves_landmarks_and_keeps_images_without_a_face():
    image = np.arange(100 * 100 * 3, dtype=np.uint8).reshape(100, 100, 3)
    face = FaceLocation((40, 40, 60, 60), np.array([[45, 45], [55, 45], [50, 50], [46, 55], [54, 55]], np.float32))
    crop, landmarks = reframe(image, face, 2.0)
    assert crop.shape == (40, 40, 3) and np.array_equal(crop, image[30:70, 30:70])
    np.testing.assert_allclose(landmarks[0], [15, 15])
    same, none = reframe(image, None, 2.0)
    assert same is image and none is None
    unchanged, points = reframe(image, face, None)  # no policy: the image as given, landmarks kept
    assert unchanged is image and np.array_equal(points, face.landmarks)


def test_mtcnn_finds_the_astronauts_face_and_caches_it(tmp_path, monkeypatch):
    from PIL import Image

    photo = skimage_data.astronaut()  # 512x512, one face near (x 180, y 100)
    path = tmp_path / "astronaut.png"
    Image.fromarray(photo).save(path)
    (face,) = locate_faces([str(path)], workers=1, cache_dir=tmp_path / "cache")
    x0, y0, x1, y1 = face.box
    assert 120 < (x0 + x1) / 2 < 240 and 40 < (y0 + y1) / 2 < 160 and 50 < x1 - x0 < 200
    assert face.landmarks.shape == (5, 2)
    left_eye, right_eye = face.landmarks[0], face.landmarks[1]
    assert x0 < left_eye[0] < right_eye[0] < x1 and y0 < left_eye[1] < y1

    def fail(self, image):
        raise AssertionError("recomputed a cached face")

    monkeypatch.setattr(FaceLocator, "__call__", fail)
    (again,) = locate_faces([str(path)], workers=1, cache_dir=tmp_path / "cache")
    assert again.box == face.box
    # A picture without a face gives None, not an error.
    assert locate_faces([np.full((120, 120, 3), 90, np.uint8)], workers=1, cache_dir=False) == [None]


def _faces_on_backgrounds(n, seed):
    """Real photos: crops around the astronaut's face at slightly different places."""
    rng = np.random.default_rng(seed)
    photo = skimage_data.astronaut()
    crops = []
    for _ in range(n):
        dx, dy = rng.integers(0, 60, 2)
        crops.append(np.ascontiguousarray(photo[dy:dy + 300, 60 + dx:360 + dx]))
    return crops


@pytest.mark.slow
def test_self_blended_training_set_holds_reals_and_their_blends(tmp_path):
    from dflab.detectors import create

    images = _faces_on_backgrounds(4, seed=0)
    fakes = [np.ascontiguousarray(image[:, ::-1]) for image in images[:2]]
    detector = create("efficientnet-lite0-sbi", input_size=64, device="cpu")
    train_set = detector._training_set((images + fakes, [0, 0, 0, 0, 1, 1]))
    assert len(train_set) == 8 and train_set.labels.tolist() == [0] * 4 + [1] * 4
    assert train_set.blend.tolist() == [False] * 4 + [True] * 4
    assert all(face is not None and face.landmarks is not None for face in train_set.faces)
    real, _, _ = train_set[0]
    blended, _, _ = train_set[4]  # the same photo, self-blended
    train_set.augmentation = None
    assert not torch.equal(train_set[0][0], train_set[4][0])
    assert real.shape == blended.shape == (3, 64, 64)
    mixed = create("efficientnet-lite0-sbi", input_size=64, self_blend="mix", device="cpu")
    assert mixed._training_set((images + fakes, [0, 0, 0, 0, 1, 1])).labels.tolist() == [0] * 4 + [1] * 6
    with pytest.raises(ValueError, match="needs real images"):
        detector._training_set((fakes, [1, 1]))
    grid = detector.self_blend_examples(images, tmp_path / "examples.png", n=2)
    from PIL import Image

    assert Image.open(grid).size == (750, 500)  # two rows of real | blend | mask
    assert create("efficientnet-lite0").self_blend_examples(images, tmp_path / "none.png") is None


@pytest.mark.slow
def test_self_blended_training_learns_to_spot_blends_and_round_trips(tmp_path):
    from dflab.detectors import create, load_detector
    from dflab.augment.sbi import self_blend

    images = _faces_on_backgrounds(24, seed=1)
    detector = create("efficientnet-lite0-sbi", input_size=96, epochs=8, batch_size=8, warmup_epochs=0.5,
                      lr=1e-3, device="cpu")
    detector.fit((images[:16], [0] * 16))  # real images only: the fakes are made from them
    held_out = images[16:]
    landmarks = [face.landmarks for face in locate_faces(held_out, workers=1, cache_dir=False)]
    blends = [self_blend(image, np.random.default_rng(i), landmarks=points)[0]
              for i, (image, points) in enumerate(zip(held_out, landmarks))]
    scores = detector.predict_proba(held_out + blends)
    assert scores[8:].mean() > scores[:8].mean()  # blends of unseen crops score as more fake
    detector.save(tmp_path / "sbi")
    reloaded = load_detector(tmp_path / "sbi")
    assert reloaded.crop_scale == 0.7 and reloaded.self_blend == "only"
    np.testing.assert_allclose(reloaded.predict_proba(held_out + blends), scores, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_attention_map_covers_the_framed_region_only():
    # An -autoatt detector that frames faces explains the region it scores, placed in the photo.
    from dflab.detectors import create

    photo = skimage_data.astronaut()
    detector = create("efficientnet-lite0-autoatt", pretrained=False, input_size=64, crop_scale=1.0, device="cpu")
    torch.manual_seed(0)
    detector.model_ = detector.build_model(pretrained=False).eval()
    heatmap = detector.explain(photo)
    (face,) = locate_faces([photo], workers=1, cache_dir=False)
    left, top, right, bottom = square_region(face.box, 1.0, 512, 512)
    assert heatmap.shape == (512, 512)
    inside = np.zeros(heatmap.shape, bool)
    inside[top:bottom, left:right] = True
    assert np.all(heatmap[~inside] == 0)
    assert heatmap[inside].min() > 0  # a sigmoid attention map is positive everywhere it was computed
