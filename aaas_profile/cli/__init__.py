"""The ``aaas-profile`` command line: one module per command (``sweep``, ``fit``, ``simulate``, ``train``,
``models``, ``report``), each of which only parses, calls its stage module and prints. This module builds the
typer app from them and is the one place where a ``UserError`` or ``OSError`` becomes one line and an exit.

``python -m aaas_profile.cli`` and ``torchrun -m aaas_profile.cli`` run it (``__main__.py``).
"""

from __future__ import annotations

import typer
from typer.core import TyperGroup

from aaas_profile.cli import fit, models, report, simulate, sweep, train
from aaas_profile.cli.common import fail
from aaas_profile.errors import UserError, os_error_line


class OneLineErrors(TyperGroup):
    """The one place where any command's ``UserError`` or ``OSError`` becomes one line and a non-zero exit."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except UserError as err:
            fail(str(err), code=err.exit_code)
        except OSError as err:
            fail(os_error_line(err))


app = typer.Typer(
    help="Quality-vs-steps profiles of diffusion inpainting for AIGC-as-a-Service planning (Du et al. 2023).",
    cls=OneLineErrors,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("sweep")(sweep.sweep)
app.command("fit")(fit.fit)
app.command("simulate")(simulate.simulate)
app.command("train")(train.train)
app.command("report")(report.report)

models_app = typer.Typer(help="Named models: list them, or import RePaint's checkpoints.", no_args_is_help=False)
app.add_typer(models_app, name="models")
models_app.callback(invoke_without_command=True)(models.list_models)
models_app.command("import-repaint")(models.import_repaint)


def main() -> None:  # pragma: no cover - console entry for `python -m aaas_profile.cli`
    app(prog_name="aaas-profile")
