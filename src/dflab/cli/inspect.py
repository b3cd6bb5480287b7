"""``dflab inspect``: a file's metadata as a forensic analyst reads it (the work is :mod:`dflab.media.metadata`'s)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from dflab.cli.common import UserError, existing_path, app, err_console, out_console
from dflab.runtime.progress import printable


@app.command("inspect")
def inspect_command(
    target: Path = typer.Argument(..., help="An image, a video, or a folder of them."),
    json_output: bool = typer.Option(False, "--json", help="Print every field as JSON instead of the table."),
) -> None:
    """Metadata as a forensic analyst reads it: EXIF/XMP, thumbnail, JPEG tables and quality, double JPEG,
    video container facts, C2PA content credentials."""
    from dflab.media.metadata import inspect_target, summary_fields

    reports, errors = inspect_target(existing_path(target, "input"))
    if json_output:
        out_console.print_json(json.dumps({"files": reports, "skipped": errors}))
    else:
        for report in reports:
            table = Table(title=escape(printable(report["path"])), show_header=False, box=None, title_justify="left")
            for field, value in summary_fields(report).items():
                table.add_row(f"[bold]{field}[/bold]", escape(printable(value)))
            out_console.print(table)
    for line in errors:
        err_console.print(f"[yellow]skipped:[/yellow] {escape(printable(line))}", highlight=False, soft_wrap=True)
    if not reports:
        raise UserError(f"{target}: no image or video file could be inspected")
