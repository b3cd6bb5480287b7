"""Synthetic deepfake lab: procedurally drawn faces, two face manipulations, and the lab layout on disk.

Used by ``dflab demo`` and the end-to-end tests, where the real databases (UADFV, DFDC) are not
available. Nothing is downloaded: every image is drawn with numpy and OpenCV and encoded with Pillow.

* A "video" is one identity (person, room, camera) filmed for a few frames: pose, lighting, eye and
  mouth state and sensor noise vary slightly from frame to frame (:func:`make_video_frames`).
* Database A (``Task_1``, UADFV-like, PNG frames): real frames went through one mild "video codec"
  JPEG; fakes paste a resampled inner face from another identity with a hard-ish seam and are then
  JPEG-compressed twice (:func:`manipulate_resample_paste`).
* Database B (``Task_2_3``, DFDC-like, one JPEG per video): a different room/camera style, and fakes
  soft-blend a colour-shifted, slightly warped and smoothed face with a feathered mask
  (:func:`manipulate_soft_blend`); reals and fakes are saved with the same JPEG quality range.

The traces differ on purpose (double JPEG + resampling + seam vs. feathered smoothing with re-added
grain), so a detector trained on A loses accuracy on B: the inter-database drop the lab's Task 2
measures.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

DOMAINS = ("A", "B")


# Base skin tones (linear-ish RGB in [0, 1]) from light to dark; an identity interpolates two neighbours.
_SKIN_TONES = np.array([
    [0.98, 0.86, 0.76], [0.95, 0.78, 0.66], [0.90, 0.70, 0.56], [0.80, 0.59, 0.44],
    [0.66, 0.46, 0.32], [0.50, 0.34, 0.23], [0.36, 0.24, 0.16],
], dtype=np.float32)


_HAIR_COLOURS = np.array([
    [0.07, 0.05, 0.04], [0.18, 0.11, 0.07], [0.33, 0.21, 0.12], [0.72, 0.58, 0.34],
    [0.52, 0.24, 0.11], [0.58, 0.57, 0.55],
], dtype=np.float32)


_IRIS_COLOURS = np.array([
    [0.30, 0.18, 0.09], [0.18, 0.10, 0.05], [0.25, 0.42, 0.62], [0.30, 0.45, 0.30], [0.45, 0.35, 0.18],
], dtype=np.float32)


# Backgrounds: database A are varied, rather dark "YouTube" rooms; database B are bright staged rooms.
_BG_PALETTE = {
    "A": np.array([[0.15, 0.18, 0.25], [0.35, 0.30, 0.25], [0.20, 0.30, 0.20], [0.45, 0.45, 0.50],
                   [0.55, 0.40, 0.30], [0.10, 0.10, 0.12], [0.30, 0.35, 0.45]], dtype=np.float32),
    "B": np.array([[0.80, 0.78, 0.72], [0.70, 0.72, 0.75], [0.85, 0.80, 0.70], [0.60, 0.62, 0.58],
                   [0.75, 0.70, 0.78]], dtype=np.float32),
}


@dataclass(frozen=True)
class FaceIdentity:
    """What stays fixed across the frames of one video: the person, the room and the camera.

    Geometry is in fractions of the image side (face centre, semi-axes) or of the face semi-axes
    (feature offsets), so one identity renders at any size.
    """

    domain: str
    skin: tuple[float, float, float]
    hair: tuple[float, float, float]
    iris: tuple[float, float, float]
    lips: tuple[float, float, float]
    shirt: tuple[float, float, float]
    bg_colours: tuple[tuple[float, float, float], tuple[float, float, float]]
    bg_angle: float
    face_cx: float
    face_cy: float
    face_a: float
    face_b: float
    squareness: float
    jaw: float
    eye_dx: float
    eye_dy: float
    eye_w: float
    eye_h: float
    iris_r: float
    brow_dy: float
    brow_thickness: float
    brow_tilt: float
    nose_len: float
    nose_w: float
    mouth_dy: float
    mouth_w: float
    lip_h: float
    smile: float
    hair_volume: float
    hairline: float
    long_hair: bool
    light_az: float
    light_el: float
    ambient: float
    skin_texture: float
    camera_noise: float
    camera_blur: float
    texture_seed: int
    background_seed: int


@dataclass(frozen=True)
class FramePose:
    """What changes from frame to frame of one video (small: the same person keeps talking)."""

    dx: float
    dy: float
    scale: float
    angle_deg: float
    light_az: float
    light_el: float
    brightness: float
    eye_open: float
    gaze_x: float
    mouth_open: float
    focus: float
    noise_seed: int


def _colour(values) -> tuple[float, float, float]:
    return tuple(float(v) for v in np.clip(values, 0.0, 1.0))  # type: ignore[return-value]


def _check_domain(domain: str) -> None:
    if domain not in DOMAINS:
        raise ValueError(f"domain must be one of {DOMAINS}, got {domain!r}")


def check_size(size: int, name: str = "size") -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 32:
        raise ValueError(f"{name} must be an integer >= 32 (pixels), got {size!r}")
    return int(size)


def check_rgb(img: np.ndarray, name: str) -> np.ndarray:
    if not isinstance(img, np.ndarray) or img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        shape = getattr(img, "shape", None)
        dtype = getattr(img, "dtype", type(img).__name__)
        raise ValueError(f"{name}: expected an RGB uint8 array of shape (H, W, 3), got shape {shape} dtype {dtype}")
    if min(img.shape[:2]) < 32:
        raise ValueError(f"{name}: image {img.shape[1]}x{img.shape[0]} is too small (need >= 32x32)")
    return img


def draw_identity(rng: np.random.Generator, domain: str = "A") -> FaceIdentity:
    """Draw one person + room + camera. ``domain`` "A" (UADFV-like) or "B" (DFDC-like) sets the room style."""
    _check_domain(domain)
    tone = rng.uniform(0, len(_SKIN_TONES) - 1)
    lo = int(tone)
    skin = _SKIN_TONES[lo] * (1 - (tone - lo)) + _SKIN_TONES[min(lo + 1, len(_SKIN_TONES) - 1)] * (tone - lo)
    skin = skin * rng.uniform(0.95, 1.05, 3)
    hair = _HAIR_COLOURS[rng.integers(len(_HAIR_COLOURS))] * rng.uniform(0.85, 1.15, 3)
    iris = _IRIS_COLOURS[rng.integers(len(_IRIS_COLOURS))] * rng.uniform(0.85, 1.15, 3)
    lips = skin * np.array([0.86, 0.55, 0.55]) + np.array([0.08, 0.0, 0.02]) * rng.uniform(0.5, 1.5)
    shirt = rng.uniform(0.05, 0.9, 3)
    palette = _BG_PALETTE[domain]
    bg_pair = palette[rng.choice(len(palette), size=2, replace=False)] * rng.uniform(0.85, 1.15, (2, 3))
    if domain == "A":
        light_el, ambient, noise, blur = rng.uniform(0.1, 0.6), rng.uniform(0.35, 0.55), rng.uniform(1.5, 3.5), rng.uniform(0.45, 0.8)
    else:  # staged, evenly lit rooms, softer camera (DFDC crops are often upscaled from small faces)
        light_el, ambient, noise, blur = rng.uniform(0.3, 0.8), rng.uniform(0.5, 0.7), rng.uniform(1.0, 2.5), rng.uniform(0.7, 1.1)
    return FaceIdentity(
        domain=domain,
        skin=_colour(skin), hair=_colour(hair), iris=_colour(iris), lips=_colour(lips), shirt=_colour(shirt),
        bg_colours=(_colour(bg_pair[0]), _colour(bg_pair[1])),
        bg_angle=float(rng.uniform(0, np.pi)),
        face_cx=float(rng.normal(0.5, 0.01)),
        face_cy=float(rng.normal(0.52, 0.012)),
        face_a=float(rng.uniform(0.26, 0.31)),
        face_b=float(rng.uniform(0.34, 0.39)),
        squareness=float(rng.uniform(2.0, 2.6)),
        jaw=float(rng.uniform(0.1, 0.3)),
        eye_dx=float(rng.uniform(0.36, 0.44)),
        eye_dy=float(rng.uniform(-0.16, -0.06)),
        eye_w=float(rng.uniform(0.16, 0.21)),
        eye_h=float(rng.uniform(0.055, 0.08)),
        iris_r=float(rng.uniform(0.055, 0.07)),
        brow_dy=float(rng.uniform(0.15, 0.22)),
        brow_thickness=float(rng.uniform(0.018, 0.035)),
        brow_tilt=float(rng.uniform(-8, 8)),
        nose_len=float(rng.uniform(0.22, 0.32)),
        nose_w=float(rng.uniform(0.13, 0.19)),
        mouth_dy=float(rng.uniform(0.5, 0.6)),
        mouth_w=float(rng.uniform(0.3, 0.42)),
        lip_h=float(rng.uniform(0.03, 0.05)),
        smile=float(rng.uniform(-0.01, 0.05)),
        hair_volume=float(rng.uniform(0.02, 0.2)),
        hairline=float(rng.uniform(0.5, 0.72)),
        long_hair=bool(rng.random() < 0.4),
        light_az=float(rng.uniform(-0.8, 0.8)),
        light_el=float(light_el),
        ambient=float(ambient),
        skin_texture=float(rng.uniform(0.02, 0.045)),
        camera_noise=float(noise),
        camera_blur=float(blur),
        texture_seed=int(rng.integers(2**31)),
        background_seed=int(rng.integers(2**31)),
    )


def _draw_pose(rng: np.random.Generator, previous: FramePose | None) -> FramePose:
    # Pose is a damped random walk so consecutive frames of one video look alike.
    keep = 0.0 if previous is None else 0.6
    p = previous or FramePose(0, 0, 1, 0, 0, 0, 1, 1, 0, 0, 1, 0)
    return FramePose(
        dx=keep * p.dx + float(rng.normal(0, 0.012)),
        dy=keep * p.dy + float(rng.normal(0, 0.010)),
        scale=1 + keep * (p.scale - 1) + float(rng.normal(0, 0.02)),
        angle_deg=keep * p.angle_deg + float(rng.normal(0, 3.0)),
        light_az=keep * p.light_az + float(rng.normal(0, 0.12)),
        light_el=keep * p.light_el + float(rng.normal(0, 0.06)),
        brightness=float(rng.normal(1.0, 0.04)),
        eye_open=float(rng.uniform(0.1, 0.3) if rng.random() < 0.08 else rng.uniform(0.8, 1.05)),
        gaze_x=float(np.clip(keep * p.gaze_x + rng.normal(0, 0.3), -0.8, 0.8)),
        mouth_open=float(max(0.0, rng.normal(0.1, 0.25))),
        focus=float(rng.uniform(0.9, 1.15)),
        noise_seed=int(rng.integers(2**31)),
    )


def draw_poses(rng: np.random.Generator, n_frames: int) -> list[FramePose]:
    """Per-frame variation for ``n_frames`` consecutive frames (a damped random walk)."""
    if isinstance(n_frames, bool) or not isinstance(n_frames, (int, np.integer)) or n_frames < 1:
        raise ValueError(f"n_frames must be an integer >= 1, got {n_frames!r}")
    poses: list[FramePose] = []
    previous = None
    for _ in range(int(n_frames)):
        previous = _draw_pose(rng, previous)
        poses.append(previous)
    return poses


DRAW_SHIFT = 4  # OpenCV sub-pixel bits for drawing coordinates


# Drawing resolution / output resolution. 1 keeps generation fast (anti-aliased OpenCV drawing and the
# lens blur already avoid jaggies); 2 looks marginally smoother at four times the cost.
_SUPERSAMPLE = 1


DRAW_ONE = 1 << DRAW_SHIFT


@functools.lru_cache(maxsize=8)
def _grid(side: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32)
    yy.setflags(write=False)
    xx.setflags(write=False)
    return yy, xx


@dataclass
class _Mask:
    """A soft mask in [0, 1] stored only over its bounding box (most face parts are small)."""

    y0: int
    x0: int
    m: np.ndarray

    @property
    def box(self) -> tuple[slice, slice]:
        return slice(self.y0, self.y0 + self.m.shape[0]), slice(self.x0, self.x0 + self.m.shape[1])

    def __mul__(self, other: "_Mask | float") -> "_Mask":
        if not isinstance(other, _Mask):
            return _Mask(self.y0, self.x0, self.m * np.float32(other))
        # Product restricted to this mask's box; outside ``other``'s box the product is 0.
        out = np.zeros_like(self.m)
        ys, xs = self.box
        oy0, ox0 = max(ys.start, other.y0), max(xs.start, other.x0)
        oy1, ox1 = min(ys.stop, other.y0 + other.m.shape[0]), min(xs.stop, other.x0 + other.m.shape[1])
        if oy1 > oy0 and ox1 > ox0:
            out[oy0 - self.y0:oy1 - self.y0, ox0 - self.x0:ox1 - self.x0] = (
                self.m[oy0 - self.y0:oy1 - self.y0, ox0 - self.x0:ox1 - self.x0]
                * other.m[oy0 - other.y0:oy1 - other.y0, ox0 - other.x0:ox1 - other.x0])
        return _Mask(self.y0, self.x0, out)

    def full(self, side: int) -> np.ndarray:
        out = np.zeros((side, side), np.float32)
        out[self.box] = self.m
        return out


def _box(side: int, x_lo: float, y_lo: float, x_hi: float, y_hi: float) -> tuple[int, int, int, int]:
    x0, y0 = max(0, int(np.floor(x_lo))), max(0, int(np.floor(y_lo)))
    x1, y1 = min(side, int(np.ceil(x_hi)) + 1), min(side, int(np.ceil(y_hi)) + 1)
    return x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)


def _finish(mask: np.ndarray, x0: int, y0: int, blur: float) -> _Mask:
    out = mask.astype(np.float32) / 255.0
    if blur > 0:
        out = cv2.GaussianBlur(out, (0, 0), blur)
    return _Mask(y0, x0, out)


def _ellipse(side: int, centre, axes, angle: float = 0.0, start: float = 0.0, end: float = 360.0,
             thickness: float = -1, blur: float = 0.0) -> _Mask:
    """Anti-aliased ellipse (filled, or an arc of ``thickness`` px), optionally softened by a Gaussian."""
    thick = -1 if thickness < 0 else max(1, int(round(thickness)))
    reach = max(axes) + max(thick, 0) + 3 * blur + 2
    x0, y0, x1, y1 = _box(side, centre[0] - reach, centre[1] - reach, centre[0] + reach, centre[1] + reach)
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    c = (int(round((centre[0] - x0) * DRAW_ONE)), int(round((centre[1] - y0) * DRAW_ONE)))
    ax = (max(1, int(round(axes[0] * DRAW_ONE))), max(1, int(round(axes[1] * DRAW_ONE))))
    cv2.ellipse(mask, c, ax, float(angle), float(start), float(end), 255, thick, cv2.LINE_AA, DRAW_SHIFT)
    return _finish(mask, x0, y0, blur)


def _polygon(side: int, points, blur: float = 0.0) -> _Mask:
    points = np.asarray(points, np.float64)
    pad = 3 * blur + 2
    x0, y0, x1, y1 = _box(side, points[:, 0].min() - pad, points[:, 1].min() - pad,
                          points[:, 0].max() + pad, points[:, 1].max() + pad)
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    pts = np.round((points - (x0, y0)) * DRAW_ONE).astype(np.int32).reshape(1, -1, 2)
    cv2.fillPoly(mask, pts, 255, cv2.LINE_AA, DRAW_SHIFT)
    return _finish(mask, x0, y0, blur)


def _line(side: int, p0, p1, thickness: float, blur: float = 0.0) -> _Mask:
    pad = thickness + 3 * blur + 2
    x0, y0, x1, y1 = _box(side, min(p0[0], p1[0]) - pad, min(p0[1], p1[1]) - pad,
                          max(p0[0], p1[0]) + pad, max(p0[1], p1[1]) + pad)
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    a = (int(round((p0[0] - x0) * DRAW_ONE)), int(round((p0[1] - y0) * DRAW_ONE)))
    b = (int(round((p1[0] - x0) * DRAW_ONE)), int(round((p1[1] - y0) * DRAW_ONE)))
    cv2.line(mask, a, b, 255, max(1, int(round(thickness))), cv2.LINE_AA, DRAW_SHIFT)
    return _finish(mask, x0, y0, blur)


def _paint(canvas: np.ndarray, mask: _Mask, colour) -> None:
    """canvas = canvas * (1 - mask) + colour * mask inside the mask's box; colour is RGB or an image."""
    box = mask.box
    colour = np.asarray(colour, np.float32)
    if colour.ndim == 3:
        colour = colour[box]
    m = mask.m[..., None]
    region = canvas[box]
    region += (colour - region) * m


def _darken(canvas: np.ndarray, mask: _Mask, amount: float) -> None:
    canvas[mask.box] *= (1.0 - amount * mask.m)[..., None]


def _lighten(canvas: np.ndarray, mask: _Mask, amount: float) -> None:
    canvas[mask.box] += (amount * mask.m)[..., None]


def _cover(alpha: np.ndarray, mask: _Mask) -> None:
    box = mask.box
    np.maximum(alpha[box], mask.m, out=alpha[box])


def _smooth_noise(rng: np.random.Generator, side: int, cells: int, channels: int = 1) -> np.ndarray:
    """Low-frequency noise: a cells x cells random field upsampled (bicubic) to side x side, ~unit std."""
    small = rng.standard_normal((cells, cells, channels), dtype=np.float32)
    big = cv2.resize(small, (side, side), interpolation=cv2.INTER_CUBIC)
    return big.reshape(side, side, channels)


def _unit_std(noise: np.ndarray) -> np.ndarray:
    return noise / max(float(noise.std()), 1e-6)


@functools.lru_cache(maxsize=4)
def _background(identity: FaceIdentity, side: int) -> np.ndarray:
    """The room behind the person: fixed for a video (a static camera), so cached per identity."""
    rng = np.random.default_rng(identity.background_seed)
    yy, xx = _grid(side)
    direction = np.array([np.cos(identity.bg_angle), np.sin(identity.bg_angle)], np.float32)
    # Gradient parameter t in [0, 1] along ``direction`` across the square (its extremes are corners).
    corners = np.array([0.0, direction[0], direction[1], direction[0] + direction[1]]) * (side - 1)
    t = (xx * direction[0] + yy * direction[1] - corners.min()) / max(float(np.ptp(corners)), 1e-6)
    c0, c1 = (np.asarray(c, np.float32) for c in identity.bg_colours)
    bg = c0 + (c1 - c0) * t[..., None]
    bg *= 1 + 0.06 * _smooth_noise(rng, side, 5, 3)
    mean_colour = (c0 + c1) / 2
    # Out-of-focus objects of the room (shelves, windows, lamps): blurred shapes, depth of field.
    for _ in range(int(rng.integers(2, 6))):
        colour = np.clip(mean_colour * rng.uniform(0.5, 1.6, 3), 0, 1)
        cx, cy = rng.uniform(0, side, 2)
        w, h = rng.uniform(0.05, 0.35, 2) * side
        blur = side * rng.uniform(0.01, 0.04)
        if rng.random() < 0.5:
            mask = _polygon(side, [[cx - w, cy - h], [cx + w, cy - h], [cx + w, cy + h], [cx - w, cy + h]], blur)
        else:
            mask = _ellipse(side, (cx, cy), (w, h), blur=blur)
        _paint(bg, mask * rng.uniform(0.4, 0.9), colour)
    # Fine wall texture, fixed for the room.
    bg *= 1 + 0.02 * cv2.GaussianBlur(rng.standard_normal((side, side), dtype=np.float32), (0, 0), side / 256.0)[..., None]
    bg.setflags(write=False)
    return bg


@functools.lru_cache(maxsize=4)
def _textures(identity: FaceIdentity, side: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float]:
    """Hair strands and skin (pores + blotches) images and head normals, fixed to the person; cached."""
    rng = np.random.default_rng(identity.texture_seed)
    hair = np.asarray(identity.hair, np.float32)
    skin = np.asarray(identity.skin, np.float32)
    strands = _unit_std(cv2.GaussianBlur(rng.standard_normal((side, side), dtype=np.float32), (0, 0),
                                         sigmaX=0.7 * side / 256.0, sigmaY=side * 0.03))
    hair_img = hair * (1 + 0.22 * strands[..., None]) + 0.03 * np.clip(strands, 0, None)[..., None]
    pores = _unit_std(cv2.GaussianBlur(rng.standard_normal((side, side), dtype=np.float32), (0, 0), 0.8 * side / 256.0))
    blotches = _smooth_noise(rng, side, 7)
    skin_img = skin * (1 + identity.skin_texture * pores[..., None] + 0.035 * blotches)
    wave_freq, wave_phase = float(rng.uniform(4, 9)), float(rng.uniform(0, 2 * np.pi))
    # Unit normals of a head-shaped ellipsoid, for the per-frame Lambert shading.
    yy, xx = _grid(side)
    u = np.clip((xx - identity.face_cx * side) / (identity.face_a * side * 1.1), -1, 1)
    v = np.clip((yy - identity.face_cy * side) / (identity.face_b * side * 1.1), -1, 1)
    nz = np.sqrt(np.clip(1 - 0.85 * (u ** 2 + v ** 2), 0.05, 1))
    normals = np.stack([u, v, nz], -1) / np.sqrt(u ** 2 + v ** 2 + nz ** 2)[..., None]
    for image in (hair_img, skin_img, normals):
        image.setflags(write=False)
    return hair_img, skin_img, normals, wave_freq, wave_phase


def _head_layer(identity: FaceIdentity, pose: FramePose, side: int) -> tuple[np.ndarray, np.ndarray]:
    """The head (hair, face, neck, shirt) in canonical position: RGB float image and alpha."""
    hair_img, skin_img, normals, wave_freq, wave_phase = _textures(identity, side)
    s = float(side)
    pix = s / 256.0  # one pixel of a 256-px canvas: fixed edge softness scales with the drawing size
    yy, xx = _grid(side)
    cx, cy = identity.face_cx * s, identity.face_cy * s
    a, b = identity.face_a * s, identity.face_b * s
    skin = np.asarray(identity.skin, np.float32)
    hair = np.asarray(identity.hair, np.float32)

    rgb = np.zeros((side, side, 3), np.float32)
    alpha = np.zeros((side, side), np.float32)

    # Shirt and shoulders, then the neck.
    shirt = _ellipse(side, (cx, s * 1.08), (a * 2.3, s * 0.3), blur=1.0 * pix)
    _paint(rgb, shirt, identity.shirt)
    _cover(alpha, shirt)
    neck = _polygon(side, [[cx - 0.55 * a, cy + 0.4 * b], [cx + 0.55 * a, cy + 0.4 * b],
                           [cx + 0.62 * a, s * 0.86], [cx - 0.62 * a, s * 0.86]], blur=1.0 * pix)
    _paint(rgb, neck, skin * 0.72)
    _cover(alpha, neck)

    # Back hair (behind the face); long hair falls to the shoulders.
    vol = identity.hair_volume
    back = _ellipse(side, (cx, cy - 0.1 * b), (a * (1.1 + vol), b * (1.0 + vol * 0.6)), blur=1.5 * pix)
    _paint(rgb, back, hair_img * 0.8)
    _cover(alpha, back)
    if identity.long_hair:
        fall = _polygon(side, [[cx - a * (1.05 + vol), cy - 0.1 * b], [cx + a * (1.05 + vol), cy - 0.1 * b],
                               [cx + a * (1.2 + vol), cy + 1.15 * b], [cx - a * (1.2 + vol), cy + 1.15 * b]], blur=1.5 * pix)
        _paint(rgb, fall, hair_img * 0.8)
        _cover(alpha, fall)

    # Ears.
    for sign in (-1, 1):
        ear = _ellipse(side, (cx + sign * a * 0.97, cy + 0.02 * b), (a * 0.13, b * 0.2), blur=0.8 * pix)
        _paint(rgb, ear, skin * 0.9)
        _cover(alpha, ear)

    # Face outline: a superellipse whose lower half narrows towards the chin.
    t = np.linspace(0, 2 * np.pi, 180, endpoint=False)
    ct, st = np.cos(t), np.sin(t)
    e = 2.0 / identity.squareness
    ox = np.sign(ct) * np.abs(ct) ** e
    oy = np.sign(st) * np.abs(st) ** e
    ox = ox * np.where(oy > 0, 1 - identity.jaw * oy ** 2, 1.0)
    face = _polygon(side, np.stack([cx + a * ox, cy + b * oy], 1), blur=0.8 * pix)
    _paint(rgb, face, skin_img)
    _cover(alpha, face)

    # Cheeks: a faint warm flush.
    for sign in (-1, 1):
        cheek = _ellipse(side, (cx + sign * 0.5 * a, cy + 0.25 * b), (0.22 * a, 0.14 * b), blur=s * 0.03)
        _paint(rgb, cheek * face * 0.18, identity.lips)

    # Eyes: socket shadow, sclera, iris, pupil, catch-light, lids; then brows.
    ey = cy + identity.eye_dy * b
    ew, eh = identity.eye_w * a, identity.eye_h * b * np.clip(pose.eye_open, 0.05, 1.1)
    for sign in (-1, 1):
        ex = cx + sign * identity.eye_dx * a
        socket = _ellipse(side, (ex, ey - 0.02 * b), (ew * 1.5, identity.eye_h * b * 2.3), blur=s * 0.02)
        _darken(rgb, socket, 0.16)
        sclera = _ellipse(side, (ex, ey), (ew, eh), blur=0.6 * pix)
        _paint(rgb, sclera, (0.9, 0.88, 0.85))
        ix = ex + pose.gaze_x * ew * 0.35
        ir = identity.iris_r * a
        _paint(rgb, _ellipse(side, (ix, ey), (ir, ir), blur=0.5 * pix) * sclera, identity.iris)
        _paint(rgb, _ellipse(side, (ix, ey), (ir * 0.45, ir * 0.45), blur=0.5 * pix) * sclera, (0.03, 0.03, 0.03))
        glint = _ellipse(side, (ix + ir * 0.35, ey - ir * 0.35), (ir * 0.18, ir * 0.18), blur=0.4 * pix) * sclera
        _paint(rgb, glint, (0.97, 0.97, 0.97))
        lid = _ellipse(side, (ex, ey), (ew * 1.04, eh * 1.05), start=180, end=360,
                       thickness=max(pix, s * 0.012), blur=0.6 * pix)
        _paint(rgb, lid, hair * 0.4 + 0.05)
        crease = _ellipse(side, (ex, ey - eh * 0.3), (ew * 1.05, identity.eye_h * b * 1.4), start=200, end=340,
                          thickness=max(pix, s * 0.006), blur=1.0 * pix)
        _darken(rgb, crease, 0.15)
        brow = _ellipse(side, (ex, ey - identity.brow_dy * b + identity.eye_h * b),
                        (ew * 1.25, identity.eye_h * b * 1.6), angle=sign * identity.brow_tilt, start=195, end=345,
                        thickness=max(pix, identity.brow_thickness * s), blur=1.0 * pix)
        _paint(rgb, brow * 0.9, hair_img * 0.9)

    # Nose: a shadowed side of the bridge, a lit tip, nostrils and the shadow under it.
    shadow_side = -1.0 if identity.light_az + pose.light_az > 0 else 1.0
    tip_y = cy + identity.nose_len * b
    bridge = _line(side, (cx + shadow_side * 0.1 * a, ey + 0.05 * b),
                   (cx + shadow_side * identity.nose_w * 0.75 * a, tip_y - 0.02 * b), s * 0.025, blur=s * 0.012)
    _darken(rgb, bridge, 0.3)
    _lighten(rgb, _line(side, (cx - shadow_side * 0.03 * a, ey + 0.1 * b), (cx - shadow_side * 0.03 * a, tip_y - 0.06 * b),
                        s * 0.012, blur=s * 0.01), 0.05)
    _lighten(rgb, _ellipse(side, (cx, tip_y - 0.01 * b), (identity.nose_w * 0.6 * a, 0.06 * b), blur=s * 0.012), 0.07)
    _darken(rgb, _ellipse(side, (cx, tip_y + 0.075 * b), (identity.nose_w * a, 0.04 * b), blur=s * 0.01), 0.25)
    for sign in (-1, 1):
        wing = _ellipse(side, (cx + sign * identity.nose_w * 0.85 * a, tip_y), (identity.nose_w * 0.3 * a, 0.07 * b),
                        start=-60 if sign > 0 else 60, end=120 if sign > 0 else 300,
                        thickness=max(pix, s * 0.007), blur=0.9 * pix)
        _darken(rgb, wing, 0.3)
        nostril = _ellipse(side, (cx + sign * identity.nose_w * 0.5 * a, tip_y + 0.04 * b),
                           (identity.nose_w * 0.25 * a, 0.025 * b), angle=sign * 20, blur=0.8 * pix)
        _darken(rgb, nostril, 0.55)

    # Mouth: lips, an opening that varies per frame, the line between the lips.
    my = cy + identity.mouth_dy * b
    mw, lh = identity.mouth_w * a, identity.lip_h * b
    gap = lh * 1.2 * pose.mouth_open
    _paint(rgb, _ellipse(side, (cx, my - gap / 2), (mw, lh), start=180, end=360, blur=0.7 * pix), identity.lips)
    _paint(rgb, _ellipse(side, (cx, my + gap / 2), (mw * 0.85, lh * 1.3), start=0, end=180, blur=0.7 * pix), identity.lips)
    if gap > 0.5:
        inside = _ellipse(side, (cx, my), (mw * 0.8, gap / 2 + 0.5), blur=0.6 * pix)
        _paint(rgb, inside, (0.12, 0.04, 0.04))
        _paint(rgb, _ellipse(side, (cx, my - gap / 4), (mw * 0.55, gap / 4 + 0.3), blur=0.5 * pix) * inside, (0.85, 0.83, 0.78))
    line = _ellipse(side, (cx, my - identity.smile * b), (mw, max(identity.smile * b, 0.5) + 0.5),
                    start=0 if identity.smile >= 0 else 180, end=180 if identity.smile >= 0 else 360,
                    thickness=max(pix, s * 0.007), blur=0.6 * pix)
    _darken(rgb, line, 0.5 if gap <= 0.5 else 0.15)
    _lighten(rgb, _ellipse(side, (cx, my + gap / 2 + lh * 0.5), (mw * 0.35, lh * 0.25), blur=s * 0.006), 0.07)

    # Fringe: hair over the forehead with a wavy hairline.
    front = _ellipse(side, (cx, cy - 0.55 * b), (a * 1.06, b * 0.55), blur=1.0 * pix)
    ys, xs = front.box
    wave = np.sin((xx[ys, xs] - cx) / a * wave_freq + wave_phase) * b * 0.035
    front.m *= np.clip((cy - identity.hairline * b + wave - yy[ys, xs]) / (2.0 * pix) + 0.5, 0, 1)
    _paint(rgb, front, hair_img)
    _cover(alpha, front)

    # Lighting: Lambert shading on a head-shaped ellipsoid, plus a soft specular sheen on the skin.
    az, el = identity.light_az + pose.light_az, identity.light_el + pose.light_el
    light = np.array([np.sin(az) * np.cos(el), -np.sin(el), np.cos(az) * np.cos(el)], np.float32)
    lambert = np.clip(normals @ light, 0, 1)
    rgb *= (identity.ambient + (1 - identity.ambient) * lambert)[..., None]
    ys, xs = face.box
    rgb[ys, xs] += (0.12 * lambert[ys, xs] ** 12 * face.m)[..., None]
    return rgb, alpha


def render_frame(identity: FaceIdentity, pose: FramePose, size: int = 128) -> np.ndarray:
    """One camera frame (RGB uint8, size x size) of ``identity`` in ``pose``.

    The person is drawn in a canonical pose, moved by the frame's affine pose over the static room,
    then slightly blurred (lens) and given signal-dependent sensor noise (read + shot noise).
    """
    size = check_size(size)
    side = _SUPERSAMPLE * size
    canvas = _background(identity, side)
    head, alpha = _head_layer(identity, pose, side)
    cx, cy = identity.face_cx * side, identity.face_cy * side
    matrix = cv2.getRotationMatrix2D((cx, cy), pose.angle_deg, pose.scale)
    matrix[:, 2] += (pose.dx * side, pose.dy * side)
    head = cv2.warpAffine(head, matrix, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    alpha = cv2.warpAffine(alpha, matrix, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    # The whole person (head, neck, shirt reaching below the frame) moves; the room stays.
    canvas = canvas * (1 - alpha[..., None]) + head * alpha[..., None]
    canvas *= pose.brightness
    image = canvas if side == size else cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA)
    image = cv2.GaussianBlur(image, (0, 0), identity.camera_blur * pose.focus)
    noise_rng = np.random.default_rng(pose.noise_seed)
    sigma = (identity.camera_noise + 4.0 * np.sqrt(np.clip(image, 0, 1))) / 255.0  # read + shot noise
    image = image + sigma * noise_rng.standard_normal(image.shape, dtype=np.float32)
    return np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)


def make_video_frames(rng: np.random.Generator, n_frames: int, size: int = 128, *,
                      domain: str = "A", identity: FaceIdentity | None = None) -> list[np.ndarray]:
    """``n_frames`` frames of one synthetic video: one identity, small per-frame changes."""
    size = check_size(size)
    if identity is None:
        identity = draw_identity(rng, domain)
    return [render_frame(identity, pose, size) for pose in draw_poses(rng, n_frames)]


def make_face(rng: np.random.Generator, size: int = 128, *, domain: str = "A") -> np.ndarray:
    """One face-like RGB uint8 image (size x size) of a freshly drawn identity."""
    return make_video_frames(rng, 1, size, domain=domain)[0]


TASK1, TASK23 = 1, 2
