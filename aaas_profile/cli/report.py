"""The ``report`` command: parses, calls ``aaas_profile.report``, prints."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from aaas_profile.cli.common import console, emit


def report(
    run: Annotated[Path, typer.Argument(help="Run folder (from sweep, fit and/or simulate).")],
    out: Annotated[Path | None, typer.Option(help="Where to write the page (a folder: FOLDER/report.html). \\[default: <run>/report.html]")] = None,  # noqa: E501
) -> None:
    """Write one self-contained HTML page of a run: configuration, outputs across step counts, the metric
    curves with their fits, and the simulator's results (each section when its data exists).

    Example:

      aaas-profile report results/celeba-thin
    """
    from aaas_profile import report as report_mod

    path = report_mod.write(run, out)
    console.print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, no external resources)", highlight=False)
    emit({"report": path, "bytes": path.stat().st_size})
