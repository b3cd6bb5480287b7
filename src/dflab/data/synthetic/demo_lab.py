"""The synthetic lab on disk: two face manipulations and the Task_1 / Task_2_3 folder layout of ``dflab demo``."""

from __future__ import annotations

import shutil
import string
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from dflab.data.synthetic.faces import (DRAW_ONE, DRAW_SHIFT, TASK1, TASK23, check_rgb, check_size, draw_identity, draw_poses,
                                        make_face, render_frame)
from dflab.media.images import jpeg_round_trip


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def manipulate_resample_paste(img: np.ndarray, rng: np.random.Generator, *,
                              donor: np.ndarray | None = None) -> np.ndarray:
    """Database A fake: paste a resampled inner face with a hard-ish seam, then JPEG twice.

    The inner face (eyes, nose, mouth) comes from ``donor`` (an aligned face image of the same
    shape; default: a new synthetic identity drawn from ``rng``), its mean colour matched to the
    target, downscaled and upscaled again (bilinear or bicubic: the high frequencies and the sensor
    noise are lost), and pasted through an elliptic or rectangular mask blurred by only ~1 px. The
    result is JPEG-compressed at quality q1 in [60, 80] then at q2 in [85, 95].
    """
    check_rgb(img, "img")
    h, w = img.shape[:2]
    if donor is None:
        donor = make_face(rng, size=max(h, w))
        if donor.shape[:2] != (h, w):
            donor = cv2.resize(donor, (w, h), interpolation=cv2.INTER_AREA)
    else:
        check_rgb(donor, "donor")
        if donor.shape != img.shape:
            raise ValueError(f"donor: shape {donor.shape} differs from img shape {img.shape}")

    # Brows to mouth of an aligned face crop (faces in these crops are centred and of similar size).
    cx, cy = w * rng.normal(0.5, 0.008), h * rng.normal(0.58, 0.008)
    rx, ry = w * rng.uniform(0.19, 0.23), h * rng.uniform(0.2, 0.24)
    mask = np.zeros((h, w), np.uint8)
    if rng.random() < 0.5:
        cv2.ellipse(mask, (int(cx * DRAW_ONE), int(cy * DRAW_ONE)), (int(rx * DRAW_ONE), int(ry * DRAW_ONE)), 0, 0, 360, 255, -1,
                    cv2.LINE_AA, DRAW_SHIFT)
    else:
        cv2.rectangle(mask, (int((cx - rx) * DRAW_ONE), int((cy - ry) * DRAW_ONE)), (int((cx + rx) * DRAW_ONE), int((cy + ry) * DRAW_ONE)),
                      255, -1, cv2.LINE_AA, DRAW_SHIFT)
    soft = cv2.GaussianBlur(mask.astype(np.float32) / 255.0, (0, 0), rng.uniform(0.6, 1.4))[..., None]

    target = img.astype(np.float32)
    source = donor.astype(np.float32)
    inside = mask > 127
    # Most, not all, of the colour difference is corrected: real face swaps leave a slight mismatch.
    source += (target[inside].mean(0) - source[inside].mean(0)) * rng.uniform(0.8, 0.95)

    factor = rng.uniform(0.45, 0.7)
    small = cv2.resize(source, (max(8, round(w * factor)), max(8, round(h * factor))), interpolation=cv2.INTER_AREA)
    upsample = cv2.INTER_LINEAR if rng.random() < 0.5 else cv2.INTER_CUBIC
    resampled = cv2.resize(small, (w, h), interpolation=upsample)

    fake = _to_uint8(resampled * soft + target * (1 - soft))
    q1 = int(rng.integers(60, 81))
    q2 = int(rng.integers(85, 96))
    return jpeg_round_trip(jpeg_round_trip(fake, q1), q2)


def manipulate_soft_blend(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Database B fake: blend a colour-shifted, slightly warped, smoothed face through a feathered mask.

    The face region is replaced by a version of itself with a small affine warp (rotation, scale,
    shift), edge-preserving smoothing (bilateral filter), per-channel gain/offset and re-added grain
    that is spatially correlated (not the camera's white noise), mixed in through an elliptic mask
    feathered by a wide Gaussian; half of the fakes get one mild JPEG (q 88-97) before the caller
    saves them. No double JPEG and no hard seam.
    """
    check_rgb(img, "img")
    h, w = img.shape[:2]
    target = img.astype(np.float32)

    cx, cy = w * rng.normal(0.5, 0.01), h * rng.normal(0.55, 0.01)
    rx, ry = w * rng.uniform(0.22, 0.28), h * rng.uniform(0.28, 0.35)
    mask = np.zeros((h, w), np.float32)
    cv2.ellipse(mask, (int(cx * DRAW_ONE), int(cy * DRAW_ONE)), (int(rx * DRAW_ONE), int(ry * DRAW_ONE)), 0, 0, 360, 1.0, -1,
                cv2.LINE_8, DRAW_SHIFT)
    feather = cv2.GaussianBlur(mask, (0, 0), w * rng.uniform(0.04, 0.07))[..., None]

    matrix = cv2.getRotationMatrix2D((cx, cy), rng.uniform(-3, 3), rng.uniform(0.97, 1.03))
    matrix[:, 2] += rng.uniform(-1.5, 1.5, 2)
    warped = cv2.warpAffine(target, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    smoothed = cv2.bilateralFilter(warped, d=5, sigmaColor=float(rng.uniform(15, 35)), sigmaSpace=float(rng.uniform(2, 4)))
    shifted = smoothed * rng.uniform(0.94, 1.06, 3).astype(np.float32) + rng.uniform(-6, 6, 3).astype(np.float32)
    # Generators re-synthesise texture: grain of about the right strength but spatially correlated,
    # so high-frequency energy alone barely tells the blended face from the camera's noise.
    grain = cv2.GaussianBlur(rng.standard_normal((h, w), dtype=np.float32), (0, 0), rng.uniform(0.6, 0.9))
    shifted += (grain / max(float(grain.std()), 1e-6) * rng.uniform(1.0, 3.0))[..., None]

    fake = _to_uint8(shifted * feather + target * (1 - feather))
    if rng.random() < 0.5:
        fake = jpeg_round_trip(fake, int(rng.integers(88, 98)))
    return fake


_SPLITS = ("development", "evaluation")


def _child_rng(seed: int, *path: int) -> np.random.Generator:
    # One generator per (task, split, video): a video's content does not depend on how many others exist.
    return np.random.default_rng(np.random.SeedSequence([int(seed), *path]))


def _random_names(rng: np.random.Generator, count: int, length: int = 10) -> list[str]:
    """Distinct random lower-case names like DFDC's ("bwoekgtvne")."""
    letters = np.array(list(string.ascii_lowercase))
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < count:
        name = "".join(rng.choice(letters, length))
        if name not in seen:
            seen.add(name)
            names.append(name)
    return names


def _save_png(image: np.ndarray, path: Path) -> None:
    # Low zlib effort: the files are a little larger but written several times faster.
    Image.fromarray(image).save(path, format="PNG", compress_level=1)


def _savejpeg_round_trip(image: np.ndarray, path: Path, quality: int) -> None:
    Image.fromarray(image).save(path, format="JPEG", quality=int(quality))


def _check_count(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def _write_task1(root: Path, seed: int, counts: dict[str, int], frames_per_video: int, size: int) -> dict:
    task = root / "Task_1"
    total = sum(counts.values())
    order = np.random.default_rng(np.random.SeedSequence([seed, TASK1, 99])).permutation(total)
    # Like UADFV, the swapped-in face is always the same actor.
    actor_rng = _child_rng(seed, TASK1, 98)
    actor = draw_identity(actor_rng, "A")
    actor_frames = [render_frame(actor, pose, size) for pose in draw_poses(actor_rng, 16)]
    summary: dict[str, dict[str, int]] = {}
    start = 0
    for split_index, split in enumerate(_SPLITS):
        ids = sorted(int(i) for i in order[start:start + counts[split]])
        start += counts[split]
        for video_id in ids:
            rng = _child_rng(seed, TASK1, split_index, video_id)
            identity = draw_identity(rng, "A")
            poses = draw_poses(rng, frames_per_video)
            step = int(rng.integers(12, 21))
            real_dir = task / split / "real" / f"{video_id:04d}"
            fake_dir = task / split / "fake" / f"{video_id:04d}_fake"
            real_dir.mkdir(parents=True)
            fake_dir.mkdir(parents=True)
            for k, pose in enumerate(poses):
                # Real frames come from a compressed video: one mild JPEG pass before they were saved as PNG.
                real = jpeg_round_trip(render_frame(identity, pose, size), int(rng.integers(88, 98)))
                donor = actor_frames[int(rng.integers(len(actor_frames)))]
                fake = manipulate_resample_paste(real, rng, donor=donor)
                name = f"{k * step:03d}.png"
                _save_png(real, real_dir / name)
                _save_png(fake, fake_dir / name)
        summary[split] = {"real_videos": len(ids), "fake_videos": len(ids),
                          "real_frames": len(ids) * frames_per_video, "fake_frames": len(ids) * frames_per_video}
    return summary


def _write_task23(root: Path, seed: int, counts: dict[str, int], size: int) -> dict:
    task = root / "Task_2_3"
    names = _random_names(np.random.default_rng(np.random.SeedSequence([seed, TASK23, 99])), 2 * sum(counts.values()))
    summary: dict[str, dict[str, int]] = {}
    start = 0
    for split_index, split in enumerate(_SPLITS):
        (task / split / "real").mkdir(parents=True)
        (task / split / "fake").mkdir(parents=True)
        rows = []
        for index in range(counts[split]):
            real_name, fake_name = names[start] + ".jpg", names[start + 1] + ".jpg"
            start += 2
            rng = _child_rng(seed, TASK23, split_index, index)
            identity = draw_identity(rng, "B")
            # As in DFDC, the fake comes from another frame of the real video.
            real_frame, source_frame = (render_frame(identity, pose, size) for pose in draw_poses(rng, 2))
            fake = manipulate_soft_blend(source_frame, rng)
            _savejpeg_round_trip(real_frame, task / split / "real" / real_name, int(rng.integers(80, 94)))
            _savejpeg_round_trip(fake, task / split / "fake" / fake_name, int(rng.integers(80, 94)))
            rows.append((real_name, fake_name))
        lines = ["real,fake"] + [f"{r},{f}" for r, f in rows]
        (task / f"{split}_pairs.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        summary[split] = {"real": len(rows), "fake": len(rows)}
    return summary


def make_lab(root: str | Path, *, n_videos_dev: int = 12, n_videos_eval: int = 6, frames_per_video: int = 4,
             size: int = 128, n_t23_dev: int = 40, n_t23_eval: int = 20, t23_size: int | None = None,
             seed: int = 0, overwrite: bool = False) -> dict:
    """Write the synthetic lab (two databases) under ``root`` and return its paths and counts.

    ``root/Task_1/{development,evaluation}/{real,fake}/<video>/<frame>.png`` (database A: real videos
    ``NNNN`` and fakes ``NNNN_fake`` made frame by frame from them) and
    ``root/Task_2_3/{development,evaluation}/{real,fake}/<name>.jpg`` plus ``<split>_pairs.csv``
    (database B: one face per video, random 10-letter names, each fake made from the real of its
    row). Same seed, same bytes. ``overwrite`` replaces existing ``Task_1``/``Task_2_3`` folders
    (only those two); without it an existing non-empty one is an error.
    """
    root = Path(root)
    counts1 = {"development": _check_count(n_videos_dev, "n_videos_dev"),
               "evaluation": _check_count(n_videos_eval, "n_videos_eval")}
    counts23 = {"development": _check_count(n_t23_dev, "n_t23_dev"),
                "evaluation": _check_count(n_t23_eval, "n_t23_eval")}
    frames_per_video = _check_count(frames_per_video, "frames_per_video")
    if frames_per_video > 50:
        raise ValueError(f"frames_per_video must be <= 50 (frame names have 3 digits), got {frames_per_video}")
    if sum(counts1.values()) > 10000:
        raise ValueError("n_videos_dev + n_videos_eval must be <= 10000 (video names have 4 digits)")
    size = check_size(size)
    t23_size = size if t23_size is None else check_size(t23_size, "t23_size")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    seed = int(seed)
    if root.exists() and not root.is_dir():
        raise ValueError(f"{root}: exists and is not a directory")

    task1, task23 = root / "Task_1", root / "Task_2_3"
    for folder in (task1, task23):
        if folder.exists():
            if not overwrite and any(folder.iterdir()):
                raise FileExistsError(f"{folder}: already exists and is not empty (pass overwrite=True to replace it)")
            shutil.rmtree(folder)
    root.mkdir(parents=True, exist_ok=True)

    summary1 = _write_task1(root, seed, counts1, frames_per_video, size)
    summary23 = _write_task23(root, seed, counts23, t23_size)
    (root / "README.txt").write_text(
        "SYNTHETIC DATA - not real faces.\n"
        f"Generated procedurally by dflab.data.synthetic.make_lab(seed={seed}, n_videos_dev={counts1['development']}, "
        f"n_videos_eval={counts1['evaluation']}, frames_per_video={frames_per_video}, size={size}, "
        f"n_t23_dev={counts23['development']}, n_t23_eval={counts23['evaluation']}, t23_size={t23_size}).\n"
        "Task_1: database A (UADFV-like layout, PNG frames); fakes paste a resampled inner face from one\n"
        "  'actor' identity with a hard-ish seam, then JPEG twice (q1 60-80, q2 85-95).\n"
        "Task_2_3: database B (DFDC-like layout, one JPEG per video, <split>_pairs.csv); fakes soft-blend a\n"
        "  colour-shifted, warped, smoothed face through a feathered mask.\n"
        "Use it to exercise the pipeline only; numbers measured on it say nothing about real deepfakes.\n",
        encoding="utf-8",
    )
    return {"root": root, "task1": task1, "task23": task23, "seed": seed,
            "counts": {"Task_1": summary1, "Task_2_3": summary23}}
