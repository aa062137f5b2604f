"""The ``aaas-profile`` command line: one module per command (``sweep``, ``fit``, ``simulate``, ``train``,
``models``, ``report``), each of which only parses, calls its stage module and prints. This module builds the
typer app from them and is the one place where a ``UserError`` or ``OSError`` becomes one line and an exit.

``python -m aaas_profile.cli`` and ``torchrun -m aaas_profile.cli`` run it (``__main__.py``).
"""

from __future__ import annotations

from typing import Annotated

import typer
from typer.core import TyperGroup

from aaas_profile import __version__
from aaas_profile.cli import declared, fit, models, report, simulate, sweep, train
from aaas_profile.cli.common import fail, set_output
from aaas_profile.errors import UserError, os_error_line
from aaas_profile.options import SweepOptions
from aaas_profile.sim.registry import names as policy_names


def reflow(doc: str | None) -> str:
    """A command's docstring as its help: prose paragraphs re-flow to the terminal's width (typer keeps their
    source line breaks), example paragraphs (indented lines) keep theirs."""
    import inspect

    paragraphs = inspect.cleandoc(doc or "").split("\n\n")
    return "\n\n".join(p if any(line.startswith(" ") for line in p.splitlines()) else " ".join(p.split())
                       for p in paragraphs)


class OneLineErrors(TyperGroup):
    """The one place where any command's ``UserError`` or ``OSError`` becomes one line and a non-zero exit."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except typer.BadParameter as err:  # a value click cannot parse ("abc" for a number): one line, as ours
            fail(" ".join(err.format_message().split()), code=err.exit_code)
        except UserError as err:
            fail(str(err), code=err.exit_code)
        except OSError as err:
            fail(os_error_line(err))


app = typer.Typer(
    cls=OneLineErrors,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,  # typer's own --install-completion / --show-completion (bash, zsh, fish, PowerShell)
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"aaas-profile {__version__}")
        raise typer.Exit()


def main_options(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print only the command's result, as one JSON "
                                              "document on stdout (no tables, no progress bars).")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but warnings and errors.")] = False,
) -> None:
    """Quality-vs-steps profiles of diffusion inpainting for AIGC-as-a-Service planning (Du et al. 2023).

    Start with `aaas-profile sweep` (the bundled faces model, a few CPU minutes), then `fit` and `report`
    on its run folder. Global options go before the command: `aaas-profile --json fit results/demo`.
    """
    set_output(json_output, quiet)


app.callback(help=reflow(main_options.__doc__))(main_options)
# Each command's options come from its class in aaas_profile.options (cli/declared.py); the handler's docstring
# is its help.
for name, command in (("sweep", declared.command("sweep", sweep.sweep, merged=SweepOptions)),
                      ("fit", declared.command("fit", fit.fit)),
                      ("simulate", declared.command("simulate", simulate.simulate,
                                                    help_values={"policies": ", ".join(policy_names())})),
                      ("train", declared.command("train", train.train)),
                      ("report", declared.command("report", report.report))):
    app.command(name, help=reflow(command.__doc__))(command)

models_app = typer.Typer(help="Named models: list them, or import RePaint's checkpoints.", no_args_is_help=False)
app.add_typer(models_app, name="models")
models_app.callback(invoke_without_command=True, help=reflow(models.list_models.__doc__))(models.list_models)
models_app.command("import-repaint", help=reflow(models.import_repaint.__doc__))(
    declared.command("import-repaint", models.import_repaint))


def main() -> None:  # pragma: no cover - console entry for `python -m aaas_profile.cli`
    app(prog_name="aaas-profile")
