"""``dflab faces extract``: face crops from videos and photos."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape
from rich.table import Table

from dflab.cli.cluster import ClusterOption, cluster_for
from dflab.cli.common import (FaceDetectorName, FaceDetectorOption, FacePolicy, QuietOption, existing_path, output_dir,
                              faces_app, out_console)
from dflab.runtime.progress import is_quiet, set_quiet


@faces_app.command("extract")
def faces_extract(
    sources: List[Path] = typer.Argument(..., help="Videos, images or folders of them."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder: crops/, faces.csv, sources.csv."),
    frames: int = typer.Option(32, "--frames", "-n", min=1, max=10_000, help="Frames sampled evenly over each video."),
    face_detector: FaceDetectorName = FaceDetectorOption,
    scale: float = typer.Option(1.3, min=0.1, max=10.0, help="Crop size relative to the detected box (margin)."),
    size: int = typer.Option(256, min=16, max=4096, help="Output crop size in pixels."),
    square: bool = typer.Option(True, "--square/--no-square", help="Square crops."),
    policy: FacePolicy = typer.Option(FacePolicy.largest, help="largest: one face per frame; all: every face, with a track id."),
    cluster: Optional[str] = ClusterOption,
    quiet: bool = QuietOption,
) -> None:
    """Detect and crop faces; write a manifest row per crop and a status per source."""
    from dflab.faces.distributed import face_detector_loader
    from dflab.faces.crops import extract_faces, read_sources

    set_quiet(quiet)
    for source in sources:
        existing_path(source, "input")
    out = output_dir(out, "--out")
    detector_name = FaceDetectorName(face_detector).value
    with cluster_for(cluster, face_detector_loader(detector_name)) as on_cluster:
        crops = extract_faces([str(s) for s in sources], out, n_frames=frames, detector=detector_name,
                              scale=scale, size=size, square=square, policy=FacePolicy(policy).value, cluster=on_cluster)
    status = read_sources(out)
    table = Table(show_header=True, header_style="bold", box=None)
    for column in ("source", "status", "frames", "with face", "faces", "reason"):
        table.add_column(column)
    for row in status.itertuples():
        table.add_row(*(escape(str(value)) for value in (row.source, row.status, row.frames, row.frames_with_face,
                                                          row.faces, row.reason)))
    if not is_quiet():
        out_console.print(table)
    out_console.print(escape(f"{len(crops)} face crops -> {out / 'faces.csv'}; status per source -> {out / 'sources.csv'}"))
