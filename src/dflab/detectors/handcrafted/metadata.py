"""``metadata-gb``: does a file's metadata tell fakes from real images? Gradient boosting on the numbers
of :func:`dflab.media.metadata.metadata_vector` (format, bits per pixel, size, EXIF/XMP/ICC presence,
thumbnail match, JPEG quality, IJG tables or not, double-compression score, C2PA presence).

The features come from the file's bytes, not its pixels: an image given as an array has no metadata
and is unusable here (NaN with ``on_error="nan"``). C2PA is not read for training features: no
dataset here carries it, and reading it is the slowest step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dflab.detectors.handcrafted.classic import FeatureClassifierDetector
from dflab.detectors.registry import register
from dflab.media.images import ImageError, source_name
from dflab.media.metadata import FEATURE_NAMES, InspectionError, inspect_file, metadata_vector
from dflab.runtime.progress import progress_bar


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
