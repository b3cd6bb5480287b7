"""Dataset folder layouts: one module per layout, a table of them, auto-detection and ``scan`` (folder -> manifest)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from dflab.data.files import child_dirs, child_files_by_name, normalise_extensions, short_listing
from dflab.data.layouts.common import VIDEO_LAYOUTS, disambiguate_videos, label_folders, layout_error
from dflab.data.layouts.csv import scan_csv
from dflab.data.layouts.deepfakebench import is_deepfakebench_dataset, scan_deepfakebench
from dflab.data.layouts.dfdc import dfdc_metadata_files, scan_dfdc
from dflab.data.layouts.ffpp import scan_ffpp
from dflab.data.layouts.lab import scan_lab
from dflab.data.layouts.realfake import scan_realfake
from dflab.data.manifest import IMAGE_EXTENSIONS, LAB_SPLITS, VIDEO_EXTENSIONS, DataError, in_manifest_order

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
    files, dirs = child_files_by_name(root), child_dirs(root)
    if "metadata.json" in files or "metadata.csv" in files:
        return "dfdc"
    if "original_sequences" in dirs or "manipulated_sequences" in dirs:
        return "ffpp"
    if any(label_folders(dirs[split]) for split in LAB_SPLITS if split in dirs):
        return "lab"
    if is_deepfakebench_dataset(root) or any(is_deepfakebench_dataset(d) for d in dirs.values()):
        return "deepfakebench"
    if label_folders(root):
        return "realfake"
    if dfdc_metadata_files(root):
        return "dfdc"
    raise layout_error(root)


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
        return scan_csv(root, dataset)
    if not root.is_dir():
        raise DataError(f"cannot read dataset at {root}: layout {layout} needs a folder")

    if extensions is None:
        exts = frozenset(IMAGE_EXTENSIONS) | (frozenset(VIDEO_EXTENSIONS) if layout in VIDEO_LAYOUTS else frozenset())
    else:
        exts = normalise_extensions(extensions)
    name = dataset or os.path.basename(os.path.abspath(root))
    if layout == "lab":
        records = scan_lab(root, exts, name)
    elif layout == "realfake":
        records = scan_realfake(root, exts, name)
    elif layout == "deepfakebench":
        records = scan_deepfakebench(root, exts, dataset)
    elif layout == "ffpp":
        records = scan_ffpp(root, exts, name)
    else:
        records = scan_dfdc(root, exts, name)
    if not records:
        raise DataError(
            f"no files with extensions {' '.join(sorted(exts))} found under {root} (layout {layout}); "
            f"found: {short_listing(root)}"
        )
    if layout != "ffpp":  # ffpp ids are already unique (fakes carry their method)
        disambiguate_videos(records)
    table = pd.DataFrame.from_records(records)
    table["label"] = table["label"].astype("int64")
    return in_manifest_order(table)


def read_dataset(path: str | os.PathLike[str], layout: str | None = None) -> pd.DataFrame:
    """A manifest from a dataset folder, a CSV (layout csv) or a saved manifest (``.parquet``)."""
    from dflab.data.manifest import load_manifest

    path = Path(path)
    if path.is_file() and path.suffix.lower() == ".parquet":
        return load_manifest(path)
    if path.is_file() and path.suffix.lower() == ".csv" and layout in (None, "csv"):
        return scan(path, layout="csv")
    return scan(path, layout=layout)
