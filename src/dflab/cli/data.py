"""``dflab data summary`` and ``dflab data manifest``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from dflab.cli.common import existing_path, output_file, data_app, out_console


@data_app.command("summary")
def data_summary(path: Path = typer.Argument(..., help="Dataset folder, or a manifest/CSV file."),
                 layout: Optional[str] = typer.Option(None, help="Override the detected layout."),
                 ) -> None:
    """Counts per split x label, videos and pairs."""
    from dflab import data

    manifest = read_dataset(path, layout)
    found = layout or (data.detect_layout(path) if path.is_dir() else "manifest")
    out_console.print(f"[bold]{escape(str(path))}[/bold] ({escape(str(manifest['dataset'].iloc[0]))}, layout {found})")
    out_console.print(data.summary_text(manifest), highlight=False)


@data_app.command("manifest")
def data_manifest(path: Path = typer.Argument(..., help="Dataset folder."),
                  out: Path = typer.Option(..., "--out", "-o", help="Output .csv or .parquet."),
                  layout: Optional[str] = typer.Option(None, help="Override the detected layout.")) -> None:
    """Scan a dataset folder and save its manifest."""
    from dflab import data

    manifest = read_dataset(path, layout)
    data.save_manifest(manifest, output_file(out, "--out"))
    out_console.print(escape(f"{len(manifest)} rows -> {out}"))


def read_dataset(path: Path, layout: Optional[str]):
    from dflab import data

    return data.read_dataset(existing_path(path, "dataset"), layout)
