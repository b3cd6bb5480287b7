"""Layout ``csv``: a CSV file with path,label[,split,video,pair] columns."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from dflab.data.manifest import DataError, normalise_manifest, drop_duplicated_rows


def scan_csv(csv_path: Path, dataset: str | None) -> pd.DataFrame:
    try:
        table = pd.read_csv(csv_path, dtype=str, keep_default_na=False, na_values=[""])
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise DataError(f"cannot read {csv_path}: {error}") from error
    table.columns = [c.strip() for c in table.columns]
    if "path" not in table or "label" not in table:
        raise DataError(
            f"{csv_path}: expected columns path,label[,split,video,pair]; "
            f"found {','.join(table.columns) or 'none'}"
        )
    if dataset is not None:
        table["dataset"] = dataset
    elif "dataset" not in table:
        table["dataset"] = csv_path.resolve().parent.name
    manifest = normalise_manifest(table, csv_path)
    manifest = drop_duplicated_rows(manifest, csv_path)
    missing = [p for p in manifest["path"] if not os.path.exists(p)]
    if missing:
        raise DataError(
            f"{csv_path}: {len(missing)} of {len(manifest)} listed files do not exist (e.g. {missing[0]})"
        )
    return manifest
