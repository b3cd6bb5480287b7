"""``dflab detectors``: the registered detectors, their family and whether they are ready to use."""

from __future__ import annotations

from rich.table import Table

from dflab.cli.common import app, out_console


@app.command("detectors")
def detectors_command() -> None:
    """List the available detectors, one line each, and which are ready to use without training."""
    from dflab.detectors import available, create

    table = Table(show_header=True, header_style="bold", box=None)
    table.add_column("name")
    table.add_column("family")
    table.add_column("status")
    table.add_column("description")
    for name, entry in available().items():
        if entry.cls.trainable:
            status = "train first"
        else:
            status = "ready" if create(name).ready_to_load() else "needs weights"
        table.add_row(name, entry.family, status, entry.description)
    out_console.print(table)
    out_console.print("dflab predict FILE uses dflab-face when no --model or --detector is given.")
