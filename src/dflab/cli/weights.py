"""``dflab weights list`` and ``dflab weights fetch``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from dflab.cli.common import out_console, weights_app


def _declared():
    """:mod:`dflab.runtime.weights` with every family's weight files declared: the detectors (each
    module declares the files its networks use) and the BlazeFace face detector."""
    import dflab.faces.blazeface  # noqa: F401 (declares its weights)
    from dflab.detectors import available
    from dflab.runtime import weights

    available()  # imports every detector module
    return weights


@weights_app.command("list")
def weights_list() -> None:
    """The weight files dflab knows: shipped with the package (ready to use) or fetched, with their sha256."""
    from dflab.detectors.ready import ready_model_dir, ready_models

    weights = _declared()

    table = Table(show_header=True, header_style="bold", box=None)
    for column in ("name", "present", "sha256", "description", "licence"):
        table.add_column(column, overflow="fold")
    for name in ready_models():
        arrays = ready_model_dir(name) / "arrays.safetensors"
        table.add_row(name, "shipped", weights.sha256_file(arrays), f"ready detector (model card: {arrays.parent / 'MODEL_CARD.md'})",
                      "research use (DFDC and UADFV terms)")
    for name, entry in sorted(weights.WEIGHTS.items()):
        present = "yes" if weights.find(name) else "no"
        table.add_row(name, present, entry.sha256, entry.description, entry.licence)
    out_console.print(table)
    out_console.print(f"fetched weights folder: {weights.weights_dir()} (set $DFLAB_WEIGHTS to change it)")


@weights_app.command("fetch")
def weights_fetch(name: str = typer.Argument(..., help="Name from `dflab weights list`."),
                  url: Optional[str] = typer.Option(None, help="Fetch from this URL instead (a mirror, file://...)."),
                  dest: Optional[Path] = typer.Option(None, help="Folder or file to write (default: the weights folder).")
                  ) -> None:
    """Download a weight file and check its sha256."""
    path = _declared().fetch(name, dest=dest, url_override=url)
    out_console.print(escape(f"{name}: {path} (sha256 verified)"))
