"""What dataset layouts share: label folders, real<->fake pair links, video ids made unique."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from dflab.data.files import child_dirs, short_listing, walk_files, is_video_file
from dflab.data.manifest import FAKE, LABEL_NAMES, REAL, DataError

# Layouts whose videos may still be video files; a later stage extracts faces from them.
VIDEO_LAYOUTS = frozenset({"lab", "ffpp", "realfake", "dfdc"})


_LAYOUT_HELP = (
    "expected one of the layouts lab ({development,evaluation}/{real,fake}/...), "
    "real-fake folders ({real,fake}/...), deepfakebench ([<name>/]{real,fake}/frames/<video>/...), "
    "ffpp (original_sequences/, manipulated_sequences/), dfdc (metadata.json/metadata.csv) "
    "or a CSV path,label[,split,video,pair]"
)


def label_folders(folder: Path) -> dict[int, Path]:
    children = child_dirs(folder)
    return {label: children[name] for label, name in LABEL_NAMES.items() if name in children}


def _longest_prefix_match(name: str, candidates: set[str]) -> str | None:
    """The longest ``c`` in ``candidates`` with ``name == c + '_' + rest`` (e.g. 0001_fake -> 0001)."""
    cut = name.rfind("_")
    while cut > 0:
        if name[:cut] in candidates:
            return name[:cut]
        cut = name.rfind("_", 0, cut)
    return None


def link_pairs_by_name(records: list[dict]) -> None:
    """Name rule: a fake video ``<real>_<anything>`` made from an existing real video ``<real>``
    (in the same dataset and split) gets pair ``<real>``; that real video gets the same pair."""
    real_videos: dict[tuple[str, str], set[str]] = {}
    for rec in records:
        if rec["label"] == REAL:
            real_videos.setdefault((rec["dataset"], rec["split"]), set()).add(rec["video"])
    linked: set[tuple[str, str, str]] = set()
    for rec in records:
        if rec["label"] == FAKE:
            key = (rec["dataset"], rec["split"])
            target = _longest_prefix_match(rec["video"], real_videos.get(key, set()))
            rec["pair"] = target
            if target is not None:
                linked.add((*key, target))
    for rec in records:
        if rec["label"] == REAL:
            rec["pair"] = rec["video"] if (rec["dataset"], rec["split"], rec["video"]) in linked else None


def disambiguate_videos(records: list[dict]) -> None:
    """Prefix ``real/`` or ``fake/`` to a video name used under both labels, so the two stay apart."""
    labels_of: dict[tuple[str, str, str], set[int]] = {}
    for rec in records:
        labels_of.setdefault((rec["dataset"], rec["split"], rec["video"]), set()).add(rec["label"])
    for rec in records:
        if len(labels_of[(rec["dataset"], rec["split"], rec["video"])]) > 1:
            rec["video"] = f"{LABEL_NAMES[rec['label']]}/{rec['video']}"


def tree_records(
    label_dirs: dict[int, Path], extensions: frozenset[str], split: str, dataset: str
) -> list[dict]:
    """Samples under ``{real,fake}/...``: a file directly under the label folder is its own video
    (its stem); a deeper image belongs to the video named by its folder path below the label folder;
    a deeper video file is named by its path below the label folder without suffix."""
    records = []
    for label, label_dir in sorted(label_dirs.items()):
        for path in walk_files(label_dir, extensions):
            relative = path.relative_to(label_dir)
            if len(relative.parts) == 1 or is_video_file(path):
                video = relative.with_suffix("").as_posix()
            else:
                video = relative.parent.as_posix()
            records.append(
                {"path": os.path.abspath(path), "label": label, "split": split, "video": video,
                 "pair": None, "dataset": dataset}
            )
    return records


def read_pairs_csv(csv_path: Path) -> pd.DataFrame:
    try:
        table = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise DataError(f"cannot read pairs file {csv_path}: {error}") from error
    columns = {c.strip().lower(): c for c in table.columns}
    if "real" not in columns or "fake" not in columns:
        raise DataError(
            f"{csv_path}: expected columns real,fake (file names); found {','.join(table.columns) or 'none'}"
        )
    return pd.DataFrame({"real": table[columns["real"]].str.strip(), "fake": table[columns["fake"]].str.strip()})


def link_pairs_from_csv(records: list[dict], pairs: pd.DataFrame) -> None:
    """Pairs listed by file (or video folder) name; the pair id is the real file's stem."""
    fake_to_pair = {name: Path(real).stem for real, name in zip(pairs["real"], pairs["fake"])}
    fake_to_pair.update({Path(name).stem: pid for name, pid in list(fake_to_pair.items())})
    real_pairs = {Path(real).stem for real in pairs["real"]}
    for rec in records:
        name = Path(rec["path"]).name
        if rec["label"] == FAKE:
            rec["pair"] = fake_to_pair.get(name, fake_to_pair.get(rec["video"]))
        else:
            stem = Path(name).stem
            rec["pair"] = stem if stem in real_pairs else (rec["video"] if rec["video"] in real_pairs else None)


def layout_error(root: Path) -> DataError:
    return DataError(f"cannot read dataset at {root}: {_LAYOUT_HELP}; found: {short_listing(root)}")
