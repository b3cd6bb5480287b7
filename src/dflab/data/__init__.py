"""Datasets -> manifest: one table row per sample, whatever the dataset's folder layout.

``manifest`` (the table, its columns, reading and writing it), ``layouts`` (one module per dataset
folder layout behind a small registry, and auto-detection), ``files`` (folder walks), ``splits``
(video-grouped, leak-free train/validation splits), ``synthetic`` (the generated lab of ``dflab demo``).
"""

from dflab.data.files import is_video_file
from dflab.data.layouts import LAYOUTS, detect_layout, read_dataset, scan
from dflab.data.manifest import (FAKE, IMAGE_EXTENSIONS, LAB_SPLITS, LABEL_NAMES, MANIFEST_COLUMNS, NO_SPLIT, REAL,
                                 VIDEO_EXTENSIONS, DataError, load_manifest, save_manifest, summary, summary_text,
                                 validate_manifest)
from dflab.data.splits import group_ids, select_split, split_by_group, subsample

__all__ = ["DataError", "IMAGE_EXTENSIONS", "VIDEO_EXTENSIONS", "LAYOUTS", "MANIFEST_COLUMNS", "LABEL_NAMES",
           "REAL", "FAKE", "LAB_SPLITS", "NO_SPLIT", "detect_layout", "scan", "read_dataset", "select_split", "save_manifest", "load_manifest",
           "validate_manifest", "summary", "summary_text", "group_ids", "split_by_group", "subsample",
           "is_video_file"]
