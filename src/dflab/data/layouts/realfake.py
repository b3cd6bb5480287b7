"""Layout ``realfake``: a folder with ``real/`` and ``fake/`` sub-folders, no split."""

from __future__ import annotations

from pathlib import Path

from dflab.data.files import short_listing
from dflab.data.layouts.common import label_folders, link_pairs_by_name, tree_records
from dflab.data.manifest import NO_SPLIT, DataError


def scan_realfake(root: Path, extensions: frozenset[str], dataset: str) -> list[dict]:
    label_dirs = label_folders(root)
    if not label_dirs:
        raise DataError(
            f"cannot read {root} as layout realfake: expected real/ and/or fake/ folders; "
            f"found: {short_listing(root)}"
        )
    records = tree_records(label_dirs, extensions, NO_SPLIT, dataset)
    link_pairs_by_name(records)
    return records
