"""Metadata inspection of an image or video file, as a forensic analyst reads it (``dflab inspect``).

For images (Pillow):

* EXIF fields that matter (camera make/model, software, dates, orientation), XMP (creator tool, dates,
  the editing history's software agents), PNG text chunks, an ICC profile;
* the EXIF thumbnail: present or not, and whether it still shows the picture (an edited picture often
  keeps the camera's thumbnail of the original): the picture is shrunk to the thumbnail's size and
  compared (PSNR of the grey levels; a match is >= :data:`THUMBNAIL_MATCH_PSNR` dB);
* JPEG quantisation tables, the quality they correspond to on the IJG (libjpeg) scale (the quality
  whose scaled Annex K tables are closest), and whether they are exactly IJG's tables at that quality
  (libjpeg, libjpeg-turbo, Pillow, OpenCV, most web tools), or an encoder's own (cameras, Photoshop);
* double JPEG compression: a picture compressed twice with different tables has periodic peaks and
  gaps in the histograms of its quantised DCT coefficients (Lukáš & Fridrich 2003; Popescu & Farid
  2004). :func:`double_compression` measures that periodicity per low-frequency coefficient.

For videos (PyAV): container format, codec, profile, pixel format, frame rate, size, rotation, bit
rate, duration, the encoder tags (``encoder``, ``handler_name``, ``creation_time``, ...).

For both: C2PA content credentials, read and verified with ``c2pa-python`` ("none" when absent).

The ``metadata-gb`` detector (:mod:`dflab.detectors.handcrafted.metadata`) turns an inspection into numbers.
"""

from __future__ import annotations

import io
import json
import math
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import ExifTags, Image, UnidentifiedImageError

from dflab.media.formats import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS
from dflab.media.images import MAX_PIXELS, ImageError
from dflab.media.jpeg_forensics import DOUBLE_JPEG_THRESHOLD, double_compression, quality_estimate

#: Thumbnail PSNR (dB, grey levels) at or above which the thumbnail is the picture shrunk.
THUMBNAIL_MATCH_PSNR = 25.0


_EXIF_FIELDS = {"Make": 271, "Model": 272, "Software": 305, "DateTime": 306, "Orientation": 274, "Artist": 315}
_EXIF_IFD_FIELDS = {"DateTimeOriginal": 36867, "DateTimeDigitized": 36868, "LensModel": 42036,
                    "BodySerialNumber": 42033}
_XMP_FIELDS = ("xmp:CreatorTool", "xmp:CreateDate", "xmp:ModifyDate", "photoshop:DateCreated")
_VIDEO_TAGS = ("encoder", "handler_name", "creation_time", "major_brand", "compatible_brands", "com.apple.quicktime.make",
               "com.apple.quicktime.model", "com.apple.quicktime.software", "location")


class InspectionError(ImageError):
    """A file that cannot be inspected: ``<path>: <reason>`` (an :class:`ImageError`, so detectors
    built on inspections skip it like any unusable image)."""


# -- JPEG quantisation ----------------------------------------------------------------------------


# -- EXIF, XMP, thumbnail -------------------------------------------------------------------------

def _text(value: Any) -> Any:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        return value.strip("\x00 ").strip()[:200]
    if isinstance(value, (int, float)):
        return value
    return str(value)[:200]


def _exif_fields(exif: Image.Exif) -> dict[str, Any]:
    fields = {name: _text(exif[tag]) for name, tag in _EXIF_FIELDS.items() if tag in exif}
    sub = exif.get_ifd(ExifTags.IFD.Exif)
    fields.update({name: _text(sub[tag]) for name, tag in _EXIF_IFD_FIELDS.items() if tag in sub})
    if exif.get_ifd(ExifTags.IFD.GPSInfo):
        fields["GPS"] = "present"
    return fields


def _thumbnail(img: Image.Image, exif: Image.Exif) -> dict[str, Any]:
    """The EXIF IFD1 thumbnail (JPEGInterchangeFormat offset/length, relative to the TIFF header in
    the APP1 payload) and how well it matches the picture."""
    ifd1 = exif.get_ifd(ExifTags.IFD.IFD1)
    offset, length = ifd1.get(0x201), ifd1.get(0x202)
    raw = img.info.get("exif", b"")
    if offset is None or not length or not raw:
        return {"present": False}
    tiff = raw[6:] if raw.startswith(b"Exif\x00\x00") else raw
    data = tiff[int(offset):int(offset) + int(length)]
    try:
        with Image.open(io.BytesIO(data)) as thumb:
            thumb_grey = np.asarray(thumb.convert("L"), dtype=np.float64)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return {"present": True, "decodable": False, "matches": False}
    result: dict[str, Any] = {"present": True, "decodable": True, "size": [thumb_grey.shape[1], thumb_grey.shape[0]]}
    width, height = img.size
    thumb_aspect, aspect = thumb_grey.shape[1] / thumb_grey.shape[0], width / height
    if abs(math.log(thumb_aspect / aspect)) > 0.05:
        return {**result, "matches": False, "reason": "aspect ratio differs from the picture's"}
    thumb_size = (thumb_grey.shape[1], thumb_grey.shape[0])
    shrunk = np.asarray(img.convert("L").resize(thumb_size, Image.Resampling.BOX), dtype=np.float64)
    mse = float(np.mean((shrunk - thumb_grey) ** 2))
    psnr = 99.0 if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)
    return {**result, "psnr_db": round(psnr, 1), "matches": psnr >= THUMBNAIL_MATCH_PSNR}


def _xmp_fields(img: Image.Image) -> dict[str, Any]:
    raw = img.info.get("xmp") or img.info.get("XML:com.adobe.xmp")
    if not raw:
        return {}
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    fields: dict[str, Any] = {"present": True}
    for key in _XMP_FIELDS:
        # XMP writes simple properties either as attributes or as elements.
        match = re.search(rf'{re.escape(key)}\s*=\s*"([^"]*)"|<{re.escape(key)}>([^<]*)<', text)
        if match:
            fields[key] = _text(match.group(1) if match.group(1) is not None else match.group(2))
    agents = sorted(set(re.findall(r'stEvt:softwareAgent\s*=\s*"([^"]*)"|<stEvt:softwareAgent>([^<]*)<', text)))
    agents = sorted({a or b for a, b in agents})
    if agents:
        fields["history_software"] = agents[:10]
    return fields


def inspect_image(path: Path, data: bytes) -> dict[str, Any]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                width, height = img.size
                if width * height > MAX_PIXELS:
                    raise InspectionError(path, f"image too large ({width}x{height} > {MAX_PIXELS} pixels)")
                img.load()
                return _image_report(img, data)
    except InspectionError:
        raise
    except UnidentifiedImageError:
        raise InspectionError(path, "not an image or video (format not recognised)") from None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as err:
        raise InspectionError(path, f"refused as a possible decompression bomb ({err})") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise InspectionError(path, f"cannot decode image ({str(err).strip() or type(err).__name__})") from None


def _image_report(img: Image.Image, data: bytes) -> dict[str, Any]:
    exif = img.getexif()
    report: dict[str, Any] = {"kind": "image", "format": img.format or "", "mode": img.mode,
                              "width": img.size[0], "height": img.size[1],
                              "exif": _exif_fields(exif), "thumbnail": _thumbnail(img, exif),
                              "xmp": _xmp_fields(img), "icc_profile": bool(img.info.get("icc_profile"))}
    if img.format == "PNG":
        report["png_text"] = {str(k): _text(v) for k, v in img.info.items()
                              if isinstance(v, str) and k not in ("XML:com.adobe.xmp",)}
    if img.format == "JPEG" and getattr(img, "quantization", None):
        tables = {int(k): np.asarray(v, dtype=np.int64) for k, v in img.quantization.items()}
        luminance, chrominance = tables.get(0), tables.get(1)
        jpeg: dict[str, Any] = {"tables": len(tables), "progressive": bool(img.info.get("progressive")),
                                "subsampling": _subsampling(img),
                                "luminance_table": luminance.tolist() if luminance is not None else None,
                                **quality_estimate(luminance, chrominance)}
        luma = _decoded_luma(data)
        jpeg["double_compression"] = double_compression(luma, luminance)
        report["jpeg"] = jpeg
    return report


def _subsampling(img: Image.Image) -> str:
    from PIL import JpegImagePlugin

    return {0: "4:4:4", 1: "4:2:2", 2: "4:2:0"}.get(JpegImagePlugin.get_sampling(img), "other")


def _decoded_luma(data: bytes) -> np.ndarray:
    """The JPEG's decoded Y plane: the decoder is asked for YCbCr (``draft``), so no round trip
    through RGB adds its rounding to the coefficients."""
    with Image.open(io.BytesIO(data)) as img:
        img.draft("YCbCr", img.size)
        # CMYK/YCCK JPEGs are decoded to CMYK whatever the draft: their luminance goes through RGB.
        pixels = np.asarray(img if img.mode in ("L", "YCbCr") else img.convert("YCbCr"))
    return pixels if pixels.ndim == 2 else pixels[:, :, 0]


def inspect_video(path: Path) -> dict[str, Any]:
    import av

    from dflab.media.video import VideoError, probe

    try:
        info = probe(path)
    except VideoError as err:
        raise InspectionError(path, err.reason) from None
    with av.open(str(path), mode="r", metadata_errors="ignore") as container:
        stream = container.streams.video[0]
        context = stream.codec_context
        # The container's tags name the muxer (``encoder=Lavf...``), the stream's the codec library.
        tags = {k.lower(): v for k, v in (container.metadata or {}).items()}
        tags.update({f"stream {k.lower()}": v for k, v in (stream.metadata or {}).items()
                     if tags.get(k.lower()) != v})
        report = {"kind": "video", "format": container.format.name, "codec": info.codec,
                  "profile": context.profile or "", "pixel_format": context.pix_fmt or "",
                  "width": info.width, "height": info.height, "fps": round(info.fps, 3), "rotation": info.rotation,
                  "frames": info.frames, "duration_s": round(info.duration, 3),
                  "bit_rate": int(container.bit_rate or 0),
                  "audio": bool(container.streams.audio),
                  "tags": {key: _text(value) for key, value in tags.items()
                           if key.removeprefix("stream ") in _VIDEO_TAGS}}
    return report


# -- C2PA -----------------------------------------------------------------------------------------

def content_credentials(path: Path) -> dict[str, Any]:
    """C2PA content credentials read and validated by c2pa-python: ``status`` is "none", "valid" (well
    formed, signature and hashes check; ``validation_failures`` then still lists e.g.
    ``signingCredential.untrusted`` for a signer on no trust list), "trusted", "invalid" (the manifest
    fails validation: edited after signing, damaged), "unsupported" (a format C2PA does not cover) or
    "error"."""
    try:
        import c2pa
    except ImportError:
        return {"status": "error", "reason": "c2pa-python is not installed (pip install c2pa-python)"}
    try:
        reader = c2pa.Reader.try_create(str(path))
    except c2pa.C2paError.NotSupported:
        return {"status": "unsupported"}
    except c2pa.C2paError as err:
        return {"status": "invalid", "reason": str(err).splitlines()[0][:200]}
    if reader is None:
        return {"status": "none"}
    with reader:
        store = json.loads(reader.json())
        state = (reader.get_validation_state() or "").lower()
        failures = [item.get("code", "") for item in store.get("validation_status", []) or []]
    manifest = store.get("manifests", {}).get(store.get("active_manifest", ""), {})
    signature = manifest.get("signature_info", {}) or {}
    return {"status": state if state in ("valid", "trusted", "invalid") else "invalid" if failures else "valid",
            "claim_generator": _text(manifest.get("claim_generator", "")
                                     or (manifest.get("claim_generator_info") or [{}])[0].get("name", "")),
            "title": _text(manifest.get("title", "")), "issuer": _text(signature.get("issuer", "")),
            "signed": _text(signature.get("time", "")), "validation_failures": failures[:10]}


# -- entry points ---------------------------------------------------------------------------------

def inspect_file(path: str | Path, *, c2pa: bool = True) -> dict[str, Any]:
    """Everything this module reads about one file (JSON-ready). Raises :class:`InspectionError`."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InspectionError(path, "file not found") from None
    except IsADirectoryError:
        raise InspectionError(path, "is a folder, not a file") from None
    except OSError as err:
        raise InspectionError(path, f"cannot read file ({err.strerror or err})") from None
    if not data:
        raise InspectionError(path, "empty file")
    if path.suffix.lower() in VIDEO_EXTENSIONS:
        report = inspect_video(path)
    else:
        report = inspect_image(path, data)
    report = {"path": str(path), "file_bytes": len(data), **report}
    if c2pa:
        report["c2pa"] = content_credentials(path)
    return report


def inspect_target(target: str | Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Inspect a file, or every image/video file under a folder: (reports, one-line errors of the
    files that could not be inspected). A single file that fails raises :class:`InspectionError`."""
    target = Path(target)
    if not target.is_dir():
        return [inspect_file(target)], []
    media = set(IMAGE_EXTENSIONS) | set(VIDEO_EXTENSIONS)
    reports, errors = [], []
    for path in sorted(p for p in target.rglob("*") if p.is_file() and p.suffix.lower() in media):
        try:
            reports.append(inspect_file(path))
        except InspectionError as err:
            errors.append(str(err))
    return reports, errors


def summary_fields(report: dict[str, Any]) -> dict[str, str]:
    """The facts of one inspection an analyst reads first, as short texts (the table of ``dflab inspect``)."""
    fields = {"kind": f"{report['kind']} ({report['format']})", "size": f"{report['width']}x{report['height']}",
              "bytes": str(report["file_bytes"])}
    if report["kind"] == "video":
        fields.update({"codec": f"{report['codec']} {report['profile']} {report['pixel_format']}".strip(),
                       "frame rate": f"{report['fps']:g} fps", "rotation": f"{report['rotation']} deg",
                       "frames": f"{report['frames']} ({report['duration_s']:g} s)",
                       "encoder tags": ", ".join(f"{k}={v}" for k, v in report["tags"].items()) or "none"})
    else:
        exif = report["exif"]
        camera = " ".join(str(exif[k]) for k in ("Make", "Model") if k in exif)
        fields.update({"camera": camera or "none", "software": str(exif.get("Software", "none")),
                       "dates": ", ".join(f"{k}={exif[k]}" for k in ("DateTimeOriginal", "DateTime") if k in exif)
                       or "none"})
        xmp = report["xmp"]
        if xmp:
            fields["xmp"] = ", ".join(f"{k}={v}" for k, v in xmp.items() if k != "present") or "present"
        thumbnail = report["thumbnail"]
        if not thumbnail["present"]:
            fields["thumbnail"] = "none"
        elif thumbnail.get("matches"):
            fields["thumbnail"] = f"matches the picture (PSNR {thumbnail['psnr_db']} dB)"
        else:
            why = thumbnail.get("reason") or (f"PSNR {thumbnail['psnr_db']} dB" if "psnr_db" in thumbnail
                                              else "undecodable")
            fields["thumbnail"] = f"does NOT match the picture ({why})"
        jpeg = report.get("jpeg")
        if jpeg:
            fields["JPEG tables"] = f"{jpeg['encoder']}; {jpeg['subsampling']}" + (", progressive" if jpeg["progressive"] else "")
            double = jpeg["double_compression"]
            fields["double JPEG"] = ("not testable (" + double["reason"] + ")" if double["score"] is None else
                                     f"{'SUSPECTED' if double['suspected'] else 'no sign'} (periodicity {double['score']:.2f}, "
                                     f"threshold {DOUBLE_JPEG_THRESHOLD})")
    credentials = report.get("c2pa", {"status": "not read"})
    fields["C2PA"] = credentials["status"] + "".join(
        f", {k} {credentials[k]}" for k in ("claim_generator", "issuer", "reason") if credentials.get(k)) + (
        f", failures: {', '.join(credentials['validation_failures'])}" if credentials.get("validation_failures") else "")
    return fields
