"""The blocks a report is made of (headings, paragraphs, tables, figures, ...): what
:mod:`dflab.report.document` builds and :mod:`dflab.report.html` and :mod:`dflab.report.markdown` render."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

Row = Union[Sequence[str], tuple[str, str]]  # a (name, error) tuple spans the row with the error


@dataclass
class Header:
    title: str
    created: str
    version: str
    command: str


@dataclass
class Notice:
    text: str


@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Paragraph:
    lines: list[str]


@dataclass
class Bullets:
    items: list[tuple[str | None, str]]  # (bold term or None, text)
    notes: bool = False                  # small print under a task (e.g. "no fake scored")


@dataclass
class Table:
    header: Sequence[str]
    rows: Sequence[Row]
    fold: bool = False        # long table: folded behind "show all" where the format can
    settings: bool = False    # run settings: folded behind "Run settings" where the format can


@dataclass
class Figures:
    items: list[tuple[Path, str]]  # (PNG path, caption)


@dataclass
class Definitions:
    items: Sequence[tuple[str, str]]


Block = Union[Header, Notice, Heading, Paragraph, Bullets, Table, Figures, Definitions]


@dataclass
class Document:
    title: str
    blocks: list[Block] = field(default_factory=list)
