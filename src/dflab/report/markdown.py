"""Render the report document as Markdown (plots linked from ``plots/``)."""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any, Sequence

from dflab.report.blocks import (Bullets, Definitions, Document, Figures, Header, Heading, Notice, Paragraph, Row,
                                 Table)


def _cell(value: Any) -> str:
    # Escape markup so names like "<b>x</b>" show literally; pipes and newlines would break the table.
    return html.escape(str(value), quote=False).replace("|", "\\|").replace("\n", " ")


def _table(header: Sequence[str], rows: Sequence[Row]) -> str:
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        if isinstance(row, tuple):
            name, error = row
            cells = [name, f"failed: {error}"] + [""] * (len(header) - 2)
        else:
            cells = list(row)
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines)


def _image(path: Path, out_dir: Path, caption: str) -> str:
    try:
        relative = Path(path).resolve().relative_to(out_dir.resolve()).as_posix()
    except ValueError:
        relative = Path(path).as_posix()
    # Angle brackets let the link hold any file name; the alt text must not contain brackets.
    alt = re.sub(r"[\[\]]", "", caption)
    return f"![{alt}](<{relative}>)"


def _block(block, out_dir: Path) -> str:
    if isinstance(block, Header):
        command = block.command.replace("`", "'")  # a backtick would end the code span
        return (f"# {_cell(block.title)}\n\nCreated: {_cell(block.created)} · dflab version: {_cell(block.version)}  \n"
                f"Command: `{command}`")
    if isinstance(block, Notice):
        return f"> **⚠ {block.text}**"
    if isinstance(block, Heading):
        return "#" * block.level + " " + _cell(block.text)
    if isinstance(block, Paragraph):
        return "  \n".join(_cell(line) for line in block.lines)
    if isinstance(block, Bullets):
        if block.notes:
            return "\n".join(f"- _{_cell(text)}_" for _, text in block.items)
        return "\n".join(f"- **{term}:** {text}" if term else f"- {text}" for term, text in block.items)
    if isinstance(block, Table):
        return _table(block.header, block.rows)
    if isinstance(block, Figures):
        return "\n\n".join(_image(path, out_dir, caption) for path, caption in block.items)
    if isinstance(block, Definitions):
        return "\n".join(f"- **{term}:** {text}" for term, text in block.items)
    raise TypeError(f"no Markdown for {type(block).__name__}")


def render(document: Document, out_dir: Path) -> str:
    return "\n\n".join(_block(b, Path(out_dir)) for b in document.blocks) + "\n"
