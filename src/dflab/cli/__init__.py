"""The ``dflab`` command: wires the stages together (data -> faces -> detectors -> scores -> metrics ->
report). One module per command group; each command only parses its options and calls a stage.

User mistakes and bad input exit with status 2 and one line on stderr, never a traceback."""

from __future__ import annotations

import sys

import typer
from rich.markup import escape

# Each command module registers its commands on ``app`` when imported.
from dflab.cli import data, detectors, faces, inspect, lab, models, predict, weights  # noqa: F401
from dflab.cli.common import UserError, app, err_console
from dflab.cli.export import export_command
from dflab.cli.help import readable_help
from dflab.cli.serve import serve_command
from dflab.runtime.memory import keep_freed_memory
from dflab.runtime.progress import printable

app.command("serve")(serve_command)
app.command("export")(export_command)
readable_help(app)


#: The errors that are a user's or their input's, by module: printed as one line with exit 2.
USER_ERRORS = {
    "dflab.data.manifest": ("DataError",),
    "dflab.detectors.base": ("NotFittedError", "TrainingDataError"),
    "dflab.detectors.modelfile": ("ModelFileError",),
    "dflab.detectors.registry": ("ParameterError", "UnknownDetectorError"),
    "dflab.inference.models": ("ModelChoiceError",),
    "dflab.lab.protocol": ("LabBusyError",),
    "dflab.media.images": ("ImageError",),
    "dflab.media.video": ("VideoError",),
    "dflab.metrics.core": ("MetricsError",),
    "dflab.runtime.weights": ("WeightsError",),
}


def _user_errors() -> tuple[type[BaseException], ...]:
    # Only from modules already imported: an error raised by a module's class means the module is
    # loaded, and importing the others here (scikit-learn, pandas) made a mistyped path take 2 s.
    classes = [getattr(sys.modules[module], name) for module, names in USER_ERRORS.items()
               if module in sys.modules for name in names]
    return (UserError, *classes, FileNotFoundError, NotADirectoryError, PermissionError)


def _click_exceptions() -> tuple[type, type, type]:
    """(ClickException, UsageError, NoArgsIsHelpError) of the click that typer runs on: typer >= 0.29
    vendors its own copy (``typer._click``), whose classes are not click's."""
    try:
        from typer._click import exceptions
    except ImportError:  # typer before 0.29 runs on click itself
        from click import exceptions
    return exceptions.ClickException, exceptions.UsageError, getattr(exceptions, "NoArgsIsHelpError", ())


def _text_columns_hold_any_file_name() -> None:
    """pandas 3 stores text in Arrow strings, which must be valid UTF-8; a file name that is not
    (held by Python as surrogate escapes) would crash the first table that lists it. The command keeps
    pandas' object strings, which hold any name, and writes them back as the bytes they were."""
    import pandas as pd

    try:
        pd.set_option("future.infer_string", False)
    except (KeyError, ValueError, pd.errors.OptionError):  # a pandas without the option stores objects anyway
        pass


def _usage_error_line(err) -> str:
    """One line for a usage mistake: what was wrong and where the help is."""
    ctx = getattr(err, "ctx", None)
    command = ctx.command_path if ctx is not None else "dflab"
    return f"{err.format_message()} (see `{command} --help`)"


def main() -> None:
    """Console entry point: user mistakes and bad input print one line and exit 2, never a traceback."""
    keep_freed_memory()
    _text_columns_hold_any_file_name()
    click_exception, usage_error, no_args_is_help = _click_exceptions()
    try:
        app(standalone_mode=False)
    except typer.Exit as exit_:
        sys.exit(exit_.exit_code)
    except typer.Abort:
        err_console.print("aborted")
        sys.exit(130)
    except KeyboardInterrupt:
        err_console.print("interrupted: finished results are kept; run the same command again to resume")
        sys.exit(130)
    except Exception as err:  # noqa: BLE001 - classified below; unknown errors keep their traceback
        if no_args_is_help and isinstance(err, no_args_is_help):
            err.show()  # the help text itself
            sys.exit(0)
        if isinstance(err, usage_error):
            _print_error(_usage_error_line(err))
            sys.exit(2)
        if isinstance(err, click_exception):
            _print_error(err.format_message())
            sys.exit(2)
        if isinstance(err, _user_errors()):
            _print_error(str(err) or type(err).__name__)
            sys.exit(2)
        raise


def _print_error(message: str) -> None:
    line = message.strip().splitlines()[0] if message.strip() else "error"
    err_console.print(f"[red]error:[/red] {escape(printable(line))}", highlight=False, soft_wrap=True)
