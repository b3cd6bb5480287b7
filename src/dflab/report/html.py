"""Render the report document as one self-contained HTML page (plots embedded as base64 PNG)."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any, Sequence

from dflab.report.blocks import (Bullets, Definitions, Document, Figures, Header, Heading, Notice, Paragraph, Row,
                                 Table)

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
       max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { margin-bottom: 0.2em; }
.meta { color: #555; font-size: 0.92em; }
.meta code { background: #f3f3f3; padding: 0 0.3em; word-break: break-all; }
.synthetic-warning { border: 3px solid #c62828; background: #ffebee; color: #8e0000; padding: 0.8em 1em;
                     font-size: 1.25em; font-weight: bold; margin: 1em 0; }
table { border-collapse: collapse; margin: 0.6em 0 1.2em; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
td.error { color: #b71c1c; }
.figures { display: flex; flex-wrap: wrap; gap: 1em; }
.figures figure { margin: 0; }
.figures img { max-width: 520px; width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 0.85em; color: #555; }
.notes { color: #6d4c41; font-size: 0.9em; }
dt { font-weight: bold; margin-top: 0.5em; }
"""


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _table(header: Sequence[str], rows: Sequence[Row]) -> str:
    """An HTML table; a row given as (name, error) spans all columns with the error message."""
    parts = ["<table>", "<tr>" + "".join(f"<th>{_esc(h)}</th>" for h in header) + "</tr>"]
    for row in rows:
        if isinstance(row, tuple):
            name, error = row
            parts.append(
                f"<tr><td>{_esc(name)}</td><td class=\"error\" colspan=\"{len(header) - 1}\">"
                f"failed: {_esc(error)}</td></tr>"
            )
        else:
            parts.append("<tr>" + "".join(f"<td>{_esc(cell)}</td>" for cell in row) + "</tr>")
    parts.append("</table>")
    return "\n".join(parts)


def _embedded_png(path: Path, caption: str) -> str:
    """An <img> with the PNG inlined as base64, so the page needs no other file."""
    encoded = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return (
        f"<figure><img alt=\"{_esc(caption)}\" src=\"data:image/png;base64,{encoded}\">"
        f"<figcaption>{_esc(caption)}</figcaption></figure>"
    )


def _block(block) -> str:
    if isinstance(block, Header):
        return (f"<h1>{_esc(block.title)}</h1>\n<p class=\"meta\">Created: {_esc(block.created)} · dflab version: "
                f"{_esc(block.version)}<br>Command: <code>{_esc(block.command)}</code></p>")
    if isinstance(block, Notice):
        return f"<div class=\"synthetic-warning\">{_esc(block.text)}</div>"
    if isinstance(block, Heading):
        return f"<h{block.level}>{_esc(block.text)}</h{block.level}>"
    if isinstance(block, Paragraph):
        return "<p>" + "<br>".join(_esc(line) for line in block.lines) + "</p>"
    if isinstance(block, Bullets):
        items = "".join(f"<li><b>{_esc(term)}:</b> {_esc(text)}</li>" if term else f"<li>{_esc(text)}</li>"
                        for term, text in block.items)
        return f"<ul class=\"notes\">{items}</ul>" if block.notes else f"<ul>{items}</ul>"
    if isinstance(block, Table):
        if block.settings:
            rows = "".join(f"<tr><th>{_esc(k)}</th><td><code>{_esc(v)}</code></td></tr>" for k, v in block.rows)
            return f"<details><summary>Run settings</summary><table>{rows}</table></details>"
        table = _table(block.header, block.rows)
        return f"<details><summary>show all</summary>{table}</details>" if block.fold else table
    if isinstance(block, Figures):
        return "<div class=\"figures\">\n" + "\n".join(_embedded_png(p, c) for p, c in block.items) + "\n</div>"
    if isinstance(block, Definitions):
        return "<dl>" + "".join(f"<dt>{_esc(t)}</dt><dd>{_esc(d)}</dd>" for t, d in block.items) + "</dl>"
    raise TypeError(f"no HTML for {type(block).__name__}")


def render(document: Document) -> str:
    head = ["<!DOCTYPE html>", "<html lang=\"en\">", "<head>", "<meta charset=\"utf-8\">",
            f"<title>{_esc(document.title)}</title>", f"<style>{_CSS}</style>", "</head>", "<body>"]
    return "\n".join(head + [_block(b) for b in document.blocks] + ["</body>\n</html>\n"])
