"""Fitting a run folder: read its scores for the fit, fit every curve, write ``fit.json`` and the plots.

The maths is in ``aaas_profile.fit`` (pure functions of arrays and tables), the fit.json format's version,
reader and writer in ``aaas_profile.fitfile`` and the figures in ``aaas_profile.plots``; this module joins
them: ``load_scores`` (the run's scores, checked for fitting), ``build_document`` (fit.json's content,
docs/fit-json.md) and ``fit_run`` (the ``fit`` command's work).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from aaas_profile import fitfile, runs
from aaas_profile.atomic import folder_swap
from aaas_profile.core.acceptance import (
    BOOTSTRAP_RESAMPLES,
    INTERVAL_LEVEL,
    MIN_IMAGES_FOR_INTERVALS,
    MIN_LEVELS_FOR_INTERVALS,
)
from aaas_profile.core.curve_keys import in_task_units, setting_of, walk_meaning
from aaas_profile.core.formulas import PAPER_RUNTIME
from aaas_profile.errors import check_writable
from aaas_profile.fit import (
    FIT_MODELS,
    X_CHOICES,
    X_UNITS,
    CurveFit,
    FitError,
    fit_runtime,
    fit_scores,
    quality_scales,
    recommendations,
    to_unit,
)


@dataclass
class FitResult:
    run_dir: Path
    x: str
    curves: list[CurveFit]
    scales: dict[str, dict]
    runtime: list[dict]
    path: Path  # fit.json
    plots: list[Path]
    document: dict


def load_scores(run: Path, x: str = "steps", metrics: list[str] | None = None, drop_nan: bool = False) -> pd.DataFrame:
    """The run's scores, checked for fitting; raises FitError with a one-line reason."""
    run = Path(run)
    if x not in X_CHOICES:
        raise FitError(f"unknown x axis {x!r}; choose one of {', '.join(X_CHOICES)}")
    if not run.is_dir():
        raise FitError(f"{run}: no such run folder")
    try:
        scores = runs.read_scores(run)
    except runs.RunError as err:
        raise FitError(str(err)) from None
    if scores.empty:
        raise FitError(f"{run}: no scores (scores/part-*.parquet); run `aaas-profile sweep` first")
    if metrics:
        unknown = sorted(set(metrics) - set(scores["metric"]))
        if unknown:
            raise FitError(f"{run}: metric(s) {', '.join(unknown)} not in the scores "
                           f"(present: {', '.join(sorted(scores['metric'].unique()))})")
        scores = scores[scores["metric"].isin(metrics)]
    bad = ~np.isfinite(scores["value"].to_numpy(float)) | ~np.isfinite(scores[x].to_numpy(float))
    if bad.any():
        if not drop_nan:
            row = scores[bad].iloc[0]
            raise FitError(
                f"{run}: {int(bad.sum())} NaN or infinite value(s) in 'value' or '{x}' (first: metric {row['metric']}, "
                f"image {row['image_id']}, mask {row['mask']}, steps {row['steps']}); pass --drop-nan to leave them out"
            )
        scores = scores[~bad]
        if scores.empty:  # a fit with no curves would otherwise be written, and exit 0
            raise FitError(f"{run}: every score{' of ' + ', '.join(metrics) if metrics else ''} is NaN or infinite; "
                           "nothing is left to fit: check the sweep's outputs and score them again")
    _check_x_range(run, scores, x)
    return scores.reset_index(drop=True)


# The x values a curve can be fitted against: a step count and a UNet-call count are whole numbers ≥ 1, seconds
# per image are positive (a step count of 0 or -1 in a score part is a damaged file, not a measurement).
X_RANGES = {"steps": (1, True), "unet_calls": (1, True), "wall_s": (0, False)}


def _check_x_range(run: Path, scores: pd.DataFrame, x: str) -> None:
    """One line naming the first score whose steps (and ``x``) is out of range."""
    for column in dict.fromkeys(("steps", x)):
        low, whole = X_RANGES[column]
        values = pd.to_numeric(scores[column], errors="coerce").to_numpy(float)
        bad = ~np.isfinite(values) | (values < low if whole else values <= low)
        if whole:
            bad |= values != np.round(values)
        if bad.any():
            row = scores[bad].iloc[0]
            kind = f"whole numbers ≥ {low}" if whole else "positive"
            raise FitError(f"{run}: {int(bad.sum())} score(s) with {column} {row[column]:g} (first: metric "
                           f"{row['metric']}, image {row['image_id']}, mask {row['mask']}); {column} must be {kind}: "
                           "the score parts are damaged, remove them and run the sweep again")


def x_axis(x: str, curves: list[CurveFit]) -> dict:
    """fit.json's ``x``: the axis the curves were fitted against and, against steps, what a step counts on each
    walk of the curves (``walks``) and whether every curve is in the simulator's task units (``task_units``:
    t_T on a respaced grid, the paper's protocol; docs/fit-json.md)."""
    walks = sorted({str(setting_of(c.key)["respacing"]) for c in curves})
    axis = {"name": x, "unit": X_UNITS[x], "walks": {w: walk_meaning(w) for w in walks}}
    axis["task_units"] = x == "steps" and all(in_task_units(c.key) for c in curves)
    return axis


def build_document(run_dir: Path, x: str, curves: list[CurveFit], scales: dict, runtime: list[dict],
                   resamples: int, seed: int, level: float, model: str = "image_offsets") -> dict:
    """fit.json's content (docs/fit-json.md)."""
    import aaas_profile

    entries = []
    for c in curves:
        entry = c.to_dict()
        scale = scales[c.key["metric"]]
        ay_q, by_q = (float(to_unit(scale, v)) for v in (c.estimate.ay, c.estimate.by))
        entry["unit_scale"] = {"ay": ay_q, "by": by_q, "gain": by_q - ay_q}
        # The simulator's view: the curve on [0, 1] (higher is better) against diffusion steps.
        steps_of = c.level_stats["steps"].to_numpy(float)
        entry["scale01"] = {"ax": float(np.interp(c.estimate.ax, c.x_levels, steps_of)), "ay": ay_q,
                            "bx": float(np.interp(c.estimate.bx, c.x_levels, steps_of)), "by": by_q}
        entries.append(entry)
    fitted = [r for r in runtime if "vs_steps" in r]
    summary = {"paper": PAPER_RUNTIME, "fits": runtime}
    if fitted:  # the first (RePaint's when the run has it: fit_runtime's order), as the simulator's default
        first = fitted[0]
        source = {k: first[k] for k in ("model", "sampler", "sampler_params", "respacing", "jump_length",
                                        "jump_n_sample", "device", "dtype")}
        summary["steps"] = {"coef": first["vs_steps"]["coef"], "unit": "s per image", **source}
        summary["unet_calls"] = {"coef": first["vs_unet_calls"]["coef"], "unit": "s per image", **source}
    return fitfile.clean({
        "schema_version": fitfile.SCHEMA_VERSION,
        "tool": {"name": "aaas-profile", "version": aaas_profile.__version__, "git": runs.git_revision()},
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "run": str(run_dir),
        "model_form": "f(x) = Ay for x <= Ax; Ay + (By - Ay)*(x - Ax)/(Bx - Ax) for Ax < x < Bx; By for x >= Bx",
        "fit_model": {"name": model, "form": FIT_MODELS[model]},
        "x": x_axis(x, curves),
        "bootstrap": {"resamples": resamples, "seed": seed, "level": level, "unit": "image_id",
                      "interval": "percentile", "min_levels": MIN_LEVELS_FOR_INTERVALS,
                      "min_images": MIN_IMAGES_FOR_INTERVALS},
        "curves": entries,
        "recommendations": recommendations(entries),
        "scales": scales,
        "runtime": summary,
    })


def default_path(run: Path, x: str) -> Path:
    """Where a fit goes without ``--out``: ``<run>/fit.json`` on the step axis (what ``simulate --profile`` and
    ``report`` read), ``<run>/fit-<x>.json`` on another axis, so the two never replace each other."""
    return Path(run) / (fitfile.NAME if x == "steps" else f"fit-{x}.json")


def plots_dir(path: Path) -> Path:
    """The plots of the fit at ``path``: ``plots/`` beside a ``fit.json``, ``plots-<stem>/`` beside another name."""
    return path.parent / ("plots" if path.name == fitfile.NAME else f"plots-{path.stem}")


def _check_replace(path: Path, x: str, replace: bool) -> None:
    """Refuse (one line) to overwrite a fit against another x axis unless ``replace``: ``simulate --profile``
    needs the steps fit, and a fit against UNet calls or seconds must not take its place unnoticed."""
    if replace or not path.is_file():
        return
    try:
        before = fitfile.load(path)
    except fitfile.FitFileError:
        return  # unreadable: nothing a user would lose by replacing it
    old_x = (before.get("x") or {}).get("name", "steps")
    if old_x != x:
        raise FitError(f"{path} holds a fit against {old_x}; this one is against {x}: choose another --out, "
                       "or pass --replace")


def fit_run(run: Path, x: str = "steps", resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0,
            level: float = INTERVAL_LEVEL,
            metrics: list[str] | None = None, drop_nan: bool = False, plots: bool = True,
            model: str = "image_offsets", out: Path | None = None, replace: bool = False) -> FitResult:
    """Fit a run folder: writes ``out`` (default ``default_path``) and, with ``plots``, its ``plots_dir``.
    A fit against another x axis already at ``out`` is refused unless ``replace``."""
    if not 0 < level < 1:
        raise FitError(f"confidence level {level} must be between 0 and 1")
    if resamples < 0:
        raise FitError(f"bootstrap resamples {resamples} must be 0 or more")
    if model not in FIT_MODELS:
        raise FitError(f"unknown fit model {model!r}; choose one of {', '.join(FIT_MODELS)}")
    run = Path(run)
    scores = load_scores(run, x=x, metrics=metrics, drop_nan=drop_nan)
    path = Path(out) if out is not None else default_path(run, x)
    if path.is_dir() or path.suffix != ".json":  # a folder, existing or to be made
        path = path / fitfile.NAME
    _check_replace(path, x, replace)
    figures = plots_dir(path)
    for folder in (path.parent, *([figures] if plots else [])):  # check first: fail before the bootstrap
        check_writable(folder, "--out (fit writes its fit file and plots there)")
    curves = fit_scores(scores, x=x, resamples=resamples, seed=seed, level=level, model=model)
    scales = quality_scales(curves)
    runtime = fit_runtime(scores)
    document = build_document(run, x, curves, scales, runtime, resamples, seed, level, model)
    path.parent.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    if plots:  # a set (docs/run-folder.md): the plots are drawn first, aside; then the fit file and the plots
        # replace the earlier ones one right after the other, and a refit leaves no plot of a curve it no
        # longer fits. Stopped while drawing, neither is touched.
        from aaas_profile import plots as plots_mod  # here: matplotlib only when plots are drawn

        with folder_swap(figures) as temp:
            drawn = plots_mod.plot_all(curves, temp, x=x)
            fitfile.write(path, document)
        written = [figures / p.name for p in drawn]
    else:
        fitfile.write(path, document)
        if figures.is_dir() and all(p.suffix == ".png" for p in figures.iterdir()):
            shutil.rmtree(figures)  # plots of the fit just replaced: they would show curves that are no longer so
    return FitResult(run, x, curves, scales, runtime, path, written, document)
