"""The ``fit`` command: parses, calls ``aaas_profile.fit``, prints. Registered in cli.py as
``app.command("fit")(cli_fit.fit)``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.table import Table

from aaas_profile import fit as fit_mod
from aaas_profile.errors import UserError
from aaas_profile.terminal import console, err_console, fail


def _interval(value: float, ci: tuple[float, float]) -> str:
    """The estimate and its interval; on a narrow terminal the cell wraps at the spaces (never cut)."""
    if ci[0] != ci[0]:  # NaN: no bootstrap
        return f"{value:.4g}"
    return f"{value:.4g} [{ci[0]:.3g}, {ci[1]:.3g}]"


def fit(
    run: Annotated[Path, typer.Argument(help="Run folder written by `aaas-profile sweep` (holds scores/).")],
    x: Annotated[str, typer.Option(help="x axis: steps, unet_calls or wall_s (seconds per image).")] = "steps",
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples over images for the intervals (0: none).")] = 200,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap.")] = 0,
    level: Annotated[float, typer.Option(help="Confidence level of the intervals.")] = 0.95,
    metrics: Annotated[str | None, typer.Option(help="Comma list of metrics to fit. \\[default: all in the run]")] = None,  # noqa: E501
    drop_nan: Annotated[bool, typer.Option("--drop-nan", help="Leave out NaN scores instead of stopping.")] = False,
    plots: Annotated[bool, typer.Option("--plots/--no-plots", help="Write plots/*.png.")] = True,
) -> None:
    """Fit the four-parameter quality model (Ax, Ay, Bx, By) to every model × mask × metric of a run, with
    bootstrap intervals, an AIC/BIC check against smooth saturating curves, and the runtime model.

    Examples:

      aaas-profile fit results/faces-20250101

      aaas-profile fit results/celeba-thin --x unet_calls --bootstrap 500 --seed 1

      aaas-profile fit results/celeba-thin --metrics dss,vif --no-plots

    Writes <run>/fit.json (schema: docs/fit-json.md) and <run>/plots/*.png, one figure per curve and a 2×3
    panel of the six metrics per model × mask.
    """
    names = [m.strip() for m in metrics.split(",") if m.strip()] if metrics else None
    try:
        result = fit_mod.fit_run(run, x=x, resamples=bootstrap, seed=seed, level=level, metrics=names,
                                 drop_nan=drop_nan, plots=plots)
    except UserError as err:
        fail(str(err))
    _print_summary(result, level)


def _print_summary(result: fit_mod.FitResult, level: float) -> None:
    unit = fit_mod.X_UNITS[result.x]
    console.print(f"[bold]{result.path}[/] · x = {unit} · {level:.0%} bootstrap intervals over images "
                  "(↑ higher is better, ↓ lower)", highlight=False)
    groups: dict[tuple, list] = {}
    for c in result.curves:
        groups.setdefault((c.key["model"], c.key["mask"]), []).append(c)
    for (model, mask), curves in groups.items():  # one narrow table per model × mask: readable at 80 columns
        table = Table(title=f"{model} · {mask} · {curves[0].n_images} images", box=box.SIMPLE_HEAD,
                      title_justify="left", pad_edge=False)
        table.add_column("metric", no_wrap=True)
        for column in ("Ax", "Ay", "Bx", "By"):
            table.add_column(column, justify="right")
        table.add_column("R²", justify="right", no_wrap=True)
        table.add_column("AIC best", no_wrap=True)
        for c in curves:
            e = c.estimate
            bx = _interval(e.bx, c.ci["bx"]) + ("" if c.saturated else " [yellow]*[/]")
            table.add_row(f"{c.key['metric']} {'↑' if c.higher_is_better else '↓'}", _interval(e.ax, c.ci["ax"]),
                          _interval(e.ay, c.ci["ay"]), bx, _interval(e.by, c.ci["by"]), f"{c.r2:.3f}",
                          c.comparison["best_aic"])
        console.print(table)
        if not all(c.saturated for c in curves):
            console.print("[yellow]*[/] not saturated within the step grid: the curve may keep improving beyond "
                          "Bx", highlight=False)
    for entry in result.runtime:
        if "vs_steps" not in entry:
            continue
        c = entry["vs_steps"]["coef"]
        terms = " + ".join(f"{v:.3g}·t^{i}" for i, v in enumerate(c))
        terms = terms.replace("·t^0", "").replace("·t^1", "·t")
        console.print(f"runtime {entry['model']} ({entry['device']}, {entry['dtype']}): {terms} s per image "
                      f"(R² {entry['vs_steps']['r2']:.3f})", highlight=False)
        if "warning" in entry:
            err_console.print(f"[yellow]warning:[/] {entry['warning']}", highlight=False, soft_wrap=True)
    console.print(f"wrote {result.path} and {len(result.plots)} plots", highlight=False)
