"""Datasets -> manifest: one table row per sample, whatever the dataset's folder layout.

A manifest is a pandas DataFrame with the columns ``MANIFEST_COLUMNS`` (in that order):

``path``     absolute path of the image (a face crop / frame) or video file
``label``    0 = real, 1 = fake
``split``    "development", "evaluation", ... or "all" when the layout has no split
``video``    the group that must never straddle a train/validation split (a frame's video folder,
             or the file stem when each video is a single file)
``pair``     the real<->fake source link: the same value on a real video and the fakes made from it
             (missing when unknown)
``dataset``  the dataset's name (by default the root folder's name)

Layouts may add columns (FaceForensics++ adds ``method`` and ``compression``).
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from dflab.media.formats import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS  # noqa: F401 (the one list; re-exported)

MANIFEST_COLUMNS: tuple[str, ...] = ("path", "label", "split", "video", "pair", "dataset")


LABEL_NAMES: dict[int, str] = {0: "real", 1: "fake"}


REAL, FAKE = 0, 1


LAB_SPLITS = ("development", "evaluation")


NO_SPLIT = "all"


class DataError(ValueError):
    """A dataset, manifest or split request that cannot be used; the message names the file."""


def normalise_manifest(table: pd.DataFrame, source: Path) -> pd.DataFrame:
    """Fill defaults (split 'all', video = path stem, no pair), parse labels, resolve relative
    paths against ``source``'s folder and put the manifest columns first."""
    if table.empty:
        raise DataError(f"{source}: no rows")
    base = source.resolve().parent
    table = table.copy()
    if table["path"].isna().any() or (table["path"].astype(str).str.strip() == "").any():
        raise DataError(f"{source}: empty path in {int(table['path'].isna().sum())} row(s)")
    table["path"] = [
        os.path.abspath(p if os.path.isabs(p) else base / p) for p in table["path"].astype(str).str.strip()
    ]
    table["label"] = parse_labels(table["label"], source)
    if "split" not in table:
        table["split"] = NO_SPLIT
    table["split"] = table["split"].fillna(NO_SPLIT).astype(str)
    stems = pd.Series([Path(p).stem for p in table["path"]], index=table.index)
    table["video"] = table["video"].fillna(stems).astype(str) if "video" in table else stems
    if "pair" not in table:
        table["pair"] = None
    table["pair"] = [None if pd.isna(p) else str(p) for p in table["pair"]]
    if "dataset" not in table or table["dataset"].isna().any():
        raise DataError(f"{source}: column dataset is missing or has empty cells")
    table["dataset"] = table["dataset"].astype(str)
    return in_manifest_order(table)


def in_manifest_order(table: pd.DataFrame) -> pd.DataFrame:
    extras = [c for c in table.columns if c not in MANIFEST_COLUMNS]
    table = table[list(MANIFEST_COLUMNS) + extras]
    table = table.sort_values(["dataset", "split", "label", "video", "path"], kind="stable")
    return table.reset_index(drop=True)


def validate_manifest(df: pd.DataFrame, source: str | os.PathLike[str] = "manifest") -> pd.DataFrame:
    """Raise DataError (naming ``source``) unless ``df`` has the manifest columns and 0/1 labels."""
    missing = [c for c in MANIFEST_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(
            f"{source}: missing manifest column(s) {','.join(missing)}; expected {','.join(MANIFEST_COLUMNS)}"
        )
    if df.empty:
        raise DataError(f"{source}: manifest has no rows")
    for column in ("path", "split", "video", "dataset"):
        if df[column].isna().any():
            raise DataError(f"{source}: column {column} has {int(df[column].isna().sum())} empty cell(s)")
    labels = pd.to_numeric(df["label"], errors="coerce")
    if labels.isna().any() or not labels.isin([REAL, FAKE]).all():
        bad = sorted({str(v) for v in df["label"][~labels.isin([REAL, FAKE])]})[:5]
        raise DataError(f"{source}: label must be 0 (real) or 1 (fake); found {', '.join(bad)}")
    return df


def save_manifest(df: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write ``df`` to ``path`` (.csv or .parquet, by suffix); returns the path."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise DataError(f"cannot write manifest {path}: expected a .csv or .parquet file name")
    validate_manifest(df, "manifest to save")
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".csv":
        df.to_csv(path, index=False, errors="surrogateescape")
    else:
        df.to_parquet(path, index=False)
    return path


def drop_duplicated_rows(manifest: pd.DataFrame, source: str | os.PathLike[str]) -> pd.DataFrame:
    """``manifest`` without rows that repeat a file already listed in the same split, with a warning
    naming ``source``: counted twice, a file would weigh double in every count and metric. DataError
    when the repeats disagree on the label."""
    duplicated = manifest.duplicated(subset=["path", "split"], keep="first")
    if not duplicated.any():
        return manifest
    repeated = manifest[manifest["path"].isin(manifest.loc[duplicated, "path"])]
    labels = repeated.groupby("path")["label"].nunique()
    if (labels > 1).any():
        raise DataError(f"{source}: {labels.index[labels > 1][0]} is listed as both real and fake")
    from dflab.runtime.progress import warn

    warn(f"{source}: {int(duplicated.sum())} duplicated row(s) dropped "
         f"(e.g. {manifest.loc[duplicated, 'path'].iloc[0]})")
    return manifest[~duplicated].reset_index(drop=True)


def load_manifest(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a manifest written by ``save_manifest`` (or by hand); relative paths are resolved
    against the file's folder. DataError naming the file when columns or labels are wrong."""
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.is_file():
        raise DataError(f"cannot read manifest {path}: no such file")
    try:
        if suffix == ".csv":
            # All text: keeps video/pair ids like "0001" or "NA" as written.
            table = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], encoding_errors="surrogateescape")
        elif suffix == ".parquet":
            table = pd.read_parquet(path)
        else:
            raise DataError(f"cannot read manifest {path}: expected a .csv or .parquet file")
    except DataError:
        raise
    except Exception as error:  # pandas/pyarrow raise many types for a corrupt file
        raise DataError(f"cannot read manifest {path}: {type(error).__name__}: {error}") from error
    validate_manifest(table, path)
    table["label"] = pd.to_numeric(table["label"]).astype("int64")
    base = path.resolve().parent
    table["path"] = [os.path.abspath(p if os.path.isabs(p) else base / p) for p in table["path"].astype(str)]
    table["pair"] = [None if pd.isna(p) else str(p) for p in table["pair"]]
    for column in ("split", "video", "dataset"):
        table[column] = table[column].astype(str)
    extras = [c for c in table.columns if c not in MANIFEST_COLUMNS]
    return drop_duplicated_rows(table[list(MANIFEST_COLUMNS) + extras].reset_index(drop=True), path)


def summary(df: pd.DataFrame) -> pd.DataFrame:
    """Per dataset x split x label: samples, distinct videos, videos whose pair has both a real and
    a fake video in that split (``paired_videos``), and the number of such complete pairs in the
    split (``pairs``, the same on both label rows)."""
    validate_manifest(df)
    rows = []
    for (dataset, split), part in df.groupby(["dataset", "split"], sort=True):
        with_pair = part[part["pair"].notna()]
        labels_per_pair = with_pair.groupby("pair")["label"].nunique()
        complete = set(labels_per_pair.index[labels_per_pair == 2])
        for label, name in LABEL_NAMES.items():
            sub = part[part["label"] == label]
            rows.append(
                {"dataset": dataset, "split": split, "label": label, "class": name,
                 "samples": len(sub), "videos": sub["video"].nunique(),
                 "paired_videos": sub.loc[sub["pair"].isin(complete), "video"].nunique(),
                 "pairs": len(complete)}
            )
    return pd.DataFrame(rows)


def summary_text(df: pd.DataFrame) -> str:
    """A plain-text version of ``summary`` for printing."""
    table = summary(df)
    datasets = ", ".join(sorted(df["dataset"].unique()))
    head = f"{len(df)} samples, {df['video'].nunique()} videos ({datasets})"
    return head + "\n" + table.drop(columns=["label"]).to_string(index=False)


_LABEL_WORDS = {"0": REAL, "real": REAL, "1": FAKE, "fake": FAKE}


def parse_labels(values: pd.Series, source: Path) -> pd.Series:
    """0/1 or real/fake (any case) -> int 0/1; anything else is a DataError naming ``source``."""
    words = values.astype("string").str.strip().str.lower()
    # "0.0"/"1.0" appear when a label column went through floats.
    words = words.replace({"0.0": "0", "1.0": "1"})
    parsed = words.map(_LABEL_WORDS)
    bad = parsed.isna()
    if bad.any():
        examples = sorted({str(v) for v in values[bad]})[:5]
        raise DataError(
            f"{source}: label must be 0/1 or real/fake; found {', '.join(repr(v) for v in examples)} "
            f"in {int(bad.sum())} row(s)"
        )
    return parsed.astype("int64")
