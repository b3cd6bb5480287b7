"""Layout ``deepfakebench``: DeepfakeBench's preprocessed datasets (one folder per dataset)."""

from __future__ import annotations

from pathlib import Path

from dflab.data.files import _child_dirs, _short_listing
from dflab.data.layouts.common import _label_dirs, _link_pairs_by_name, _tree_records
from dflab.data.manifest import NO_SPLIT, DataError


def _is_deepfakebench_dataset(folder: Path) -> bool:
    return any("frames" in _child_dirs(d) for d in _label_dirs(folder).values())


def _scan_deepfakebench(root: Path, extensions: frozenset[str], dataset: str | None) -> list[dict]:
    if _is_deepfakebench_dataset(root):
        dataset_dirs = [root]
    else:
        dataset_dirs = [d for d in _child_dirs(root).values() if _is_deepfakebench_dataset(d)]
    if not dataset_dirs:
        raise DataError(
            f"cannot read {root} as layout deepfakebench: expected <dataset>/{{real,fake}}/frames/<video>/ "
            f"or {{real,fake}}/frames/<video>/; found: {_short_listing(root)}"
        )
    records: list[dict] = []
    for dataset_dir in dataset_dirs:
        frame_dirs = {
            label: _child_dirs(label_dir)["frames"]
            for label, label_dir in _label_dirs(dataset_dir).items()
            if "frames" in _child_dirs(label_dir)
        }
        records += _tree_records(frame_dirs, extensions, NO_SPLIT, dataset or dataset_dir.name)
    _link_pairs_by_name(records)
    return records
