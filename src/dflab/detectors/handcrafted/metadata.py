"""``metadata-gb``: does a file's metadata tell fakes from real images? Gradient boosting on the numbers
of :func:`metadata_vector` (format, bits per pixel, size, EXIF/XMP/ICC presence,
thumbnail match, JPEG quality, IJG tables or not, double-compression score, C2PA presence).

The features come from the file's bytes, not its pixels: an image given as an array has no metadata
and is unusable here (NaN with ``on_error="nan"``). C2PA is not read for training features: no
dataset here carries it, and reading it is the slowest step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from dflab.detectors.handcrafted.classic import FeatureClassifierDetector
from dflab.detectors.registry import register
from dflab.media.images import ImageError, source_name
from dflab.media.metadata import InspectionError, inspect_file
from dflab.runtime.progress import progress_bar


#: The numbers of :func:`metadata_vector`, in order; -1 where a field does not apply.
FEATURE_NAMES = (
    "is_jpeg", "is_png", "bits_per_pixel", "width", "height", "exif_fields", "has_camera", "has_software",
    "has_date", "has_thumbnail", "thumbnail_matches", "has_xmp", "has_icc", "jpeg_quality", "jpeg_ijg_exact",
    "jpeg_fit_error", "jpeg_mean_luma_step", "jpeg_progressive", "jpeg_chroma_subsampled", "double_jpeg_score",
    "c2pa_present")


def metadata_vector(report: dict[str, Any]) -> np.ndarray:
    """An image inspection as the numbers of :data:`FEATURE_NAMES` (float64)."""
    exif, jpeg = report.get("exif", {}), report.get("jpeg")
    thumbnail = report.get("thumbnail", {})
    width, height = report.get("width", 0), report.get("height", 0)
    double = (jpeg or {}).get("double_compression", {}).get("score")
    values = {
        "is_jpeg": report.get("format") == "JPEG", "is_png": report.get("format") == "PNG",
        "bits_per_pixel": 8.0 * report["file_bytes"] / max(1, width * height), "width": width, "height": height,
        "exif_fields": len(exif), "has_camera": "Make" in exif or "Model" in exif, "has_software": "Software" in exif,
        "has_date": any(k in exif for k in ("DateTime", "DateTimeOriginal")),
        "has_thumbnail": thumbnail.get("present", False),
        "thumbnail_matches": -1 if not thumbnail.get("present") else bool(thumbnail.get("matches")),
        "has_xmp": bool(report.get("xmp")), "has_icc": report.get("icc_profile", False),
        "jpeg_quality": jpeg["estimated_quality"] if jpeg else -1,
        "jpeg_ijg_exact": jpeg["ijg_exact"] if jpeg else -1, "jpeg_fit_error": jpeg["fit_error"] if jpeg else -1,
        "jpeg_mean_luma_step": float(np.mean(jpeg["luminance_table"])) if jpeg else -1,
        "jpeg_progressive": jpeg["progressive"] if jpeg else -1,
        "jpeg_chroma_subsampled": (jpeg["subsampling"] != "4:4:4") if jpeg else -1,
        "double_jpeg_score": double if double is not None else -1,
        "c2pa_present": report.get("c2pa", {}).get("status", "none") not in ("none", "unsupported"),
    }
    return np.array([float(values[name]) for name in FEATURE_NAMES])


def metadata_matrix(sources, *, on_error: str = "raise", errors: dict | None = None,
                    description: str = "metadata") -> np.ndarray:
    """(N, len(FEATURE_NAMES)) metadata numbers; an unusable source is a NaN row or raises."""
    matrix = np.full((len(sources), len(FEATURE_NAMES)), np.nan)
    with progress_bar(description, len(sources)) as advance:
        for row, source in enumerate(sources):
            try:
                if isinstance(source, np.ndarray):
                    raise ImageError(source_name(source), "an in-memory image has no file metadata")
                report = inspect_file(source, c2pa=False)
                if report["kind"] != "image":
                    raise InspectionError(source, f"a {report['kind']}, not an image")
                matrix[row] = metadata_vector(report)
            except ImageError as err:
                if on_error == "raise":
                    raise
                if errors is not None:
                    errors[row] = err.reason
            advance(1)
    return matrix


@dataclass(eq=False, repr=False)  # parameters as fields: scikit-learn reads them from __init__
@register("metadata-gb", description="File metadata (EXIF/XMP, thumbnail, JPEG tables and quality, double-JPEG "
                                     "score, size) + gradient boosting", family="handcrafted", classifier="gb")
class MetadataDetector(FeatureClassifierDetector):
    classifier: str = "gb"
    seed: int = 0

    def _features(self, sources, on_error: str, description: str, errors: dict | None = None,
                  all_failed_ok: bool = False) -> np.ndarray:
        # Unusable files are NaN rows here however many there are: all_failed_ok holds by construction.
        return metadata_matrix(sources, on_error=on_error, errors=errors, description=description)
