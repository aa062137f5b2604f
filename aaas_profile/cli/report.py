"""The ``report`` command: parses, calls ``aaas_profile.report``, prints."""

from __future__ import annotations

from aaas_profile.cli.common import console, emit
from aaas_profile.errors import Interrupted
from aaas_profile.options import ReportOptions


def report(o: ReportOptions) -> None:
    """Write one self-contained HTML page of a run: configuration, outputs across step counts, the metric
    curves with their fits, and the simulator's results (each section when its data exists).

    Example:

      aaas-profile report results/celeba-thin
    """
    from aaas_profile import report as report_mod

    try:
        path = report_mod.write(o.run, o.out)
    except KeyboardInterrupt:
        raise Interrupted("interrupted: no report was written (an earlier one is kept whole); run the same "
                          "command again") from None
    console.print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, no external resources)", highlight=False)
    emit({"report": path, "bytes": path.stat().st_size})
