"""Layout ``lab``: ``development/`` and ``evaluation/`` splits with real/fake folders (the lab's Task_1 and Task_2_3)."""

from __future__ import annotations

from pathlib import Path

from dflab.data.files import _child_dirs, _child_files, _short_listing
from dflab.data.layouts.common import (_label_dirs, _link_pairs_by_name, _link_pairs_from_csv, _read_pairs_csv,
                                       _tree_records)
from dflab.data.manifest import LAB_SPLITS, DataError


def _scan_lab(root: Path, extensions: frozenset[str], dataset: str) -> list[dict]:
    children = _child_dirs(root)
    split_dirs = {split: children[split] for split in LAB_SPLITS if split in children}
    if not split_dirs:
        raise DataError(
            f"cannot read {root} as layout lab: expected development/ and/or evaluation/ "
            f"holding real/ and fake/; found: {_short_listing(root)}"
        )
    records: list[dict] = []
    for split, split_dir in split_dirs.items():
        label_dirs = _label_dirs(split_dir)
        if not label_dirs:
            raise DataError(
                f"cannot read {split_dir} as a lab split: expected real/ and fake/ folders; "
                f"found: {_short_listing(split_dir)}"
            )
        split_records = _tree_records(label_dirs, extensions, split, dataset)
        pairs_csv = _child_files(root).get(f"{split}_pairs.csv")
        if pairs_csv is not None:
            _link_pairs_from_csv(split_records, _read_pairs_csv(pairs_csv))
        else:
            _link_pairs_by_name(split_records)
        records += split_records
    return records
