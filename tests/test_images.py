from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from dflab.media import images
from dflab.media.images import ImageError, load_image


def _save(img: Image.Image, path, **kwargs):
    img.save(path, **kwargs)
    return path


def test_rgb_png_round_trip(tmp_path):
    arr = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    path = _save(Image.fromarray(arr), tmp_path / "a.png")
    out = load_image(path)
    assert out.dtype == np.uint8 and out.shape == (20, 30, 3)
    assert np.array_equal(out, arr)


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "CMYK", "I;16", "1"])
def test_every_mode_becomes_rgb_uint8(tmp_path, mode):
    rgb = Image.fromarray(np.random.default_rng(1).integers(0, 256, (16, 12, 3), dtype=np.uint8))
    if mode == "I;16":
        img = Image.fromarray((np.arange(16 * 12).reshape(16, 12) * 300).astype(np.uint16))
        fmt, suffix = "PNG", "png"
    elif mode == "CMYK":
        img, fmt, suffix = rgb.convert("CMYK"), "JPEG", "jpg"
    else:
        img, fmt, suffix = rgb.convert(mode), "PNG", "png"
    out = load_image(_save(img, tmp_path / f"x.{suffix}", format=fmt))
    assert out.shape == (16, 12, 3) and out.dtype == np.uint8
    if mode == "I;16":
        # 16-bit values are rescaled to the full 8-bit range, not clipped at 255.
        assert out.min() == 0 and out.max() == 255


def test_transparent_pixels_composite_on_white(tmp_path):
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)  # fully transparent black
    out = load_image(_save(Image.fromarray(rgba, "RGBA"), tmp_path / "t.png"))
    assert (out == 255).all()


def test_exif_orientation_is_applied(tmp_path):
    arr = np.zeros((10, 20, 3), dtype=np.uint8)
    arr[:, :5] = 255  # white band on the left of a landscape image
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    out = load_image(_save(img, tmp_path / "r.jpg", exif=exif, quality=95))
    assert out.shape == (20, 10, 3)  # portrait once oriented
    assert out[:5].mean() > 200 and out[-5:].mean() < 50  # the band is now at the top


@pytest.mark.parametrize("content,reason", [
    (b"", "empty file"),
    (b"hello, I am text", "not an image"),
])
def test_bad_files_name_the_file_and_the_reason(tmp_path, content, reason):
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    with pytest.raises(ImageError) as info:
        load_image(path)
    message = str(info.value)
    assert str(path) in message and reason in message and "\n" not in message


def test_truncated_file(tmp_path):
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buffer, "PNG")
    path = tmp_path / "cut.png"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(ImageError, match="cut.png"):
        load_image(path)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ImageError, match="file not found"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(ImageError, match="folder"):
        load_image(tmp_path)


def test_decompression_bomb_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "MAX_PIXELS", 100)
    path = _save(Image.new("RGB", (20, 20)), tmp_path / "big.png")
    with pytest.raises(ImageError, match="too large"):
        load_image(path)


def test_arrays_pass_through_and_convert():
    grey = np.full((5, 6), 7, dtype=np.uint8)
    assert load_image(grey).shape == (5, 6, 3)
    floats = np.full((5, 6, 3), 0.5, dtype=np.float32)
    assert load_image(floats).max() == 128
    with pytest.raises(ImageError):
        load_image(np.zeros((5,)))
