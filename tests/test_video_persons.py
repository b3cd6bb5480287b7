"""Several people in a video (issue 26 part 4): faces are followed over the sampled frames as
persons, each person gets a verdict (P(fake) over its frames, frames seen, a thumbnail), and the
video takes the verdict of its most-fake person, so a swapped face that is not the largest is not
averaged away or missed. A face seen in a frame or two is not a person."""

from __future__ import annotations

import json
from pathlib import Path

import av
import cv2
import numpy as np
import pandas as pd
import pytest
from skimage import data as skimage_data
from typer.testing import CliRunner

from dflab.cli import app
from dflab.faces.detection import Face
from dflab.faces.tracking import find_persons
from dflab.inference.video import predict_video
from dflab.metrics.core import aggregate_frames


def _face(x: float, y: float, side: float = 50.0, score: float = 0.99) -> Face:
    return Face(box=(x, y, x + side, y + side), score=score)


def test_persons_are_tracks_seen_often_enough_most_seen_first():
    frames = []
    for i in range(8):
        faces = [_face(10 + i, 10)]  # the subject, in every frame
        if i >= 4:
            faces.append(_face(200, 20 + i, 40))  # a second person from frame 4 on: half the frames
        if i == 2:
            faces.append(_face(400, 300, 30, 0.91))  # a stray detection in one frame
        frames.append(faces)
    persons = find_persons(frames)
    assert [len(person) for person in persons] == [8, 4]
    assert [position for position, _ in persons[1]] == [4, 5, 6, 7]
    assert all(face.box[0] >= 200 for _, face in persons[1])
    assert find_persons([[], []]) == []
    assert [len(p) for p in find_persons([[], [_face(0, 0)]])] == [1]  # one face once: still the person


def _two_people(path: Path, n: int = 8) -> Path:
    face = skimage_data.astronaut()[:400, 50:450]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=8)
        stream.width, stream.height, stream.pix_fmt, stream.options = 512, 288, "yuv420p", {"crf": "14"}
        for i in range(n):
            canvas = np.full((288, 512, 3), 90, np.uint8)
            canvas[20:260, 10 + i:250 + i] = cv2.resize(face[2 * i:, 2 * i:], (240, 240))  # the larger face
            canvas[60:210, 330:480] = cv2.GaussianBlur(cv2.resize(face[:, ::-1], (150, 150)), (0, 0), 1.2)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(canvas, format="rgb24")))
        container.mux(stream.encode())
    return path


@pytest.fixture(scope="module")
def two_people(tmp_path_factory) -> Path:
    return _two_people(tmp_path_factory.mktemp("persons") / "two.mp4")


@pytest.mark.slow
def test_a_video_takes_the_verdict_of_its_most_fake_person(two_people):
    from dflab.detectors import create

    detector = create("dflab-face").fit()
    result = predict_video(detector, two_people, n_frames=8, framing=detector.face_framing)
    assert result["status"] == "ok"
    persons = result["persons"]
    assert len(persons) == 2 and [p["person"] for p in persons] == [0, 1]
    assert {p["box"][0] < 256 for p in persons} == {True, False}  # one on each side of the frame
    for person in persons:
        frames = [f["p_fake"] for f in result["frame_scores"] if f["person"] == person["person"]]
        assert person["frames"] == len(frames) >= 2
        assert person["p_fake"] == pytest.approx(aggregate_frames(frames, "mean_prob"))
        assert person["thumbnail"].startswith("data:image/png;base64,")
    most_fake = max(persons, key=lambda p: p["p_fake"])
    assert result["person"] == most_fake["person"] and result["p_fake"] == most_fake["p_fake"]
    assert persons[0]["p_fake"] != persons[1]["p_fake"]
    times = [(f["timestamp"], f["person"]) for f in result["frame_scores"]]
    assert times == sorted(times)


@pytest.mark.slow
def test_predict_json_and_csv_carry_the_person(two_people, tmp_path):
    csv, out_json = tmp_path / "p.csv", tmp_path / "p.json"
    result = CliRunner().invoke(app, ["predict", str(two_people), "--frames", "8", "--csv", str(csv),
                                      "--json", str(out_json), "--heatmap", str(tmp_path / "heat")])
    assert result.exit_code == 0, result.output
    video = json.loads(out_json.read_text())["videos"][0]
    row = pd.read_csv(csv).iloc[0]
    assert row["face"] == video["person"] and row["p_fake"] == pytest.approx(video["p_fake"])
    assert "person 0:" in result.output and "person 1:" in result.output
    assert len(video["heatmaps"]) == len(video["frame_scores"])
    assert len(set(video["heatmaps"])) == len(video["heatmaps"])  # two faces of a frame: two files
