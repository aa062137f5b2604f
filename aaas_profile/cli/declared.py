"""Typer commands derived from the option classes in ``aaas_profile.options``: each field becomes one option (or
argument) with the field's type, default and help, and the help ends in the default read from the field, so no
help text restates a default by hand.

A command's handler receives its options as instances of those classes, checked on entry: comma lists parsed,
every number held to its range and no list item repeated (``options.check_all``). The one exception is a class
``merged`` with a ``--config`` file (the sweep's ``SweepOptions``): its options default to "not given" and the
handler receives only the given ones, by key, for ``SweepConfig.from_sources`` to lay over the file's keys and
check with them, through the same checks.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from dataclasses import MISSING, Field, fields
from typing import Annotated

import typer

from aaas_profile import limits, options


def _number(value) -> str:
    """A default as people write it: 0.995, 1e6 (not 1000000.0 or 1e+06)."""
    return f"{value:g}".replace("e+0", "e").replace("e+", "e") if isinstance(value, float) else str(value)


def shown_default(f: Field) -> str | None:
    """The help's ``[default: …]`` text of field ``f`` (None: typer's own, or none)."""
    spec, default = options.spec_of(f), options.default_of(f)
    if spec.shown is not None:
        return spec.shown
    if default is MISSING or default is None or isinstance(default, bool):
        return None
    value = ",".join(map(_number, default)) if isinstance(default, list | tuple) else _number(default)
    return f"{value} ({spec.why})" if spec.why else value


def _cli_type(kind):
    """The type typer parses an option as: a comma list is text, parsed on entry."""
    optional = type(None) in typing.get_args(kind)
    base = next((a for a in typing.get_args(kind) if a is not type(None)), kind) if optional else kind
    if options.is_list(kind):
        base = str
    return base, optional


def _parameter(f: Field, kind, merged: bool, help_values: dict) -> inspect.Parameter:
    spec, key = options.spec_of(f), options.key_of(f)
    text = spec.help.format(**help_values) if help_values else spec.help
    base, optional = _cli_type(kind)
    if spec.argument:
        return inspect.Parameter(key, inspect.Parameter.KEYWORD_ONLY,
                                 annotation=Annotated[base, typer.Argument(help=text)])
    shown = shown_default(f)
    default = options.default_of(f)
    if merged:  # not given unless given: the --config file's value or the field's default applies
        annotation, default, show = base | None, None, False
    elif spec.required:
        annotation, default, show = base, inspect.Parameter.empty, False
    else:
        annotation = base | None if optional or default is None else base
        if isinstance(default, list | tuple):
            default = ",".join(map(str, default))
        show = shown is None  # typer shows the value itself; words of ours replace it
    if shown is not None:
        text = f"{text} \\[default: {shown}]"
    info = typer.Option(*spec.decls, help=text, show_default=show)
    return inspect.Parameter(key, inspect.Parameter.KEYWORD_ONLY, default=default,
                             annotation=Annotated[annotation, info])


def _parse(f: Field, kind, value):
    """A comma list's text as a list (ints through ``limits.parse_ints``), anything else as typer gave it."""
    if value is None or not options.is_list(kind) or not isinstance(value, str):
        return value
    if options.list_item(kind) is int:
        return limits.parse_ints(value, options.key_of(f))
    return [item.strip() for item in value.split(",") if item.strip()]


def command(name: str, handler: Callable, merged: type | None = None, help_values: dict | None = None) -> Callable:
    """A typer command for ``options.COMMANDS[name]`` that calls ``handler`` with one instance per class (the
    ``merged`` class's given values as a dict instead; its fields take values, none is an on/off flag)."""
    classes = options.COMMANDS[name]
    kinds = {cls: options.types_of(cls) for cls in classes}
    parameters = [_parameter(f, kinds[cls][f.name], cls is merged, help_values or {})
                  for cls in classes for f in fields(cls)]

    def run(**values):
        given = []
        for cls in classes:
            if cls is merged:
                given.append({options.key_of(f): values[options.key_of(f)] for f in fields(cls)
                              if values[options.key_of(f)] is not None})
                continue
            parsed = {f.name: _parse(f, kinds[cls][f.name], values[options.key_of(f)]) for f in fields(cls)}
            options.check_all(name, {options.key_of(f): parsed[f.name] for f in fields(cls)})
            given.append(cls(**parsed))
        return handler(*given)

    run.__signature__ = inspect.Signature(parameters)
    run.__name__, run.__doc__ = handler.__name__, handler.__doc__
    return run
