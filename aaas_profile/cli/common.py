"""What every command prints with: one console for output, one for errors, the one-line failure (used only by
the app in ``__init__``: commands raise ``UserError``), warnings, one progress-bar layout and one key/value table."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

console = Console()
err_console = Console(stderr=True)


@dataclass
class Output:
    """How this invocation prints, from the app's global options (set afresh by every invocation).

    ``json``: stdout holds only the command's machine-readable result (one JSON document, ``emit``); tables and
    progress bars are not printed. ``quiet``: nothing but warnings and errors (on stderr)."""

    json: bool = False
    quiet: bool = False


OUTPUT = Output()


def set_output(json_mode: bool, quiet: bool) -> None:
    OUTPUT.json, OUTPUT.quiet = json_mode, quiet
    console.quiet = json_mode or quiet


def _plain(value):
    """``value`` with NaN and infinities as null, paths and other objects as text: strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, bool | int | str):
        return value
    if hasattr(value, "item"):  # a numpy scalar
        return _plain(value.item())
    return str(value)


def emit(result: dict) -> None:
    """With ``--json``: print the command's result as one JSON document on stdout (NaN as null)."""
    if OUTPUT.json:
        typer.echo(json.dumps(_plain(result), indent=1, allow_nan=False))


def fail(message: str, code: int = 2) -> None:
    """Print a one-line error and exit non-zero. The message is text, not markup: "aaas-profile[ray]" stays whole."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def warn(message: str) -> None:
    """Print a one-line warning on stderr (the output on stdout stays a clean table)."""
    err_console.print(f"[yellow]warning:[/] {escape(message)}", highlight=False, soft_wrap=True)


def progress_bar(label: str, *fields: str, eta: bool = True) -> Progress:
    """The layout of every command's progress bar: bold label, bar, done/total, then ``fields`` (rich format
    strings such as ``"UNet image-forwards"`` or ``"loss {task.fields[loss]}"``), elapsed time and, with ``eta``,
    the time remaining. Not started: the caller starts it when the first unit of work is done or begins."""
    columns = [TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), *(TextColumn(f) for f in fields),
               TimeElapsedColumn()]
    if eta:
        columns += [TextColumn("ETA"), TimeRemainingColumn()]
    return Progress(*columns, console=console)


def key_value_table(title: str, rows: list[tuple[str, str]]) -> Table:
    """A two-column summary table; long values (paths) break across lines instead of being cut at 80 columns."""
    table = Table(title=title, show_header=False)
    table.add_column("field", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")
    for key, value in rows:
        table.add_row(key, value)
    return table
