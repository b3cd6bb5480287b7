"""Layout ``realfake``: a folder with ``real/`` and ``fake/`` sub-folders, no split."""

from __future__ import annotations

from pathlib import Path

from dflab.data.files import _short_listing
from dflab.data.layouts.common import _label_dirs, _link_pairs_by_name, _tree_records
from dflab.data.manifest import NO_SPLIT, DataError


def _scan_realfake(root: Path, extensions: frozenset[str], dataset: str) -> list[dict]:
    label_dirs = _label_dirs(root)
    if not label_dirs:
        raise DataError(
            f"cannot read {root} as layout realfake: expected real/ and/or fake/ folders; "
            f"found: {_short_listing(root)}"
        )
    records = _tree_records(label_dirs, extensions, NO_SPLIT, dataset)
    _link_pairs_by_name(records)
    return records
