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

import json
import os
import re
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from sklearn.model_selection import StratifiedGroupKFold

__all__ = [
    "DataError",
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "LAYOUTS",
    "MANIFEST_COLUMNS",
    "LABEL_NAMES",
    "detect_layout",
    "scan",
    "save_manifest",
    "load_manifest",
    "validate_manifest",
    "summary",
    "summary_text",
    "group_ids",
    "split_by_group",
    "subsample",
    "is_video_file",
]

IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_EXTENSIONS: tuple[str, ...] = (".mp4", ".avi", ".mov", ".mkv", ".webm")
LAYOUTS: tuple[str, ...] = ("lab", "realfake", "deepfakebench", "ffpp", "dfdc", "csv")
MANIFEST_COLUMNS: tuple[str, ...] = ("path", "label", "split", "video", "pair", "dataset")
LABEL_NAMES: dict[int, str] = {0: "real", 1: "fake"}

REAL, FAKE = 0, 1
LAB_SPLITS = ("development", "evaluation")
NO_SPLIT = "all"
# Layouts whose videos may still be video files; a later stage extracts faces from them.
VIDEO_LAYOUTS = frozenset({"lab", "ffpp", "realfake", "dfdc"})

_LAYOUT_HELP = (
    "expected one of the layouts lab ({development,evaluation}/{real,fake}/...), "
    "real-fake folders ({real,fake}/...), deepfakebench ([<name>/]{real,fake}/frames/<video>/...), "
    "ffpp (original_sequences/, manipulated_sequences/), dfdc (metadata.json/metadata.csv) "
    "or a CSV path,label[,split,video,pair]"
)
_LABEL_WORDS = {"0": REAL, "real": REAL, "1": FAKE, "fake": FAKE}
# Folder names FaceForensics++ and its re-packagings put between a video id and its frames.
_FFPP_FRAME_FOLDERS = frozenset({"frames", "images", "image", "faces", "face", "crops", "crop"})
# FaceForensics++ also ships manipulation masks and face-swap models: these are not samples.
_FFPP_SKIP_FOLDERS = frozenset({"masks", "mask", "models"})
_FFPP_COMPRESSION = re.compile(r"^(raw|c\d+)$", re.IGNORECASE)
_FFPP_PAIR = re.compile(r"^(\d+)_\d+$")  # target_source, e.g. 000_003 -> 000
_FFPP_DFD_PAIR = re.compile(r"^(\d+)_\d+__(.+)__[^_]+$")  # 01_02__scene__ID -> 01__scene


class DataError(ValueError):
    """A dataset, manifest or split request that cannot be used; the message names the file."""


# --------------------------------------------------------------------------- small helpers


def is_video_file(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` has a video extension (its faces still have to be extracted)."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def _normalise_extensions(extensions: Iterable[str]) -> frozenset[str]:
    if isinstance(extensions, str):
        extensions = [extensions]
    normalised = frozenset(
        (ext if ext.startswith(".") else "." + ext).lower() for ext in extensions if ext
    )
    if not normalised:
        raise DataError("no file extensions given: expected e.g. ('.png', '.jpg')")
    return normalised


def _is_hidden(name: str) -> bool:
    # Skips .DS_Store, macOS "._frame.png" resource forks, .ipynb_checkpoints and the like.
    return name.startswith(".")


def _child_dirs(folder: Path) -> dict[str, Path]:
    """Sub-folders of ``folder`` by lower-cased name (layout folder names are matched case-insensitively)."""
    found: dict[str, Path] = {}
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return found
    for entry in entries:
        if not _is_hidden(entry.name) and entry.is_dir():
            found.setdefault(entry.name.lower(), Path(entry.path))
    return found


def _child_files(folder: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return found
    for entry in entries:
        if not _is_hidden(entry.name) and entry.is_file():
            found.setdefault(entry.name.lower(), Path(entry.path))
    return found


def _short_listing(folder: Path, limit: int = 8) -> str:
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as error:
        return f"unreadable ({error.strerror})"
    names = [e.name + ("/" if e.is_dir() else "") for e in entries if not _is_hidden(e.name)]
    if not names:
        return "empty folder"
    shown = ", ".join(names[:limit])
    return shown + (f", ... (+{len(names) - limit} more)" if len(names) > limit else "")


def _walk_files(folder: Path, extensions: frozenset[str]) -> list[Path]:
    """All files under ``folder`` (any depth, following links) with one of ``extensions``, sorted.

    A linked folder is entered once (a link loop, or two links to one folder, would count the same
    files again); dangling links, loops and unreadable folders are skipped with a warning."""
    from dflab.progress import warn

    found: list[Path] = []
    seen_dirs: set[tuple[int, int]] = set()
    seen_files: set[tuple[int, int]] = set()

    def unreadable(err: OSError) -> None:
        warn(f"{err.filename}: skipped, folder not readable ({err.strerror})")

    for current, dirs, files in os.walk(folder, followlinks=True, onerror=unreadable):
        stat = os.stat(current)
        if (stat.st_dev, stat.st_ino) in seen_dirs:
            warn(f"{current}: skipped, a link to a folder already scanned (a link loop?)")
            dirs[:] = []
            continue
        seen_dirs.add((stat.st_dev, stat.st_ino))
        dirs[:] = sorted(d for d in dirs if not _is_hidden(d))
        for name in sorted(files):
            if _is_hidden(name) or os.path.splitext(name)[1].lower() not in extensions:
                continue
            path = Path(current) / name
            try:
                file_stat = path.stat()
            except OSError:
                warn(f"{path}: skipped, a dangling link")
                continue
            if (file_stat.st_dev, file_stat.st_ino) in seen_files:
                warn(f"{path}: skipped, the same file as another one already listed (a link)")
                continue
            seen_files.add((file_stat.st_dev, file_stat.st_ino))
            found.append(path)
    return found


def _label_dirs(folder: Path) -> dict[int, Path]:
    children = _child_dirs(folder)
    return {label: children[name] for label, name in LABEL_NAMES.items() if name in children}


def _parse_labels(values: pd.Series, source: Path) -> pd.Series:
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


def _longest_prefix_match(name: str, candidates: set[str]) -> str | None:
    """The longest ``c`` in ``candidates`` with ``name == c + '_' + rest`` (e.g. 0001_fake -> 0001)."""
    cut = name.rfind("_")
    while cut > 0:
        if name[:cut] in candidates:
            return name[:cut]
        cut = name.rfind("_", 0, cut)
    return None


def _link_pairs_by_name(records: list[dict]) -> None:
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


def _disambiguate_videos(records: list[dict]) -> None:
    """Prefix ``real/`` or ``fake/`` to a video name used under both labels, so the two stay apart."""
    labels_of: dict[tuple[str, str, str], set[int]] = {}
    for rec in records:
        labels_of.setdefault((rec["dataset"], rec["split"], rec["video"]), set()).add(rec["label"])
    for rec in records:
        if len(labels_of[(rec["dataset"], rec["split"], rec["video"])]) > 1:
            rec["video"] = f"{LABEL_NAMES[rec['label']]}/{rec['video']}"


def _tree_records(
    label_dirs: dict[int, Path], extensions: frozenset[str], split: str, dataset: str
) -> list[dict]:
    """Samples under ``{real,fake}/...``: a file directly under the label folder is its own video
    (its stem); a deeper image belongs to the video named by its folder path below the label folder;
    a deeper video file is named by its path below the label folder without suffix."""
    records = []
    for label, label_dir in sorted(label_dirs.items()):
        for path in _walk_files(label_dir, extensions):
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


def _read_pairs_csv(csv_path: Path) -> pd.DataFrame:
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


def _link_pairs_from_csv(records: list[dict], pairs: pd.DataFrame) -> None:
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


def _layout_error(root: Path) -> DataError:
    return DataError(f"cannot read dataset at {root}: {_LAYOUT_HELP}; found: {_short_listing(root)}")


# --------------------------------------------------------------------------- layouts


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


def _ffpp_video_id(path: Path, top: Path) -> str:
    """The FaceForensics++ id of a sample: a video file's stem, or the folder holding a frame
    (skipping a generic 'frames'/'images' folder between the id and the frames)."""
    if is_video_file(path):
        return path.stem
    folder = path.parent
    if folder.name.lower() in _FFPP_FRAME_FOLDERS and folder.parent != top:
        folder = folder.parent
    return folder.name


def _ffpp_target(video_id: str) -> str | None:
    match = _FFPP_DFD_PAIR.match(video_id)
    if match:
        return f"{match.group(1)}__{match.group(2)}"
    match = _FFPP_PAIR.match(video_id)
    return match.group(1) if match else None


def _scan_ffpp(root: Path, extensions: frozenset[str], dataset: str) -> list[dict]:
    children = _child_dirs(root)
    originals, manipulated = children.get("original_sequences"), children.get("manipulated_sequences")
    if originals is None and manipulated is None:
        raise DataError(
            f"cannot read {root} as layout ffpp: expected original_sequences/ and/or "
            f"manipulated_sequences/; found: {_short_listing(root)}"
        )

    def sample_files(top: Path) -> list[Path]:
        return [
            path for path in _walk_files(top, extensions)
            if not _FFPP_SKIP_FOLDERS.intersection(p.lower() for p in path.relative_to(top).parts[:-1])
        ]

    def compression(path: Path, top: Path) -> str | None:
        return next((p.lower() for p in path.relative_to(top).parts[:-1] if _FFPP_COMPRESSION.match(p)), None)

    records: list[dict] = []
    if originals is not None:
        for path in sample_files(originals):
            video_id = _ffpp_video_id(path, originals)
            records.append(
                {"path": os.path.abspath(path), "label": REAL, "split": NO_SPLIT, "video": video_id,
                 "pair": video_id, "dataset": dataset, "method": "original",
                 "compression": compression(path, originals)}
            )
    if manipulated is not None:
        for method_dir in _child_dirs(manipulated).values():
            method_name = method_dir.name
            for path in sample_files(method_dir):
                video_id = _ffpp_video_id(path, method_dir)
                records.append(
                    {"path": os.path.abspath(path), "label": FAKE, "split": NO_SPLIT,
                     # The same id (e.g. 000_003) exists under every method: these are different videos.
                     "video": f"{method_name}/{video_id}", "pair": _ffpp_target(video_id),
                     "dataset": dataset, "method": method_name,
                     "compression": compression(path, method_dir)}
                )
    return records


def _dfdc_metadata_files(root: Path) -> list[Path]:
    files = _child_files(root)
    own = [files[name] for name in ("metadata.json", "metadata.csv") if name in files]
    if own:
        return own[:1]
    # The DFDC training set comes as dfdc_train_part_N/ folders, each with its own metadata.json.
    parts = []
    for child in _child_dirs(root).values():
        child_files = _child_files(child)
        parts += [child_files[n] for n in ("metadata.json", "metadata.csv") if n in child_files][:1]
    return parts


def _read_dfdc_metadata(meta: Path) -> pd.DataFrame:
    """-> DataFrame filename, label (raw), split, original."""
    if meta.suffix.lower() == ".json":
        try:
            entries = json.loads(meta.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise DataError(f"cannot read {meta}: invalid JSON ({error.msg} at line {error.lineno})") from error
        except (OSError, UnicodeDecodeError) as error:
            raise DataError(f"cannot read {meta}: {error}") from error
        if not isinstance(entries, dict) or not all(isinstance(v, dict) for v in entries.values()):
            raise DataError(
                f"{meta}: expected a JSON object {{\"<file>\": {{\"label\": \"FAKE\"|\"REAL\", ...}}, ...}}"
            )
        missing = [name for name, entry in entries.items() if "label" not in entry]
        if missing:
            raise DataError(f"{meta}: entry {missing[0]!r} has no 'label' ({len(missing)} such entries)")
        return pd.DataFrame(
            {
                "filename": list(entries),
                "label": [str(e["label"]) for e in entries.values()],
                "split": [e.get("split") for e in entries.values()],
                "original": [e.get("original") for e in entries.values()],
            }
        )
    try:
        table = pd.read_csv(meta, dtype=str, keep_default_na=False, na_values=[""])
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise DataError(f"cannot read {meta}: {error}") from error
    table.columns = [c.strip().lower() for c in table.columns]
    if "filename" not in table or "label" not in table:
        raise DataError(
            f"{meta}: expected columns filename,label[,original,split]; found {','.join(table.columns) or 'none'}"
        )
    return pd.DataFrame(
        {
            "filename": table["filename"],
            "label": table["label"],
            "split": table["split"] if "split" in table else None,
            "original": table["original"] if "original" in table else None,
        }
    )


def _dfdc_index(folder: Path, extensions: frozenset[str]) -> tuple[dict[str, list[Path]], dict[str, Path]]:
    """Files by stem and folders by name, in ``folder`` and one level below it."""
    files_by_stem: dict[str, list[Path]] = {}
    dirs_by_name: dict[str, Path] = {}
    levels = [folder] + list(_child_dirs(folder).values())
    for level in levels:
        for path in _child_files(level).values():
            if path.suffix.lower() in extensions:
                files_by_stem.setdefault(path.stem, []).append(path)
        for sub in _child_dirs(level).values():
            dirs_by_name.setdefault(sub.name, sub)
    return files_by_stem, dirs_by_name


def _scan_dfdc(root: Path, extensions: frozenset[str], dataset: str) -> list[dict]:
    metadata_files = _dfdc_metadata_files(root)
    if not metadata_files:
        raise DataError(
            f"cannot read {root} as layout dfdc: expected metadata.json or metadata.csv; "
            f"found: {_short_listing(root)}"
        )
    records: list[dict] = []
    for meta in metadata_files:
        table = _read_dfdc_metadata(meta)
        labels = _parse_labels(table["label"], meta)
        files_by_stem, dirs_by_name = _dfdc_index(meta.parent, extensions)
        found_any = False
        for filename, label, split, original in zip(table["filename"], labels, table["split"], table["original"]):
            stem = Path(str(filename)).stem
            paths = list(files_by_stem.get(stem, []))
            if stem in dirs_by_name:
                paths += [p for p in _child_files(dirs_by_name[stem]).values() if p.suffix.lower() in extensions]
            if not paths:
                continue  # listed but not downloaded / not extracted: skip it
            found_any = True
            if label == REAL:
                pair = stem
            else:
                pair = Path(str(original)).stem if isinstance(original, str) and original.strip() else None
            split_name = str(split).strip() if isinstance(split, str) and split.strip() else NO_SPLIT
            for path in sorted(set(paths)):
                records.append(
                    {"path": os.path.abspath(path), "label": int(label), "split": split_name, "video": stem,
                     "pair": pair, "dataset": dataset}
                )
        if not found_any and len(table):
            example = table["filename"].iloc[0]
            raise DataError(
                f"{meta}: none of the {len(table)} files it lists exist under {meta.parent} "
                f"(e.g. {example}, nor a frame folder or image named after its stem)"
            )
    return records


def _scan_csv(csv_path: Path, dataset: str | None) -> pd.DataFrame:
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
    manifest = _normalise(table, csv_path)
    duplicated = manifest.duplicated(subset=["path", "split"], keep="first")
    if duplicated.any():
        conflicting = manifest[manifest["path"].isin(manifest.loc[duplicated, "path"])].groupby("path")["label"].nunique()
        if (conflicting > 1).any():
            raise DataError(f"{csv_path}: {conflicting.index[conflicting > 1][0]} is listed as both real and fake")
        from dflab.progress import warn

        warn(f"{csv_path}: {int(duplicated.sum())} duplicated row(s) dropped (e.g. {manifest.loc[duplicated, 'path'].iloc[0]})")
        manifest = manifest[~duplicated].reset_index(drop=True)
    missing = [p for p in manifest["path"] if not os.path.exists(p)]
    if missing:
        raise DataError(
            f"{csv_path}: {len(missing)} of {len(manifest)} listed files do not exist (e.g. {missing[0]})"
        )
    return manifest


def _normalise(table: pd.DataFrame, source: Path) -> pd.DataFrame:
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
    table["label"] = _parse_labels(table["label"], source)
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
    return _order(table)


def _order(table: pd.DataFrame) -> pd.DataFrame:
    extras = [c for c in table.columns if c not in MANIFEST_COLUMNS]
    table = table[list(MANIFEST_COLUMNS) + extras]
    table = table.sort_values(["dataset", "split", "label", "video", "path"], kind="stable")
    return table.reset_index(drop=True)


# --------------------------------------------------------------------------- public API


def detect_layout(root: str | os.PathLike[str]) -> str:
    """The layout name (one of ``LAYOUTS``) of the dataset at ``root``; DataError when none fits."""
    root = Path(root).expanduser()
    if root.is_file():
        if root.suffix.lower() == ".csv":
            return "csv"
        raise DataError(f"cannot read dataset at {root}: a file must be a CSV path,label[,split,video,pair]")
    if not root.is_dir():
        raise DataError(f"cannot read dataset at {root}: no such file or folder")
    files, dirs = _child_files(root), _child_dirs(root)
    if "metadata.json" in files or "metadata.csv" in files:
        return "dfdc"
    if "original_sequences" in dirs or "manipulated_sequences" in dirs:
        return "ffpp"
    if any(_label_dirs(dirs[split]) for split in LAB_SPLITS if split in dirs):
        return "lab"
    if _is_deepfakebench_dataset(root) or any(_is_deepfakebench_dataset(d) for d in dirs.values()):
        return "deepfakebench"
    if _label_dirs(root):
        return "realfake"
    if _dfdc_metadata_files(root):
        return "dfdc"
    raise _layout_error(root)


def scan(
    root: str | os.PathLike[str],
    *,
    layout: str | None = None,
    dataset: str | None = None,
    extensions: Iterable[str] | None = None,
) -> pd.DataFrame:
    """Manifest of the dataset at ``root`` (a folder, or a CSV file for layout csv).

    ``layout`` overrides auto-detection. ``dataset`` overrides the dataset name (default: the root
    folder's name; deepfakebench: each dataset folder's name; csv: a ``dataset`` column or the CSV's
    folder name). ``extensions`` is the exact set of file suffixes to take; by default images
    (``IMAGE_EXTENSIONS``), plus ``VIDEO_EXTENSIONS`` for the layouts that may hold videos (lab,
    ffpp, realfake, dfdc). Rows are sorted by dataset, split, label, video, path.
    """
    root = Path(root).expanduser()
    if layout is None:
        layout = detect_layout(root)
    elif layout not in LAYOUTS:
        raise DataError(f"unknown layout {layout!r}: expected one of {', '.join(LAYOUTS)}")
    if layout == "csv":
        if not root.is_file():
            raise DataError(f"layout csv needs a CSV file path,label[,split,video,pair]; {root} is not a file")
        return _scan_csv(root, dataset)
    if not root.is_dir():
        raise DataError(f"cannot read dataset at {root}: layout {layout} needs a folder")

    if extensions is None:
        exts = frozenset(IMAGE_EXTENSIONS) | (frozenset(VIDEO_EXTENSIONS) if layout in VIDEO_LAYOUTS else frozenset())
    else:
        exts = _normalise_extensions(extensions)
    name = dataset or os.path.basename(os.path.abspath(root))
    if layout == "lab":
        records = _scan_lab(root, exts, name)
    elif layout == "realfake":
        records = _scan_realfake(root, exts, name)
    elif layout == "deepfakebench":
        records = _scan_deepfakebench(root, exts, dataset)
    elif layout == "ffpp":
        records = _scan_ffpp(root, exts, name)
    else:
        records = _scan_dfdc(root, exts, name)
    if not records:
        raise DataError(
            f"no files with extensions {' '.join(sorted(exts))} found under {root} (layout {layout}); "
            f"found: {_short_listing(root)}"
        )
    if layout != "ffpp":  # ffpp ids are already unique (fakes carry their method)
        _disambiguate_videos(records)
    table = pd.DataFrame.from_records(records)
    table["label"] = table["label"].astype("int64")
    return _order(table)


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
    return table[list(MANIFEST_COLUMNS) + extras].reset_index(drop=True)


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


def group_ids(df: pd.DataFrame) -> np.ndarray:
    """Integer group per row such that rows sharing a video or a pair share a group: connected
    components of the rows' video and pair names (one name space, so a pair named after its real
    video joins that video even where the real row has no pair written)."""
    videos = df["video"].astype(str).to_numpy()
    pairs = df["pair"].to_numpy(dtype=object)
    has_pair = pd.notna(pairs)
    names = pd.Index(pd.unique(np.concatenate([videos, pairs[has_pair].astype(str)])))
    video_node = names.get_indexer(videos)
    pair_node = video_node.copy()
    pair_node[has_pair] = names.get_indexer(pairs[has_pair].astype(str))
    graph = coo_matrix((np.ones(len(df)), (video_node, pair_node)), shape=(len(names), len(names)))
    _, component = connected_components(graph, directed=False)
    return component[video_node]


def split_by_group(
    df: pd.DataFrame, *, valid_fraction: float = 0.2, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train/validation split of one split's rows (e.g. development) where no video and no pair
    falls on both sides, stratified roughly by label (scikit-learn's StratifiedGroupKFold; the
    validation side is one fold of round(1/valid_fraction)). Deterministic for a seed."""
    validate_manifest(df)
    if not 0.0 < valid_fraction < 1.0:
        raise DataError(f"valid_fraction must be between 0 and 1 (exclusive); got {valid_fraction}")
    splits = sorted(df["split"].unique())
    if len(splits) > 1:
        raise DataError(
            f"split_by_group expects rows of one split; got {', '.join(splits)} "
            "(filter first, e.g. df[df.split == 'development'])"
        )
    groups = group_ids(df)
    n_groups = len(np.unique(groups))
    # A fold is 1/n_splits of the data: take the smaller side as the fold and swap when needed.
    flip = valid_fraction > 0.5
    fold_fraction = 1.0 - valid_fraction if flip else valid_fraction
    # Stratified folds need every class in every fold: no more folds than the rarer class has groups.
    groups_per_label = pd.Series(groups).groupby(df["label"].to_numpy()).nunique()
    n_splits = min(max(2, round(1.0 / fold_fraction)), n_groups, int(groups_per_label.min()))
    if n_splits < 2 or len(groups_per_label) < 2:
        raise DataError(
            f"cannot split {splits[0]} rows into training and validation by video: "
            + (f"all {len(df)} rows form one video/pair group" if n_groups < 2 else
               "it needs at least 2 videos of each class (real and fake) "
               f"(has {', '.join(f'{int(n)} {LABEL_NAMES[int(label)]}' for label, n in groups_per_label.items())})"))
    folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        # "least populated class has fewer members than n_splits": the class check below says it better.
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        rest_idx, fold_idx = next(folds.split(np.zeros(len(df)), df["label"].to_numpy(), groups))
    train_idx, valid_idx = (fold_idx, rest_idx) if flip else (rest_idx, fold_idx)
    train, valid = df.iloc[np.sort(train_idx)], df.iloc[np.sort(valid_idx)]
    for side, part in (("train", train), ("validation", valid)):
        missing = [LABEL_NAMES[label] for label in (REAL, FAKE) if not (part["label"] == label).any()]
        if missing:
            raise DataError(
                f"cannot split {splits[0]} rows ({n_groups} video/pair groups) with valid_fraction "
                f"{valid_fraction}: the {side} side would have no {' or '.join(missing)} samples"
            )
    return train.reset_index(drop=True), valid.reset_index(drop=True)


def _choose_videos(part: pd.DataFrame, limit: int, rng: np.random.Generator) -> set[str]:
    """At most ``limit`` videos per label from one split, taking whole video/pair groups first."""
    videos = part.drop_duplicates("video")[["video", "label"]].copy()
    videos["group"] = pd.Series(group_ids(part), index=part.index).loc[videos.index].to_numpy()
    members = {g: sub for g, sub in videos.groupby("group", sort=True)}
    group_names = list(members)
    order = [group_names[i] for i in rng.permutation(len(group_names))]
    room = {REAL: limit, FAKE: limit}
    chosen: set[str] = set()
    leftovers = []
    for group in order:
        counts = members[group]["label"].value_counts()
        if all(counts.get(label, 0) <= room[label] for label in room):
            chosen.update(members[group]["video"])
            for label in room:
                room[label] -= int(counts.get(label, 0))
        else:
            leftovers.append(group)
    # Groups too big for what is left: fill the remaining room one video at a time.
    for group in leftovers:
        for video, label in zip(members[group]["video"], members[group]["label"]):
            if room[label] > 0:
                chosen.add(video)
                room[label] -= 1
    return chosen


def subsample(
    df: pd.DataFrame,
    *,
    per_video: int | None = None,
    max_videos_per_label: int | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Keep at most ``per_video`` rows per video (evenly spaced in path order) and at most
    ``max_videos_per_label`` videos per (split, label), keeping real/fake pairs together where the
    limit allows. Row order is kept; deterministic for a seed."""
    validate_manifest(df)
    for name, value in (("per_video", per_video), ("max_videos_per_label", max_videos_per_label)):
        if value is not None and value < 1:
            raise DataError(f"{name} must be at least 1; got {value}")
    keep = pd.Series(True, index=df.index)
    if max_videos_per_label is not None:
        rng = np.random.default_rng(seed)
        for _, part in df.groupby(["dataset", "split"], sort=True):
            chosen = _choose_videos(part, max_videos_per_label, rng)
            keep.loc[part.index] = part["video"].isin(chosen)
    if per_video is not None:
        kept = df[keep.to_numpy()].sort_values(["dataset", "split", "video", "path"], kind="stable")
        by_video = kept.groupby(["dataset", "split", "video"], sort=False)
        position = by_video.cumcount().to_numpy()
        size = by_video["path"].transform("size").to_numpy()
        # Frame p of n is kept when it is one of floor(j*(n-1)/(k-1) + 0.5), j = 0..k-1 (k = per_video):
        # evenly spaced, first and last included. floor(x + 0.5), not np.round: banker's rounding
        # could pick one index twice.
        k = per_video
        if k == 1:
            picked = position == 0
        else:
            step = (size - 1) / (k - 1)
            nearest_j = np.floor(position / np.maximum(step, 1e-12) + 0.5)
            picked = np.floor(nearest_j * step + 0.5) == position
        picked |= size <= k
        keep.loc[kept.index[~picked]] = False
    return df[keep.to_numpy()].reset_index(drop=True)
