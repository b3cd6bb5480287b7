"""Layout ``lab``: ``development/`` and ``evaluation/`` splits with real/fake folders (the lab's Task_1 and Task_2_3)."""

from __future__ import annotations

from pathlib import Path

from dflab.data.files import child_dirs, child_files_by_name, short_listing
from dflab.data.layouts.common import (label_folders, link_pairs_by_name, link_pairs_from_csv, read_pairs_csv,
                                       tree_records)
from dflab.data.manifest import LAB_SPLITS, DataError


def scan_lab(root: Path, extensions: frozenset[str], dataset: str) -> list[dict]:
    children = child_dirs(root)
    split_dirs = {split: children[split] for split in LAB_SPLITS if split in children}
    if not split_dirs:
        raise DataError(
            f"cannot read {root} as layout lab: expected development/ and/or evaluation/ "
            f"holding real/ and fake/; found: {short_listing(root)}"
        )
    records: list[dict] = []
    for split, split_dir in split_dirs.items():
        label_dirs = label_folders(split_dir)
        if not label_dirs:
            raise DataError(
                f"cannot read {split_dir} as a lab split: expected real/ and fake/ folders; "
                f"found: {short_listing(split_dir)}"
            )
        split_records = tree_records(label_dirs, extensions, split, dataset)
        pairs_csv = child_files_by_name(root).get(f"{split}_pairs.csv")
        if pairs_csv is not None:
            link_pairs_from_csv(split_records, read_pairs_csv(pairs_csv))
        else:
            link_pairs_by_name(split_records)
        records += split_records
    return records
