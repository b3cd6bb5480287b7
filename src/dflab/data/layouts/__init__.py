"""Dataset folder layouts: one module per layout, a table of them, auto-detection and ``scan`` (folder -> manifest)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from dflab.data.files import _child_dirs, _child_files, _normalise_extensions, _short_listing
from dflab.data.layouts.common import VIDEO_LAYOUTS, _disambiguate_videos, _label_dirs, _layout_error
from dflab.data.layouts.csv import _scan_csv
from dflab.data.layouts.deepfakebench import _is_deepfakebench_dataset, _scan_deepfakebench
from dflab.data.layouts.dfdc import _dfdc_metadata_files, _scan_dfdc
from dflab.data.layouts.ffpp import _scan_ffpp
from dflab.data.layouts.lab import _scan_lab
from dflab.data.layouts.realfake import _scan_realfake
from dflab.data.manifest import IMAGE_EXTENSIONS, LAB_SPLITS, VIDEO_EXTENSIONS, DataError, _order

LAYOUTS: tuple[str, ...] = ("lab", "realfake", "deepfakebench", "ffpp", "dfdc", "csv")


def detect_layout(root: str | os.PathLike[str]) -> str:
    """The layout name (one of ``LAYOUTS``) of the dataset at ``root``; DataError when none fits."""
    root = Path(root).expanduser()
    if root.is_file():
        if root.suffix.lower() == ".csv":
            return "csv"
        raise DataError(f"cannot read dataset at {root}: a file must be a CSV path,label[,split,video,pair]")
    if not root.is_dir():
        raise DataError(f"cannot read dataset at {root}: no such file or folder")
    files, dirs = _child_files(root), _child_dirs(root)
    if "metadata.json" in files or "metadata.csv" in files:
        return "dfdc"
    if "original_sequences" in dirs or "manipulated_sequences" in dirs:
        return "ffpp"
    if any(_label_dirs(dirs[split]) for split in LAB_SPLITS if split in dirs):
        return "lab"
    if _is_deepfakebench_dataset(root) or any(_is_deepfakebench_dataset(d) for d in dirs.values()):
        return "deepfakebench"
    if _label_dirs(root):
        return "realfake"
    if _dfdc_metadata_files(root):
        return "dfdc"
    raise _layout_error(root)


def scan(
    root: str | os.PathLike[str],
    *,
    layout: str | None = None,
    dataset: str | None = None,
    extensions: Iterable[str] | None = None,
) -> pd.DataFrame:
    """Manifest of the dataset at ``root`` (a folder, or a CSV file for layout csv).

    ``layout`` overrides auto-detection. ``dataset`` overrides the dataset name (default: the root
    folder's name; deepfakebench: each dataset folder's name; csv: a ``dataset`` column or the CSV's
    folder name). ``extensions`` is the exact set of file suffixes to take; by default images
    (``IMAGE_EXTENSIONS``), plus ``VIDEO_EXTENSIONS`` for the layouts that may hold videos (lab,
    ffpp, realfake, dfdc). Rows are sorted by dataset, split, label, video, path.
    """
    root = Path(root).expanduser()
    if layout is None:
        layout = detect_layout(root)
    elif layout not in LAYOUTS:
        raise DataError(f"unknown layout {layout!r}: expected one of {', '.join(LAYOUTS)}")
    if layout == "csv":
        if not root.is_file():
            raise DataError(f"layout csv needs a CSV file path,label[,split,video,pair]; {root} is not a file")
        return _scan_csv(root, dataset)
    if not root.is_dir():
        raise DataError(f"cannot read dataset at {root}: layout {layout} needs a folder")

    if extensions is None:
        exts = frozenset(IMAGE_EXTENSIONS) | (frozenset(VIDEO_EXTENSIONS) if layout in VIDEO_LAYOUTS else frozenset())
    else:
        exts = _normalise_extensions(extensions)
    name = dataset or os.path.basename(os.path.abspath(root))
    if layout == "lab":
        records = _scan_lab(root, exts, name)
    elif layout == "realfake":
        records = _scan_realfake(root, exts, name)
    elif layout == "deepfakebench":
        records = _scan_deepfakebench(root, exts, dataset)
    elif layout == "ffpp":
        records = _scan_ffpp(root, exts, name)
    else:
        records = _scan_dfdc(root, exts, name)
    if not records:
        raise DataError(
            f"no files with extensions {' '.join(sorted(exts))} found under {root} (layout {layout}); "
            f"found: {_short_listing(root)}"
        )
    if layout != "ffpp":  # ffpp ids are already unique (fakes carry their method)
        _disambiguate_videos(records)
    table = pd.DataFrame.from_records(records)
    table["label"] = table["label"].astype("int64")
    return _order(table)


def read_dataset(path: str | os.PathLike[str], layout: str | None = None) -> pd.DataFrame:
    """A manifest from a dataset folder, a CSV (layout csv) or a saved manifest (``.parquet``)."""
    from dflab.data.manifest import load_manifest

    path = Path(path)
    if path.is_file() and path.suffix.lower() == ".parquet":
        return load_manifest(path)
    if path.is_file() and path.suffix.lower() == ".csv" and layout in (None, "csv"):
        return scan(path, layout="csv")
    return scan(path, layout=layout)
