"""``dflab --help`` that reads like the rest of the tool: docstring paragraphs reflowed to the terminal
(typer 0.29 keeps each source line break after the first paragraph), no ``<bool>``/``<str>`` type labels
(a flag takes no value; a text option is named by what it holds: ``--split SPLIT``), and a usage line
with the argument names as click writes them (``DATA...``, not ``{DATA}...``).

Typer builds the parameter objects itself, so each command and group built as a readable one gives its
parameters the classes below; what they parse, their names and their error messages stay typer's."""

from __future__ import annotations

import inspect
import re

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

#: Typer's type labels and what the help shows instead (None: nothing, the name says it).
_LABELS = {"bool": None, "str": None, "int": "INTEGER", "int range": "INTEGER", "float": "NUMBER",
           "float range": "NUMBER", "path": "PATH", "file": "FILE", "directory": "DIRECTORY"}


def _label(param, ctx) -> str | None:
    typer_label = param.display_type(ctx)[1:-1]  # "<int range>" -> "int range"
    element = typer_label[len("list["):-1] if typer_label.startswith("list[") else typer_label
    return _LABELS.get(element, element)


class ReadableOption(TyperOption):
    def display_type_rich(self, ctx) -> str | None:
        if self.metavar is not None:
            return self.metavar
        if self.is_flag:
            return None
        label = _label(self, ctx)
        if label is None:  # text: named after the option, as click does
            label = max(self.opts, key=len).lstrip("-").replace("-", "_").upper()
        return label + ("..." if self.nargs != 1 else "")


class ReadableArgument(TyperArgument):
    def display_type_rich(self, ctx) -> str | None:
        return _label(self, ctx)

    def _usage_display_name(self) -> str:
        name = self.display_name_raw.upper()
        name = name if self.required else f"[{name}]"
        return name + ("..." if self.nargs != 1 else "")


def reflowed(text: str | None) -> str | None:
    """Each paragraph of a docstring on one line, for the terminal to wrap."""
    if text is None:
        return None
    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(re.sub(r"\s*\n\s*", " ", paragraph.strip()) for paragraph in paragraphs)


def _readable(param):
    if type(param) is TyperOption:
        param.__class__ = ReadableOption
    elif type(param) is TyperArgument:
        param.__class__ = ReadableArgument
    return param


class ReadableCommand(TyperCommand):
    def __init__(self, name, *, help=None, **settings):
        super().__init__(name, help=reflowed(help), **settings)
        self.params = [_readable(param) for param in self.params]

    def get_help_option(self, ctx):
        return _readable(super().get_help_option(ctx))


class ReadableGroup(TyperGroup):
    def __init__(self, *, help=None, **settings):
        super().__init__(help=reflowed(help), **settings)
        self.params = [_readable(param) for param in self.params]

    def get_help_option(self, ctx):
        return _readable(super().get_help_option(ctx))


def readable_help(app: typer.Typer) -> None:
    """Build ``app``, its sub-apps and all their commands as readable ones."""
    app.info.cls = ReadableGroup
    for command in app.registered_commands:
        command.cls = ReadableCommand
    for group in app.registered_groups:
        group.cls = ReadableGroup
        readable_help(group.typer_instance)
