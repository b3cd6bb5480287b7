"""``--cluster``: predict, evaluate and faces extract on a local Dask cluster of 2 workers started here
give the same rows as the single-process run, resume as it does, and survive a worker that dies."""

from __future__ import annotations

import json
import os
import signal
import sys
import uuid
from pathlib import Path

import cloudpickle
import dask
import numpy as np
import pandas as pd
import pytest
from PIL import Image

pytest.importorskip("distributed")

from dflab.data.synthetic.faces import make_face  # noqa: E402
from dflab.detectors import create  # noqa: E402
from dflab.faces.detection import Face, FaceDetector  # noqa: E402
from dflab.faces.crops import extract_faces, read_sources  # noqa: E402
from dflab.inference.distributed import predict_on_cluster, scorer_loader  # noqa: E402
from dflab.inference import predict  # noqa: E402
from dflab.inference.predict import PREDICTION_COLUMNS, PredictOptions  # noqa: E402
from dflab.lab import scoring  # noqa: E402
from dflab.runtime.cluster import ClusterError, OnCluster, connect, map_chunks  # noqa: E402

# Functions and classes of this file run on the workers, which cannot import the tests: send them by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def client():
    with connect("local:2") as cluster_client:
        cluster_client.wait_for_workers(2)
        yield cluster_client


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """24 small faces (fakes: a blurred square pasted in), one bad file, and ela-logreg trained on others."""
    root = tmp_path_factory.mktemp("cluster")
    rng = np.random.default_rng(0)
    for index in range(24):
        face = make_face(rng, 48)
        label = "fake" if index % 2 else "real"
        if label == "fake":
            face[12:36, 12:36] = np.asarray(Image.fromarray(face[12:36, 12:36]).resize((6, 6)).resize((24, 24)))
        (root / "data" / label).mkdir(parents=True, exist_ok=True)
        Image.fromarray(face).save(root / "data" / label / f"{index:02d}.jpg", quality=90)
    (root / "data" / "fake" / "broken.jpg").write_bytes(b"not a jpeg")
    train = [make_face(rng, 48) for _ in range(16)]
    for face in train[1::2]:
        face[12:36, 12:36] = np.asarray(Image.fromarray(face[12:36, 12:36]).resize((6, 6)).resize((24, 24)))
    create("ela-logreg", workers=1, cache_dir=str(root / "train-cache")).fit(
        (train, np.arange(16) % 2)).save(root / "model")
    return root


def _dflab(monkeypatch, *args) -> int:
    from dflab.cli import main

    monkeypatch.setattr(sys, "argv", ["dflab", *map(str, args)])
    try:
        main()
    except SystemExit as done:
        return int(done.code or 0)
    return 0


def _sorted(table: pd.DataFrame) -> pd.DataFrame:
    return table.sort_values("path", kind="stable").reset_index(drop=True)


# -- the engine ----------------------------------------------------------------------------------------

def _load_token() -> str:
    return f"{os.getpid()}-{uuid.uuid4().hex}"


def _doubled(token: str, chunk: list[int]) -> tuple[str, list[int]]:
    return token, [2 * value for value in chunk]


def _dies_once(marker: str, token: str, chunk: list[int]) -> tuple[str, list[int]]:
    if chunk == [5, 6] and not Path(marker).exists():
        Path(marker).touch()
        os._exit(1)  # the worker process dies in the middle of this chunk
    return _doubled(token, chunk)


def _cannot_load() -> None:
    raise FileNotFoundError("/no/model: model not found")


@pytest.mark.slow
def test_chunks_load_once_per_worker_and_come_back_complete(client) -> None:
    chunks = [[1, 2], [3, 4], [5, 6], [7], [8, 9], [10]]
    results = dict(map_chunks(client, _load_token, _doubled, chunks))
    assert [results[i][1] for i in range(len(chunks))] == [[2 * v for v in chunk] for chunk in chunks]
    assert len({token for token, _ in results.values()}) <= 2  # one load per worker, not per chunk


@pytest.mark.slow
def test_a_worker_dying_mid_chunk_loses_nothing(client, tmp_path) -> None:
    from functools import partial

    chunks = [[1, 2], [3, 4], [5, 6], [7, 8]]
    results = dict(map_chunks(client, _load_token, partial(_dies_once, str(tmp_path / "died")), chunks))
    assert (tmp_path / "died").exists()
    assert [results[i][1] for i in range(len(chunks))] == [[2 * v for v in chunk] for chunk in chunks]
    client.wait_for_workers(2)  # the nanny restarts the dead worker


@pytest.mark.slow
def test_a_model_the_workers_cannot_load_is_one_line(client) -> None:
    with pytest.raises(ClusterError, match="cannot load the model on the cluster's workers .*FileNotFoundError"):
        list(map_chunks(client, _cannot_load, _doubled, [[1]]))


# -- the commands --------------------------------------------------------------------------------------

@pytest.mark.slow
def test_predict_on_cluster_gives_the_single_process_rows(client, corpus, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(predict, "PREDICT_CHUNK", 5)  # 5 chunks over the 2 workers
    address = client.scheduler.address
    single, clustered = tmp_path / "single.csv", tmp_path / "cluster.csv"
    common = ["predict", corpus / "data", "--model", corpus / "model", "--faces", "whole", "-q", "-j", "1"]
    assert _dflab(monkeypatch, *common, "--csv", single) == 0
    assert _dflab(monkeypatch, *common, "--csv", clustered, "--cluster", address) == 0
    one, many = pd.read_csv(single, keep_default_na=False), pd.read_csv(clustered, keep_default_na=False)
    assert list(many.columns) == PREDICTION_COLUMNS == list(one.columns)
    assert len(one) == 25 and (one["verdict"] == "error").sum() == 1
    pd.testing.assert_frame_equal(_sorted(many), _sorted(one))

    # Cut as a killed run leaves it (2 chunks recorded, half a row more), then resumed on the cluster:
    # the same rows as the single-process run.
    record = clustered.with_name(clustered.name + ".run.json")
    lines = clustered.read_text().splitlines(keepends=True)
    clustered.write_text("".join(lines[:11]) + lines[11][:9])
    record.write_text(json.dumps({**json.loads(record.read_text()), "rows": 10}))
    assert _dflab(monkeypatch, *common, "--csv", clustered, "--cluster", address) == 0
    pd.testing.assert_frame_equal(_sorted(pd.read_csv(clustered, keep_default_na=False)), _sorted(one))


@pytest.mark.slow
def test_evaluate_on_cluster_gives_the_same_scores_and_metrics_and_resumes(client, corpus, tmp_path,
                                                                           monkeypatch) -> None:
    monkeypatch.setattr(scoring, "SCORE_CHUNK", 5)
    address = client.scheduler.address
    common = ["evaluate", corpus / "data", "--model", corpus / "model", "--split", "all", "--n-boot", "50", "-q",
              "-j", "1"]
    assert _dflab(monkeypatch, *common, "--out", tmp_path / "single") == 0
    assert _dflab(monkeypatch, *common, "--out", tmp_path / "cluster", "--cluster", address) == 0
    one = pd.read_csv(tmp_path / "single" / "scores.csv", keep_default_na=False)
    many = pd.read_csv(tmp_path / "cluster" / "scores.csv", keep_default_na=False)
    pd.testing.assert_frame_equal(_sorted(many), _sorted(one))
    metrics = [json.loads((tmp_path / run / "metrics.json").read_text())["tasks"] for run in ("single", "cluster")]
    assert metrics[0] == metrics[1]

    # a rerun scores nothing again: the finished rows are kept, none added
    before = (tmp_path / "cluster" / "scores.csv").read_bytes()
    assert _dflab(monkeypatch, *common, "--out", tmp_path / "cluster", "--cluster", address) == 0
    assert (tmp_path / "cluster" / "scores.csv").read_bytes() == before


@pytest.mark.slow
def test_predict_survives_a_worker_killed_mid_run(client, corpus) -> None:
    files = sorted(str(p) for p in (corpus / "data").rglob("*.jpg"))
    on_cluster = OnCluster(client, scorer_loader(corpus / "model", None))
    options = PredictOptions(faces="whole")
    expected = _sorted(pd.DataFrame([row for result in predict_on_cluster(on_cluster, files, options)
                                     for row in result["rows"]]))
    rows = []
    for number, result in enumerate(predict_on_cluster(on_cluster, files, options, chunk_size=2)):
        rows += result["rows"]
        if number == 0:  # SIGKILL one worker while the other chunks are queued or running
            victim = sorted(client.run(os.getpid).values())[0]
            os.kill(victim, signal.SIGKILL)
    assert len(rows) == len(files)
    pd.testing.assert_frame_equal(_sorted(pd.DataFrame(rows)), expected)
    client.wait_for_workers(2)


class CentreFace(FaceDetector):
    """A stand-in face detector: the middle half of every image is a face."""

    name = "centre"

    def params(self) -> dict:
        return {"name": self.name}

    def detect_batch(self, images):
        return [[Face(box=(i.shape[1] / 4, i.shape[0] / 4, 3 * i.shape[1] / 4, 3 * i.shape[0] / 4), score=0.9)]
                for i in images]


@pytest.mark.slow
def test_faces_extract_on_cluster_gives_the_single_process_tables(client, corpus, tmp_path) -> None:
    sources = [str(corpus / "data")]
    single = extract_faces(sources, tmp_path / "single", detector=CentreFace(), size=32)
    clustered = extract_faces(sources, tmp_path / "cluster", detector=CentreFace(), size=32,
                              cluster=OnCluster(client, CentreFace))
    assert len(single) == 24
    crops = [table.assign(path=[Path(p).relative_to(root).as_posix() for p in table["path"]])
             for table, root in ((single, tmp_path / "single"), (clustered, tmp_path / "cluster"))]
    pd.testing.assert_frame_equal(crops[1], crops[0])  # same rows, same (source) order
    pd.testing.assert_frame_equal(read_sources(tmp_path / "cluster"), read_sources(tmp_path / "single"))
    for path in clustered["path"]:
        with Image.open(path) as crop:
            assert crop.size == (32, 32)


@pytest.mark.slow
def test_cluster_commands_start_a_local_cluster_and_refuse_a_bad_address(corpus, tmp_path, monkeypatch,
                                                                          capsys) -> None:
    assert _dflab(monkeypatch, "predict", corpus / "data" / "real", "--model", corpus / "model", "--faces",
                  "whole", "--csv", tmp_path / "local.csv", "-q", "--cluster", "local:1") == 0
    assert len(pd.read_csv(tmp_path / "local.csv")) == 12
    capsys.readouterr()
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        assert _dflab(monkeypatch, "predict", corpus / "data" / "real", "--model", corpus / "model", "--faces",
                      "whole", "-q", "--cluster", "tcp://127.0.0.1:9") == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: tcp://127.0.0.1:9: cannot reach the Dask scheduler") and "\n" not in error
