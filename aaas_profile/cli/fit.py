"""The ``fit`` command: parses, calls ``aaas_profile.fit``, prints."""

from __future__ import annotations

from rich import box
from rich.table import Table

from aaas_profile.cli.common import console, emit, warn
from aaas_profile.core import acceptance, curve_keys
from aaas_profile.errors import Interrupted
from aaas_profile.options import FitOptions

# The stage modules (numpy, scipy, piq) are imported inside the command, so `--help` starts at once.


def _interval(value: float, ci: tuple[float, float]) -> str:
    """The estimate and its interval in three significant digits, one unbreakable cell ("2.74 [2.46–3.02]")."""
    if ci[0] != ci[0]:  # NaN: no bootstrap
        return f"{value:.3g}"
    return f"{value:.3g} [{ci[0]:.3g}–{ci[1]:.3g}]"


def fit(o: FitOptions) -> None:
    """Fit the four-parameter quality model (Ax, Ay, Bx, By) to every model × mask × sampler × metric of a run, with
    bootstrap intervals over images, an AIC/BIC check against smooth saturating curves, and the runtime model.

    The table gives R² within images (each image at its own level), pooled (one level for all) and of the
    fit to the per-step medians (the paper's way), and flags a curve with no measurable effect of steps
    (Page's trend test over every step count, within images), one saturated before the third grid
    point, or one too small for intervals (fewer than 4 step counts or 3 images). Below it: per metric, the
    step count beyond which the median gains less than 1 % of the curve's range in fewer than 95 % of the
    bootstrap resamples, with the interval of the resamples' stops.

    Examples:

      aaas-profile fit results/faces-20250101

      aaas-profile fit results/celeba-thin --x unet_calls --bootstrap 500 --seed 1

      aaas-profile fit results/celeba-thin --metrics dss,vif --no-plots

      aaas-profile fit results/celeba-thin --fit-model pooled

    A run with several samplers gets a curve per sampler (--x unet_calls puts them on one compute axis) and
    a runtime model per sampler.

    Writes <run>/fit.json (schema: docs/fit-json.md; --x unet_calls or wall_s: <run>/fit-<x>.json, so the
    steps fit that simulate reads stays) and plots/*.png beside it, one figure per curve and a panel of every
    metric (three to a row) per model × mask × sampler. Ends with one recommendation per mask: the steps
    to pay for.
    """
    from aaas_profile import fitrun

    try:
        result = fitrun.fit_run(o.run, x=o.x, resamples=o.bootstrap, seed=o.seed, level=o.level,
                                metrics=o.metrics or None, drop_nan=o.drop_nan, plots=o.plots, model=o.fit_model,
                                out=o.out, replace=o.replace)
    except KeyboardInterrupt:
        raise Interrupted("interrupted: the earlier fit file and plots are kept as they were; run the same command "
                          "again") from None
    _print_summary(result, o.level)
    emit({"fit": result.path, "x": result.x, "plots": len(result.plots),
          "recommendations": result.document["recommendations"],
          "curves": [{k: e.get(k) for k in (*curve_keys.CURVE_KEY, "ax", "ay", "bx", "by", "flags", "effect", "stop")}
                     for e in result.document["curves"]]})



def _r2(value: float) -> str:
    return "–" if value != value else f"{value:.2f}"


def _print_summary(result, level: float) -> None:
    from aaas_profile import fit as fit_mod

    unit = fit_mod.X_UNITS[result.x]
    model = result.document["fit_model"]["name"]
    console.print(f"[bold]{result.path}[/] · {model} · x = {unit} · {level:.0%} bootstrap intervals over images "
                  "(↑ higher is better, ↓ lower)", highlight=False)
    groups: dict[tuple, list] = {}
    varying = curve_keys.varying_settings([c.key for c in result.curves])
    for c in result.curves:
        setting = curve_keys.setting_cells(c.key, [k for k in varying if k != "model"])
        groups.setdefault((c.key["model"], c.key["mask"], *setting.items()), []).append(c)
    # narrow tables per model × mask (× sampler × jumps where the run has several): readable at 80 columns
    for (model_name, mask, *setting), curves in groups.items():
        shown = [f"{k} {v}" for k, v in setting if v != "–"]  # no "jumps –" for a sampler without jumps
        title = " · ".join([model_name, mask, *shown, f"{curves[0].n_images} images"])
        # Two parameter tables (where the curve turns, in x; its levels, in the metric's units), each interval
        # one unbreakable cell: together they fit 80 columns, one table of four did not.
        parameters = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left", pad_edge=False)
        quality = Table(box=box.SIMPLE_HEAD, pad_edge=False)
        stops = Table(title=f"where to stop paying for steps: beyond it the median gains < 1 % of the range in "
                            f"fewer than {level:.0%} of the bootstrap resamples",
                      box=box.SIMPLE_HEAD, title_justify="left", pad_edge=False)
        for table in (parameters, quality, stops):
            table.add_column("metric", no_wrap=True)
        for table, columns in ((parameters, ("Ax", "Bx")), (quality, ("Ay", "By"))):
            for column in columns:
                table.add_column(f"{column} [{level:.0%}]", justify="right", no_wrap=True)
        for table, column in ((parameters, "R² within"), (parameters, "R² med."), (quality, "R² pooled")):
            table.add_column(column, justify="right")
        parameters.add_column("best AIC", no_wrap=True)
        for column in (f"steps [{level:.0%}]", "UNet calls", "s/image", "median", "best"):
            stops.add_column(column, justify="right", no_wrap=True)
        stops.add_column("note")
        for c in curves:
            e, name = c.estimate, f"{c.key['metric']} {'↑' if c.higher_is_better else '↓'}"
            parameters.add_row(name, _interval(e.ax, c.ci["ax"]), _interval(e.bx, c.ci["bx"]), _r2(c.r2_within),
                               _r2(c.r2_medians), c.comparison["best_aic"])
            quality.add_row(name, _interval(e.ay, c.ci["ay"]), _interval(e.by, c.ci["by"]), _r2(c.r2_pooled))
            stop = c.stop
            if acceptance.has_no_stop(c.flags):
                stops.add_row(name, "–", "–", "–", "–", f"{stop['best_median']:.4g}",
                              "no measurable effect of steps" if c.flagged("no_effect") else "worse with more steps")
                continue
            stops.add_row(name, fit_mod.steps_interval(stop), f"{stop['unet_calls']:.0f}", f"{stop['wall_s']:.3g}",
                          f"{stop['median']:.4g}", f"{stop['best_median']:.4g}",
                          "still gaining" if stop["top_of_grid"] else "")
        console.print(parameters)
        console.print(quality)
        said: dict[str, list[str]] = {}  # one line per kind of flag, naming its metrics (details in fit.json)
        for c in curves:
            for flag in c.flags:
                said.setdefault(flag.get("summary", flag["message"]), []).append(c.key["metric"])
        for text, names in said.items():
            console.print(f"[yellow]{', '.join(names)}[/]: {text}", highlight=False)
        console.print(stops)
    for entry in result.runtime:
        if "vs_steps" not in entry:
            continue
        c = entry["vs_steps"]["coef"]
        terms = " + ".join(f"{v:.3g}·t^{i}" for i, v in enumerate(c))
        terms = terms.replace("·t^0", "").replace("·t^1", "·t")
        console.print(f"runtime {entry['model']} ({fit_mod.runtime_label(entry)}): {terms} s per image "
                      f"(R² {entry['vs_steps']['r2']:.3f})", highlight=False)
        if "warning" in entry:
            warn(entry["warning"])
    _print_recommendations(result.document["recommendations"], varying)
    console.print(f"wrote {result.path} and {len(result.plots)} plots", highlight=False)


def _print_recommendations(recommendations: list[dict], varying: list[str]) -> None:
    """The last lines of the fit: one recommendation per mask (and setting, where the run has several)."""

    console.print("[bold]recommendation[/] (per mask: the steps to pay for)")
    for r in recommendations:
        setting = curve_keys.setting_cells(r["group"], [k for k in varying if k != "model"])
        label = " · ".join([*([r["group"]["model"]] if "model" in varying else []), r["group"]["mask"],
                            *(v for v in setting.values() if v != "–")])
        console.print(f"  [bold]{label}[/]: {r['text']}", highlight=False)
