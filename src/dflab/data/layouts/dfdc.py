"""Layout ``dfdc``: DFDC parts with metadata.json (or metadata.csv) labels and originals."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from dflab.data.files import child_dirs, child_files_by_name, short_listing
from dflab.data.manifest import NO_SPLIT, REAL, DataError, parse_labels


def dfdc_metadata_files(root: Path) -> list[Path]:
    files = child_files_by_name(root)
    own = [files[name] for name in ("metadata.json", "metadata.csv") if name in files]
    if own:
        return own[:1]
    # The DFDC training set comes as dfdc_train_part_N/ folders, each with its own metadata.json.
    parts = []
    for child in child_dirs(root).values():
        child_files = child_files_by_name(child)
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
    levels = [folder] + list(child_dirs(folder).values())
    for level in levels:
        for path in child_files_by_name(level).values():
            if path.suffix.lower() in extensions:
                files_by_stem.setdefault(path.stem, []).append(path)
        for sub in child_dirs(level).values():
            dirs_by_name.setdefault(sub.name, sub)
    return files_by_stem, dirs_by_name


def scan_dfdc(root: Path, extensions: frozenset[str], dataset: str) -> list[dict]:
    metadata_files = dfdc_metadata_files(root)
    if not metadata_files:
        raise DataError(
            f"cannot read {root} as layout dfdc: expected metadata.json or metadata.csv; "
            f"found: {short_listing(root)}"
        )
    records: list[dict] = []
    for meta in metadata_files:
        table = _read_dfdc_metadata(meta)
        labels = parse_labels(table["label"], meta)
        files_by_stem, dirs_by_name = _dfdc_index(meta.parent, extensions)
        found_any = False
        for filename, label, split, original in zip(table["filename"], labels, table["split"], table["original"]):
            stem = Path(str(filename)).stem
            paths = list(files_by_stem.get(stem, []))
            if stem in dirs_by_name:
                paths += [p for p in child_files_by_name(dirs_by_name[stem]).values() if p.suffix.lower() in extensions]
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
