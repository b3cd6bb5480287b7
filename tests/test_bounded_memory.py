"""Bounded memory on big inputs: ``dflab predict`` scores a folder a chunk at a time and writes each
chunk's rows before it scores the next, so it never holds every image, score or row at once
(peak RSS at 10k-100k images is measured by ``benchmarks/bench_memory.py``, not here)."""

from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from dflab.inference import predict
from dflab.detectors.handcrafted.ela import ELADetector


@pytest.fixture()
def image_folder(tmp_path):
    rng = np.random.default_rng(1)
    for i in range(10):
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(tmp_path / f"{i:02d}.jpg", quality=90)
    return tmp_path


def _dflab(monkeypatch, *args) -> None:
    from dflab.cli import main

    monkeypatch.setattr(sys, "argv", ["dflab", *map(str, args)])
    main()


def test_predict_scores_a_chunk_at_a_time_and_writes_each_before_the_next(tiny_ela_model, image_folder, tmp_path,
                                                                        monkeypatch):
    monkeypatch.setattr(predict, "PREDICT_CHUNK", 4)
    csv = tmp_path / "scores.csv"
    seen: list[tuple[int, int]] = []  # (files asked for, rows already in the CSV) per scoring call
    original = ELADetector.predict_proba

    def watched(self, images, **kwargs):
        seen.append((len(images), len(pd.read_csv(csv)) if csv.exists() else 0))
        return original(self, images, **kwargs)

    monkeypatch.setattr(ELADetector, "predict_proba", watched)
    _dflab(monkeypatch, "predict", image_folder, "--model", tiny_ela_model, "--faces", "whole", "--csv", csv,
           "--json", tmp_path / "scores.json", "-q", "--workers", "1")
    assert seen == [(4, 0), (4, 4), (2, 8)]
    table = pd.read_csv(csv)
    assert table["path"].tolist() == sorted(str(p) for p in image_folder.glob("*.jpg"))
    assert table["p_fake"].between(0, 1).all()
    payload = json.loads((tmp_path / "scores.json").read_text())
    assert [row["path"] for row in payload["results"]] == table["path"].tolist()  # every chunk in the JSON


def test_predict_in_chunks_yields_before_the_input_is_done(tiny_ela_model, image_folder):
    from dflab.detectors import load_detector

    scorer = load_detector(tiny_ela_model, workers=1)
    files = sorted(image_folder.glob("*.jpg"))
    chunks = predict.predict_in_chunks(scorer, files, predict.PredictOptions(faces="whole"), chunk_size=3)
    first = next(chunks)  # a generator: one chunk is scored, the rest not yet
    assert [row["path"] for row in first["rows"]] == [str(f) for f in files[:3]]
    assert [len(chunk["rows"]) for chunk in chunks] == [3, 3, 1]
