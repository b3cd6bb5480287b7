"""``dflab predict``: is this file (or folder of files) a deepfake?"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from dflab.cli.cluster import ClusterOption, cluster_for
from dflab.cli.common import (FaceDetectorName, FaceDetectorOption, FacesMode, QuietOption, UserError,
                              WorkersOption, existing_path, output_dir, output_file, app, out_console)
from dflab.cli.export import BackendOption
from dflab.inference.models import identity_scorer, load_scorer
from dflab.runtime.choices import Aggregation, Backend
from dflab.runtime.progress import info, is_quiet, printable, set_quiet


@app.command("predict")
def predict_command(
    target: Path = typer.Argument(..., help="An image, a video, or a folder of them."),
    model: Optional[Path] = typer.Option(None, "--model", "-m", help="Trained model folder or .zip."),
    detector: Optional[str] = typer.Option(
        None, "--detector", "-d", help="A ready-to-use detector (default: the shipped dflab-face)."),
    csv: Optional[Path] = typer.Option(
        None, "--csv", help="Also write the scores as CSV, a chunk at a time; an existing one written by the same "
                            "settings is resumed (only the files not in it are scored)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the --csv file instead of resuming it."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the scores as JSON."),
    threshold: Optional[float] = typer.Option(
        None, min=0.0, max=1.0,
        help="Decision threshold on P(fake) for the verdict (default: the model's validation EER threshold, else 0.5)."),
    faces: FacesMode = typer.Option(
        FacesMode.auto, "--faces",
        help="Images: detect = find every face and frame it as the model was trained; whole = score the image "
             "as given (a face crop); auto = detect when the model records its face framing (dflab-face does)."),
    frames: int = typer.Option(32, "--frames", "-n", min=1, max=10_000, help="Videos: frames sampled evenly over the video."),
    aggregation: Aggregation = typer.Option(Aggregation.mean_prob,
                                            help="Videos: mean_prob, mean_logit or confident (DFDC winner's rule)."),
    face_detector: FaceDetectorName = FaceDetectorOption,
    heatmap: Optional[Path] = typer.Option(
        None, "--heatmap", help="Write each explanation over the picture (photos) or over each frame's face (videos) here."),
    reference: Optional[Path] = typer.Option(
        None, "--reference", help="A folder of images of one person: score how strongly each face matches that "
                                  "identity (identity-reference; a --model of it keeps its calibration)."),
    workers: Optional[int] = WorkersOption,
    backend: Backend = BackendOption,
    cluster: Optional[str] = ClusterOption,
    quiet: bool = QuietOption,
) -> None:
    """P(fake) for each image or video: printed, and optionally written as CSV/JSON.

    Photos: with the ready detector every face is found, framed as in training and scored (one row per
    face). Videos: frames are sampled evenly, the faces in them are followed as persons, each person's
    frame scores are aggregated, and the video takes its most-fake person's P(fake)."""
    from dflab.media.formats import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, media_files

    set_quiet(quiet)
    existing_path(target, "input")
    csv, json_out = output_file(csv, "--csv"), output_file(json_out, "--json")
    if heatmap is not None:
        output_dir(heatmap, "--heatmap")
    left_out: list[tuple[str, str]] = []
    if target.is_dir():
        files, left_out = media_files(target)
        if not files:
            found = f"; left out {len(left_out)} file(s), e.g. {left_out[0][0]}: {left_out[0][1]}" if left_out else ""
            raise UserError(f"{target}: no image or video files found "
                            f"({', '.join(sorted(IMAGE_EXTENSIONS | VIDEO_EXTENSIONS))}){found}")
    else:
        files = [target]
    # The libraries come after the arguments are checked: a mistyped path is answered at once.
    import pandas as pd

    from dflab.inference.distributed import predict_on_cluster, scorer_loader
    from dflab.inference.outputs import PredictionsCSV, ResumeError
    from dflab.inference.photos import resolve_threshold
    from dflab.inference.predict import PREDICTION_COLUMNS, PredictOptions, left_out_predictions, predict_in_chunks

    scorer = load_scorer(model, detector, workers, Backend(backend).value) if reference is None \
        else identity_scorer(model, detector, reference)
    options = PredictOptions(
        threshold=threshold, faces=FacesMode(faces).value, frames=frames, aggregation=Aggregation(aggregation).value,
        face_detector=FaceDetectorName(face_detector).value, heatmap_dir=heatmap)
    table, done = None, frozenset()
    if csv:
        try:
            out = PredictionsCSV(csv, _run_settings(scorer, model, reference, options), PREDICTION_COLUMNS,
                                 overwrite=overwrite)
        except ResumeError as err:
            raise UserError(str(err)) from None
        done = out.done
        if done:
            left = len(out.left(files))
            note = "; --json holds this run's files only" if json_out else ""
            info(escape(f"resuming {csv}: {len(files) - left} of {len(files)} files already scored, {left} left{note}"))
    # Each chunk's rows are printed and appended to the CSV as they come (memory stays flat however
    # many files); only --json, one document, gathers every chunk's details until the end.
    # On a cluster the chunks come in the order they finish: the same rows, in another order.
    gathered = {"rows": [], "photos": [], "videos": []}
    result = {"threshold": resolve_threshold(scorer, threshold), "framing": None, **gathered}
    left_out_rows = [row for row in left_out_predictions(left_out) if row["path"] not in done]
    if left_out_rows:  # listed first, as rows like a bad file's, so that a run says what it did not score
        table = pd.DataFrame(left_out_rows, columns=PREDICTION_COLUMNS)
        _write_predictions(table, {"videos": []}, out if csv else None)
        gathered["rows"] += left_out_rows
    if len(out.left(files) if csv else files):
        with cluster_for(cluster, scorer_loader(model, detector, Backend(backend).value)) as on_cluster:
            chunks = predict_in_chunks(scorer, files, options, done=done) if on_cluster is None else \
                predict_on_cluster(on_cluster, files, options, done=done)
            for result in chunks:
                table = pd.DataFrame(result["rows"], columns=PREDICTION_COLUMNS)
                _write_predictions(table, result, out if csv else None)
                if json_out:
                    for key in gathered:
                        gathered[key] += result[key]
    if json_out:
        _write_json_predictions({**result, **gathered}, scorer.name, json_out)
    if len(files) == 1 and table is not None and len(table) == 1 and table["verdict"].iloc[0] == "error":
        raise UserError(f"{files[0]}: {table['error'].iloc[0]}")


def _run_settings(scorer, model: Optional[Path], reference: Optional[Path], options) -> dict:
    """What the CSV's rows depend on: a resumed run must have the same (see dflab.inference.outputs)."""
    from dflab import __version__
    from dflab.runtime.files import sha256_file

    model_file = None
    if model is not None:
        model_file = model / "config.json" if model.is_dir() else model
    return {"dflab": __version__, "detector": scorer.name, "model": str(model.resolve()) if model is not None else None,
            "model_sha256": sha256_file(model_file) if model_file is not None and model_file.is_file() else None,
            "reference": str(reference.resolve()) if reference is not None else None,
            "threshold": options.threshold, "faces": options.faces, "frames": options.frames,
            "aggregation": options.aggregation, "face_detector": options.face_detector}


def _write_predictions(rows, result: dict, out) -> None:
    """Print one chunk's rows and add them to the CSV (``out``, a PredictionsCSV, or None)."""
    import numpy as np

    if out is not None:
        out.append(rows)
    for row in rows.itertuples():
        score = "      -" if np.isnan(row.p_fake) else f"{row.p_fake:7.3f}"
        face = "" if row.face == "" else (f"  face {row.face} [{row.box}]" if row.box else f"  person {row.face}")
        extra = f"  ({row.error})" if row.error else ""
        out_console.print(escape(printable(f"{score}  {row.verdict:7}  {row.path}{face}{extra}")), highlight=False)
    for detail in result["videos"]:
        if detail["status"] == "ok" and not is_quiet():
            out_console.print(escape(printable(f"         {detail['video']}: {detail['aggregation']} over "
                                               f"{detail['frames_with_face']}/{detail['frames']} frames with a face")),
                              highlight=False)
            if len(detail["persons"]) > 1:  # the video takes its most-fake person's verdict
                out_console.print(escape("         " + "; ".join(
                    f"person {person['person']}: {person['p_fake']:.3f} over {person['frames']} frames"
                    for person in detail["persons"])), highlight=False)


def _write_json_predictions(result: dict, detector_name: str, json_out: Path) -> None:
    from dflab.inference.predict import prediction_payload

    json_out.write_text(json.dumps(prediction_payload(result, detector_name), indent=2), errors="surrogateescape")
