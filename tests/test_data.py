"""Tests for dflab.data: dataset layouts -> manifest, manifest I/O, summaries, group splits, subsampling.

Fixture trees are built in tmp_path. Image files are real 8x8 PNG/JPEG images drawn from random
pixels with Pillow; video files (.mp4) are zero-length placeholders, because scanning only looks
at paths and never opens a video.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from dflab.data.manifest import (
    IMAGE_EXTENSIONS, MANIFEST_COLUMNS, VIDEO_EXTENSIONS, DataError, load_manifest, save_manifest, summary,
    summary_text,
)
from dflab.data.layouts import LAYOUTS, detect_layout, scan
from dflab.data.splits import group_ids, split_by_group, subsample
from dflab.data.files import is_video_file

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
_rng = np.random.default_rng(1234)


def write_image(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(_rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(path)
    return path


def write_placeholder(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def write_frames(folder: Path, count: int) -> None:
    for i in range(count):
        write_image(folder / f"{i:03d}.png")


def video_pairs(df: pd.DataFrame) -> dict[str, str | None]:
    """video -> pair (None when missing), one entry per video."""
    first = df.drop_duplicates("video")
    return {v: (None if pd.isna(p) else p) for v, p in zip(first["video"], first["pair"])}


# --------------------------------------------------------------------------- lab layout


@pytest.fixture
def lab_frames(tmp_path: Path) -> Path:
    """Task_1-like: per-video frame folders, fakes named <real>_fake, plus one unpaired fake."""
    root = tmp_path / "MiniUADFV"
    for split, ids in (("development", ["0000", "0001", "0002"]), ("evaluation", ["0003"])):
        for vid in ids:
            write_frames(root / split / "real" / vid, 3)
            write_frames(root / split / "fake" / f"{vid}_fake", 2)
    write_frames(root / "development" / "fake" / "0099_fake", 2)  # its real video is absent
    (root / "development" / "real" / ".DS_Store").write_bytes(b"junk")
    (root / "development" / "real" / "0000" / "notes.txt").write_text("not an image")
    return root


def test_lab_frame_folders_give_videos_splits_and_pairs(lab_frames: Path) -> None:
    assert detect_layout(lab_frames) == "lab"
    df = scan(lab_frames)
    assert list(df.columns[: len(MANIFEST_COLUMNS)]) == list(MANIFEST_COLUMNS)
    assert len(df) == 4 * 3 + 4 * 2 + 2
    assert set(df["dataset"]) == {"MiniUADFV"}
    assert all(Path(p).is_absolute() and Path(p).is_file() and p.endswith(".png") for p in df["path"])
    assert df["label"].dtype == np.int64
    pairs = video_pairs(df)
    assert pairs == {
        "0000": "0000", "0001": "0001", "0002": "0002", "0003": "0003",
        "0000_fake": "0000", "0001_fake": "0001", "0002_fake": "0002", "0003_fake": "0003",
        "0099_fake": None,
    }
    per_video = df.groupby("video").agg(split=("split", "unique"), label=("label", "unique"), n=("path", "size"))
    assert per_video.loc["0003_fake", "split"].tolist() == ["evaluation"]
    assert per_video.loc["0001", "label"].tolist() == [0] and per_video.loc["0001_fake", "label"].tolist() == [1]
    assert per_video.loc["0000", "n"] == 3  # notes.txt and .DS_Store are not samples
    # Deterministic, sorted order: scanning twice gives identical frames, sorted by split then label.
    pd.testing.assert_frame_equal(df, scan(lab_frames))
    keys = list(zip(df["split"], df["label"], df["video"], df["path"]))
    assert keys == sorted(keys)


def test_lab_flat_files_pairs_from_csv_and_single_split(tmp_path: Path) -> None:
    """Task_2_3-like: one image per video, <split>_pairs.csv, only development/ present."""
    root = tmp_path / "MiniDFDC"
    reals, fakes = ["aaa", "bbb", "ccc"], ["xqz", "ywv", "zzt"]
    for name in reals:
        write_image(root / "development" / "real" / f"{name}.jpg")
    for name in fakes:
        write_image(root / "development" / "fake" / f"{name}.jpg")
    write_image(root / "development" / "fake" / "lonely.jpg")  # not in the pairs file
    pd.DataFrame({"real": [f"{r}.jpg" for r in reals], "fake": [f"{f}.jpg" for f in fakes]}).to_csv(
        root / "development_pairs.csv", index=False
    )
    df = scan(root)
    assert set(df["split"]) == {"development"}
    assert len(df) == 7 and df["video"].is_unique
    pairs = video_pairs(df)
    assert {v: pairs[v] for v in fakes} == dict(zip(fakes, reals))
    assert {v: pairs[v] for v in reals} == {r: r for r in reals}
    assert pairs["lonely"] is None


def test_lab_flat_files_name_rule_and_label_clash(tmp_path: Path) -> None:
    root = tmp_path / "flat"
    write_image(root / "evaluation" / "real" / "clip7.png")
    write_image(root / "evaluation" / "fake" / "clip7_swap.png")
    write_image(root / "evaluation" / "real" / "same.png")
    write_image(root / "evaluation" / "fake" / "same.png")  # same stem under both labels
    df = scan(root)
    pairs = video_pairs(df)
    assert pairs["clip7_swap"] == "clip7" and pairs["clip7"] == "clip7"
    # The clashing stem becomes two distinct videos, so a split cannot mistake them for one.
    assert {"real/same", "fake/same"} <= set(df["video"])
    assert df["video"].is_unique


def test_lab_bad_pairs_csv_names_the_file(tmp_path: Path) -> None:
    root = tmp_path / "badpairs"
    write_image(root / "development" / "real" / "a.png")
    write_image(root / "development" / "fake" / "b.png")
    (root / "development_pairs.csv").write_text("original,manipulated\na.png,b.png\n")
    with pytest.raises(DataError, match=r"development_pairs\.csv: expected columns real,fake"):
        scan(root)


# --------------------------------------------------------------------------- realfake


def test_realfake_any_depth_with_video_files(tmp_path: Path) -> None:
    root = tmp_path / "rf"
    write_frames(root / "real" / "actorA" / "take1", 2)
    write_image(root / "real" / "single.jpg")
    write_placeholder(root / "real" / "clip.mp4")
    write_frames(root / "fake" / "take1_x", 2)
    write_placeholder(root / "fake" / "clip_deepfake.MP4")  # upper-case suffix still counts
    write_placeholder(root / "fake" / "readme.md")
    assert detect_layout(root) == "realfake"
    df = scan(root)
    assert set(df["split"]) == {"all"}
    assert set(df["video"]) == {"actorA/take1", "single", "clip", "take1_x", "clip_deepfake"}
    assert df["path"].map(is_video_file).sum() == 2
    pairs = video_pairs(df)
    assert pairs["clip_deepfake"] == "clip" and pairs["clip"] == "clip"
    assert pairs["take1_x"] is None  # its prefix names no real video ("actorA/take1" is not "take1")
    # An explicit extension list is taken exactly: no videos, only the JPEG.
    jpg_only = scan(root, extensions=["JPG"])
    assert jpg_only["path"].map(lambda p: Path(p).suffix).tolist() == [".jpg"]


# --------------------------------------------------------------------------- deepfakebench


def test_deepfakebench_several_datasets_and_single_dataset_root(tmp_path: Path) -> None:
    root = tmp_path / "dfb"
    for name in ("CelebMini", "UADFVMini"):
        write_frames(root / name / "real" / "frames" / "v1", 2)
        write_frames(root / name / "fake" / "frames" / "v1_fake", 2)
    assert detect_layout(root) == "deepfakebench"
    df = scan(root)
    assert sorted(df["dataset"].unique()) == ["CelebMini", "UADFVMini"]
    assert len(df) == 8
    assert set(video_pairs(df).values()) == {"v1"}
    single = scan(root / "CelebMini")
    assert detect_layout(root / "CelebMini") == "deepfakebench"
    assert set(single["dataset"]) == {"CelebMini"} and len(single) == 4
    assert set(single["video"]) == {"v1", "v1_fake"}


def test_layout_override(tmp_path: Path) -> None:
    root = tmp_path / "dfb1"
    write_frames(root / "real" / "frames" / "v1", 2)
    write_frames(root / "fake" / "frames" / "v2", 2)
    assert set(scan(root)["video"]) == {"v1", "v2"}  # auto: deepfakebench
    # Forced to realfake, the frames/ folder becomes part of the video name.
    forced = scan(root, layout="realfake", dataset="custom")
    assert set(forced["video"]) == {"frames/v1", "frames/v2"}
    assert set(forced["dataset"]) == {"custom"}
    with pytest.raises(DataError, match=r"layout lab"):
        scan(root, layout="lab")
    with pytest.raises(DataError, match=r"unknown layout 'nope'"):
        scan(root, layout="nope")
    assert set(LAYOUTS) == {"lab", "realfake", "deepfakebench", "ffpp", "dfdc", "csv"}


# --------------------------------------------------------------------------- ffpp


def test_ffpp_videos_frames_methods_and_pairs(tmp_path: Path) -> None:
    root = tmp_path / "FFpp"
    orig, manip = root / "original_sequences", root / "manipulated_sequences"
    write_placeholder(orig / "youtube" / "c23" / "videos" / "000.mp4")
    write_placeholder(orig / "youtube" / "c23" / "videos" / "001.mp4")
    write_placeholder(orig / "actors" / "c23" / "videos" / "01__walk.mp4")
    write_frames(orig / "youtube" / "c40" / "frames" / "002", 2)
    write_placeholder(manip / "Deepfakes" / "c23" / "videos" / "000_001.mp4")
    write_placeholder(manip / "Face2Face" / "c23" / "videos" / "000_001.mp4")
    write_placeholder(manip / "Deepfakes" / "masks" / "videos" / "000_001.mp4")  # a mask, not a sample
    write_placeholder(manip / "DeepFakeDetection" / "c23" / "videos" / "01_02__walk__ABCD1234.mp4")
    write_frames(manip / "NeuralTextures" / "c40" / "002_005" / "frames", 2)  # <id>/frames/...
    assert detect_layout(root) == "ffpp"
    df = scan(root)
    assert len(df) == 3 + 2 + 3 + 2
    assert not df["path"].str.contains("masks").any()
    videos = df.drop_duplicates("video").set_index("video")
    assert set(videos.index) == {
        "000", "001", "01__walk", "002",
        "Deepfakes/000_001", "Face2Face/000_001", "DeepFakeDetection/01_02__walk__ABCD1234",
        "NeuralTextures/002_005",
    }
    assert videos.loc["Deepfakes/000_001", "pair"] == "000"
    assert videos.loc["Face2Face/000_001", "pair"] == "000"
    assert videos.loc["DeepFakeDetection/01_02__walk__ABCD1234", "pair"] == "01__walk"
    assert videos.loc["NeuralTextures/002_005", "pair"] == "002"
    assert videos.loc["000", "pair"] == "000" and videos.loc["000", "label"] == 0
    assert videos.loc["Face2Face/000_001", "method"] == "Face2Face"
    assert videos.loc["001", "method"] == "original"
    assert videos.loc["002", "compression"] == "c40" and videos.loc["000", "compression"] == "c23"
    assert set(df["split"]) == {"all"}


# --------------------------------------------------------------------------- dfdc


def test_dfdc_json_skips_missing_and_finds_frame_folders(tmp_path: Path) -> None:
    root = tmp_path / "dfdc_part0"
    write_placeholder(root / "real1.mp4")
    write_placeholder(root / "fake1.mp4")
    write_frames(root / "faces" / "fake2", 3)  # one level down, named after the stem
    write_image(root / "real3.jpg")  # a crop stored under the listed video's stem
    meta = {
        "real1.mp4": {"label": "REAL", "split": "train", "original": None},
        "fake1.mp4": {"label": "FAKE", "split": "train", "original": "real1.mp4"},
        "fake2.mp4": {"label": "fake", "split": "train", "original": "real1.mp4"},
        "real3.mp4": {"label": "REAL", "split": "train"},
        "gone.mp4": {"label": "FAKE", "split": "train", "original": "real1.mp4"},
    }
    (root / "metadata.json").write_text(json.dumps(meta))
    assert detect_layout(root) == "dfdc"
    df = scan(root)
    assert "gone" not in set(df["video"])
    assert (df["video"] == "fake2").sum() == 3
    assert video_pairs(df) == {"real1": "real1", "real3": "real3", "fake1": "real1", "fake2": "real1"}
    assert set(df["split"]) == {"train"}
    assert df.set_index("video")["label"].groupby(level=0).first().to_dict() == {
        "real1": 0, "real3": 0, "fake1": 1, "fake2": 1
    }


def test_dfdc_csv_metadata_and_errors(tmp_path: Path) -> None:
    root = tmp_path / "dfdc_csv"
    write_image(root / "a.png")
    write_image(root / "b.png")
    pd.DataFrame({"filename": ["a.png", "b.png"], "label": ["REAL", "FAKE"], "original": ["", "a.png"]}).to_csv(
        root / "metadata.csv", index=False
    )
    df = scan(root)
    assert video_pairs(df) == {"a": "a", "b": "a"}
    assert set(df["split"]) == {"all"}

    nothing = tmp_path / "dfdc_empty"
    nothing.mkdir()
    (nothing / "metadata.json").write_text(json.dumps({"x.mp4": {"label": "REAL"}}))
    with pytest.raises(DataError, match=r"metadata\.json: none of the 1 files it lists exist"):
        scan(nothing)
    (nothing / "metadata.json").write_text(json.dumps({"x.mp4": {"label": "MAYBE"}}))
    with pytest.raises(DataError, match=r"metadata\.json: label must be 0/1 or real/fake; found 'MAYBE'"):
        scan(nothing)
    (nothing / "metadata.json").write_text("{not json")
    with pytest.raises(DataError, match=r"metadata\.json: invalid JSON"):
        scan(nothing)


# --------------------------------------------------------------------------- csv layout


def test_csv_layout_relative_paths_labels_and_defaults(tmp_path: Path) -> None:
    folder = tmp_path / "listed"
    write_image(folder / "img" / "r.png")
    write_image(folder / "img" / "f.png")
    write_image(tmp_path / "outside.png")
    table = pd.DataFrame(
        {"path": ["img/r.png", "img/f.png", str(tmp_path / "outside.png")], "label": ["Real", "FAKE", "1"]}
    )
    csv = folder / "list.csv"
    table.to_csv(csv, index=False)
    assert detect_layout(csv) == "csv"
    df = scan(csv)
    assert dict(zip(df["video"], df["label"])) == {"r": 0, "f": 1, "outside": 1}
    assert set(df["split"]) == {"all"} and df["pair"].isna().all()
    assert set(df["dataset"]) == {"listed"}
    assert (folder / "img" / "r.png").resolve() == Path(df.loc[df["video"] == "r", "path"].item()).resolve()

    table.assign(split=["development"] * 3, video=["v1", "v1", "v2"], pair=["p", "p", None]).to_csv(
        csv, index=False
    )
    full = scan(csv, dataset="mine")
    assert set(full["split"]) == {"development"} and set(full["dataset"]) == {"mine"}
    assert video_pairs(full) == {"v1": "p", "v2": None}

    table.assign(label=["real", "perhaps", "1"]).to_csv(csv, index=False)
    with pytest.raises(DataError, match=r"list\.csv: label must be 0/1 or real/fake; found 'perhaps'"):
        scan(csv)
    table.assign(path=["img/r.png", "img/none.png", "img/f.png"]).to_csv(csv, index=False)
    with pytest.raises(DataError, match=r"list\.csv: 1 of 3 listed files do not exist"):
        scan(csv)
    pd.DataFrame({"file": ["img/r.png"], "label": [0]}).to_csv(csv, index=False)
    with pytest.raises(DataError, match=r"list\.csv: expected columns path,label"):
        scan(csv)


# --------------------------------------------------------------------------- errors


def test_unreadable_layout_error_names_folder_and_listing(tmp_path: Path) -> None:
    root = tmp_path / "mystery"
    write_image(root / "pictures" / "x.png")
    (root / "README.txt").write_text("?")
    with pytest.raises(DataError) as caught:
        scan(root)
    message = str(caught.value)
    assert message.startswith(f"cannot read dataset at {root}: expected one of the layouts lab")
    assert "found: README.txt, pictures/" in message
    assert "\n" not in message
    with pytest.raises(DataError, match=r"no such file or folder"):
        scan(tmp_path / "absent")
    with pytest.raises(DataError, match=r"a file must be a CSV"):
        scan(root / "README.txt")


def test_empty_dataset_is_an_error(tmp_path: Path) -> None:
    root = tmp_path / "hollow"
    (root / "development" / "real" / "0000").mkdir(parents=True)
    (root / "development" / "fake").mkdir(parents=True)
    with pytest.raises(DataError, match=r"no files with extensions .* found under .*hollow \(layout lab\)"):
        scan(root)


def test_extension_constants() -> None:
    assert {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"} == set(IMAGE_EXTENSIONS)
    assert {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"} <= set(VIDEO_EXTENSIONS)
    assert is_video_file("a/B.MKV") and is_video_file("a/b.m4v") and not is_video_file("a/b.png")


def test_every_stage_takes_the_same_files(tmp_path):
    """One list of formats: the files `dflab faces extract` takes from a folder are those `dflab predict`
    and `data.scan` take (an .m4v was extracted but skipped by the other two before)."""
    from dflab.faces.crops import expand_sources
    from dflab.media.formats import media_files

    names = ["a.m4v", "b.mp4", "c.png", "d.JPG", "e.txt", "f.webm"]
    for label in ("real", "fake"):
        (tmp_path / label).mkdir()
        for name in names:
            (tmp_path / label / name).write_bytes(b"x")
    scanned = {Path(p).name for p in scan(tmp_path, layout="realfake")["path"]}
    predicted = {Path(p).name for p in media_files(tmp_path)[0]}
    extracted = {s.path.name for s in expand_sources(tmp_path)}
    assert scanned == predicted == extracted == set(names) - {"e.txt"}


# --------------------------------------------------------------------------- manifest I/O


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_save_load_round_trip(lab_frames: Path, tmp_path: Path, suffix: str) -> None:
    df = scan(lab_frames)
    path = save_manifest(df, tmp_path / "out" / f"manifest{suffix}")
    loaded = load_manifest(path)
    pd.testing.assert_frame_equal(loaded.astype(object), df.astype(object))
    if suffix == ".csv":  # a saved manifest is also a valid csv-layout dataset
        pd.testing.assert_frame_equal(scan(path, layout="csv").astype(object), df.astype(object))


def test_ffpp_extra_columns_survive_round_trip(tmp_path: Path) -> None:
    root = tmp_path / "ff"
    write_placeholder(root / "original_sequences" / "youtube" / "raw" / "videos" / "007.mp4")
    write_placeholder(root / "manipulated_sequences" / "FaceSwap" / "raw" / "videos" / "007_008.mp4")
    df = scan(root)
    loaded = load_manifest(save_manifest(df, tmp_path / "ff.csv"))
    assert loaded["method"].tolist() == ["original", "FaceSwap"]
    assert loaded["pair"].tolist() == ["007", "007"]  # stays text, not the number 7


def test_load_manifest_relative_paths_and_validation(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    good = pd.DataFrame(
        {"path": ["frames/a.png"], "label": [1], "split": ["all"], "video": ["a"], "pair": [""], "dataset": ["d"]}
    )
    good.to_csv(folder / "ok.csv", index=False)
    loaded = load_manifest(folder / "ok.csv")
    assert loaded["path"].item() == str((folder / "frames" / "a.png").resolve())
    assert loaded["pair"].isna().all() and loaded["label"].tolist() == [1]

    good.drop(columns=["video"]).to_csv(folder / "novideo.csv", index=False)
    with pytest.raises(DataError, match=r"novideo\.csv: missing manifest column\(s\) video"):
        load_manifest(folder / "novideo.csv")
    good.assign(label=[2]).to_csv(folder / "badlabel.csv", index=False)
    with pytest.raises(DataError, match=r"badlabel\.csv: label must be 0 \(real\) or 1 \(fake\); found 2"):
        load_manifest(folder / "badlabel.csv")
    with pytest.raises(DataError, match=r"expected a \.csv or \.parquet"):
        save_manifest(good, folder / "x.json")
    with pytest.raises(DataError, match=r"no such file"):
        load_manifest(folder / "absent.parquet")


# --------------------------------------------------------------------------- summary


def test_summary_counts(lab_frames: Path) -> None:
    table = summary(scan(lab_frames)).set_index(["split", "class"])
    assert table.loc[("development", "real"), ["samples", "videos", "paired_videos", "pairs"]].tolist() == [9, 3, 3, 3]
    assert table.loc[("development", "fake"), ["samples", "videos", "paired_videos", "pairs"]].tolist() == [8, 4, 3, 3]
    assert table.loc[("evaluation", "fake"), ["samples", "videos", "pairs"]].tolist() == [2, 1, 1]
    text = summary_text(scan(lab_frames))
    assert text.splitlines()[0] == "22 samples, 9 videos (MiniUADFV)"
    assert "development" in text and "evaluation" in text


# --------------------------------------------------------------------------- split_by_group


def synthetic_manifest(seed: int) -> pd.DataFrame:
    """Reals with 0-3 fakes each (fake k of real r is r_fk), some unpaired fakes, 2-5 frames per video."""
    rng = np.random.default_rng(seed)
    rows = []

    def add(video: str, label: int, pair: str | None) -> None:
        for frame in range(int(rng.integers(2, 6))):
            rows.append({"path": f"/d/{video}/{frame}.png", "label": label, "split": "development",
                         "video": video, "pair": pair, "dataset": "synthetic"})

    for r in range(24):
        real = f"r{r:02d}"
        n_fakes = int(rng.integers(0, 4))
        add(real, 0, real if n_fakes else None)
        for k in range(n_fakes):
            add(f"{real}_f{k}", 1, real)
    for u in range(6):
        add(f"u{u}", 1, None)
    return pd.DataFrame(rows)


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("fraction", [0.2, 0.35, 0.7])
def test_split_by_group_never_straddles(seed: int, fraction: float) -> None:
    df = synthetic_manifest(seed)
    train, valid = split_by_group(df, valid_fraction=fraction, seed=seed)
    assert len(train) + len(valid) == len(df)
    assert set(train["path"]).isdisjoint(valid["path"]) and set(train["path"]) | set(valid["path"]) == set(df["path"])
    assert set(train["video"]).isdisjoint(valid["video"])
    assert set(train["pair"].dropna()).isdisjoint(valid["pair"].dropna())
    # A real video and the fakes made from it land on the same side.
    side = {v: "train" for v in train["video"]} | {v: "valid" for v in valid["video"]}
    for fake in df.loc[df["label"] == 1, "video"].unique():
        if "_f" in fake:
            assert side[fake] == side[fake.split("_f")[0]]
    assert set(train["label"]) == {0, 1} and set(valid["label"]) == {0, 1}
    assert abs(len(valid) / len(df) - fraction) < 0.2
    _, again_valid = split_by_group(df, valid_fraction=fraction, seed=seed)
    pd.testing.assert_frame_equal(valid, again_valid)


def test_split_by_group_joins_real_without_pair_value_and_rejects_bad_requests() -> None:
    # As a CSV may give it: the pair written only on the fake, named after its real video.
    df = pd.DataFrame(
        {"path": [f"/x/{i}.png" for i in range(8)], "label": [0, 1, 0, 1, 0, 1, 0, 1], "split": "development",
         "video": ["a", "a_f", "b", "b_f", "c", "c_f", "d", "d_f"],
         "pair": [None, "a", None, "b", None, "c", None, "d"], "dataset": "t"}
    )
    groups = group_ids(df)
    assert groups[0] == groups[1] and groups[0] != groups[2]
    for seed in range(5):
        train, valid = split_by_group(df, valid_fraction=0.25, seed=seed)
        assert {v.split("_")[0] for v in train["video"]}.isdisjoint({v.split("_")[0] for v in valid["video"]})
    one_group = df.assign(pair="same")
    with pytest.raises(DataError, match=r"one video/pair group"):
        split_by_group(one_group)
    only_two = df.iloc[:3].assign(pair=[None, None, None])  # groups: real a, fake a_f, real b
    with pytest.raises(DataError, match=r"at least 2 videos of each class .*has 2 real, 1 fake"):
        for seed in range(10):
            split_by_group(only_two, valid_fraction=0.5, seed=seed)
    with pytest.raises(DataError, match=r"expects rows of one split; got development, evaluation"):
        split_by_group(df.assign(split=["development"] * 4 + ["evaluation"] * 4))
    with pytest.raises(DataError, match=r"valid_fraction"):
        split_by_group(df, valid_fraction=1.5)


# --------------------------------------------------------------------------- subsample


def test_subsample_frames_evenly_spaced() -> None:
    df = pd.DataFrame(
        {"path": [f"/v/{vid}/{i:02d}.png" for vid in ("a", "b") for i in range(16)],
         "label": [0] * 16 + [1] * 16, "split": "all", "video": ["a"] * 16 + ["b"] * 16,
         "pair": "a", "dataset": "t"}
    )
    out = subsample(df, per_video=4)
    assert out.loc[out["video"] == "a", "path"].str[-6:-4].tolist() == ["00", "05", "10", "15"]
    assert out.groupby("video").size().tolist() == [4, 4]
    assert len(subsample(df, per_video=100)) == 32
    with pytest.raises(DataError, match=r"per_video must be at least 1"):
        subsample(df, per_video=0)


def test_subsample_videos_keeps_pairs_together() -> None:
    df = synthetic_manifest(3)
    df = pd.concat([df, df.assign(split="evaluation", path=df["path"] + "e")], ignore_index=True)
    for seed in range(4):
        out = subsample(df, max_videos_per_label=5, per_video=2, seed=seed)
        per_cell = out.drop_duplicates(["split", "video"]).groupby(["split", "label"]).size()
        assert (per_cell <= 5).all() and len(per_cell) == 4
        assert out.groupby(["split", "video"]).size().max() <= 2
        for split, part in out.groupby("split"):
            videos = set(part["video"])
            # Whole groups come first: every kept paired fake has its real kept too.
            for fake in (v for v in videos if "_f" in v):
                assert fake.split("_f")[0] in videos
        pd.testing.assert_frame_equal(out, subsample(df, max_videos_per_label=5, per_video=2, seed=seed))
    assert not subsample(df, max_videos_per_label=5, seed=0).equals(subsample(df, max_videos_per_label=5, seed=1))


# --------------------------------------------------------------------------- real data (../shared)


def shared_dataset(name: str) -> Path:
    root = SHARED / "datasets" / name
    if not root.is_dir():
        pytest.skip(f"../shared not present: {root} is needed for this real-data test")
    return root


@pytest.mark.shared
def test_shared_task1_uadfv() -> None:
    df = scan(shared_dataset("Task_1"))
    assert detect_layout(shared_dataset("Task_1")) == "lab"
    videos = df.drop_duplicates("video")
    assert videos.groupby("label").size().to_dict() == {0: 49, 1: 49}
    assert videos.groupby(["split", "label"]).size().to_dict() == {
        ("development", 0): 37, ("development", 1): 37, ("evaluation", 0): 12, ("evaluation", 1): 12
    }
    # Up to 16 frames per video (a few videos have 12-15 in this copy).
    frames = df.groupby("video").size()
    assert frames.max() == 16 and frames.min() >= 12 and (frames == 16).mean() > 0.8
    fakes = videos[videos["label"] == 1]
    assert (fakes["pair"] == fakes["video"].str.removesuffix("_fake")).all()
    reals = set(videos.loc[videos["label"] == 0, "video"])
    assert set(fakes["pair"]) == reals
    dev = df[df["split"] == "development"]
    train, valid = split_by_group(dev, seed=0)
    assert set(train["pair"]).isdisjoint(valid["pair"])


@pytest.mark.shared
def test_shared_task2_3_dfdc_crops() -> None:
    root = shared_dataset("Task_2_3")
    df = scan(root)
    assert df.groupby("split").size().to_dict() == {"development": 2000, "evaluation": 600}
    assert df["video"].is_unique and df["pair"].notna().all()
    table = summary(df).set_index(["split", "class"])
    assert table.loc[("development", "fake"), "pairs"] == 1000
    assert table.loc[("evaluation", "real"), "paired_videos"] == 300
    listed = pd.read_csv(root / "evaluation_pairs.csv")
    by_file = dict(zip(df["path"].map(lambda p: Path(p).name), df["pair"]))
    assert all(by_file[f] == Path(r).stem for r, f in zip(listed["real"], listed["fake"]))
