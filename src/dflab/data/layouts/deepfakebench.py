"""Layout ``deepfakebench``: DeepfakeBench's preprocessed datasets (one folder per dataset)."""

from __future__ import annotations

from pathlib import Path

from dflab.data.files import child_dirs, short_listing
from dflab.data.layouts.common import label_folders, link_pairs_by_name, tree_records
from dflab.data.manifest import NO_SPLIT, DataError


def is_deepfakebench_dataset(folder: Path) -> bool:
    return any("frames" in child_dirs(d) for d in label_folders(folder).values())


def scan_deepfakebench(root: Path, extensions: frozenset[str], dataset: str | None) -> list[dict]:
    if is_deepfakebench_dataset(root):
        dataset_dirs = [root]
    else:
        dataset_dirs = [d for d in child_dirs(root).values() if is_deepfakebench_dataset(d)]
    if not dataset_dirs:
        raise DataError(
            f"cannot read {root} as layout deepfakebench: expected <dataset>/{{real,fake}}/frames/<video>/ "
            f"or {{real,fake}}/frames/<video>/; found: {short_listing(root)}"
        )
    records: list[dict] = []
    for dataset_dir in dataset_dirs:
        frame_dirs = {
            label: child_dirs(label_dir)["frames"]
            for label, label_dir in label_folders(dataset_dir).items()
            if "frames" in child_dirs(label_dir)
        }
        records += tree_records(frame_dirs, extensions, NO_SPLIT, dataset or dataset_dir.name)
    link_pairs_by_name(records)
    return records
