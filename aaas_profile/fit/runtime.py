"""The runtime model: seconds per image against steps (the paper's quadratic) and against UNet calls, and the
warnings the simulator needs about it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from aaas_profile import runs
from aaas_profile.core.acceptance import RUNTIME_MIN_R2, runtime_problem, runtime_rank
from aaas_profile.core.curve_keys import SAMPLER_DEFAULTS, sampler_label, setting_of, with_sampler_columns
from aaas_profile.core.formulas import TASK_STEPS_RANGE as SIM_TASK_STEPS


def _polyfit(x: np.ndarray, y: np.ndarray, degree: int) -> dict:
    degree = min(degree, np.unique(x).size - 1)
    coef = np.polynomial.polynomial.polyfit(x, y, degree)  # ascending powers
    predicted = np.polynomial.polynomial.polyval(x, coef)
    sst = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - float(np.sum((y - predicted) ** 2)) / sst if sst > 0 else float("nan")
    return {"degree": int(degree), "coef": [float(c) for c in coef], "r2": r2,
            "rmse": float(np.sqrt(np.mean((y - predicted) ** 2)))}


def runtime_label(entry: dict) -> str:
    """A ``fit_runtime`` entry's sampler, device and dtype in words: "ddim, cpu, fp32"; RePaint's (with no
    parameters) as before there were other samplers, "cpu, fp32"."""
    where = f"{entry['device']}, {entry['dtype']}"
    return where if setting_of(entry)["sampler"] == SAMPLER_DEFAULTS["sampler"] and setting_of(entry)[
        "sampler_params"] == "{}" else f"{sampler_label(entry)}, {where}"


def runtime_warning(entry: dict) -> str | None:
    """One line on a fitted runtime model (a ``fit_runtime`` entry) that the simulator should not trust, or
    None: a low R², or a curve that is not positive and rising over the simulator's task step counts (the
    range ``simulate --profile`` checks and refuses on; a quadratic fitted from 1 step up may dip below zero
    at 1 step and still serve 100-250 steps)."""
    fit = entry.get("vs_steps")
    if fit is None:
        return None
    low = min(SIM_TASK_STEPS)
    problem = runtime_problem(fit["coef"], low, max(SIM_TASK_STEPS))
    where = f"runtime model of {entry['model']} ({runtime_label(entry)})"
    if problem:
        return (f"{where} {problem} over {low:g}–{max(SIM_TASK_STEPS)} steps (R² {fit['r2']:.2f}): the timings "
                "are too noisy or too few; simulate --profile needs --runtime paper, or re-sweep with steady timings")
    if fit["r2"] == fit["r2"] and fit["r2"] < RUNTIME_MIN_R2:
        return (f"{where} explains little of the timings (R² {fit['r2']:.2f} < {RUNTIME_MIN_R2}); the simulator "
                "extrapolates it to 250 steps, so check it, or use simulate --runtime paper")
    return None


def fit_runtime(scores: pd.DataFrame) -> list[dict]:
    """Seconds per image against steps (quadratic, the paper's form) and against UNet calls (linear).

    One entry per (model, sampler, sampler parameters, respacing, jump setting, device, dtype), from one row per
    cell (the scores table repeats a cell's wall_s on each metric row); ``coef`` holds ascending powers,
    c0 + c1·x + c2·x², in seconds per image. Cells with a missing or non-finite wall_s are left out. The order
    is ``runtime_rank``'s (``build_document`` hands the first to the simulator).
    """
    scores = with_sampler_columns(scores)
    cells = scores.drop_duplicates(subset=list(dict.fromkeys([*runs.CELL_KEY, *SAMPLER_DEFAULTS])))
    cells = cells[np.isfinite(cells["wall_s"].to_numpy(float))]
    cells = cells.assign(_rank=[runtime_rank(s, r) for s, r in zip(cells["sampler"], cells["respacing"],
                                                                      strict=True)])
    out = []
    for (_, model, sampler, params, respacing, jl, jn, device, dtype), group in cells.groupby(
        ["_rank", "model", "sampler", "sampler_params", "respacing", "jump_length", "jump_n_sample", "device",
         "dtype"], sort=True,
    ):
        steps, calls = group["steps"].to_numpy(float), group["unet_calls"].to_numpy(float)
        wall = group["wall_s"].to_numpy(float)
        measured = group.groupby("steps").agg(unet_calls=("unet_calls", "median"), median_wall_s=("wall_s", "median"),
                                              n_cells=("wall_s", "size")).reset_index()
        entry = {
            "model": model, "sampler": str(sampler), "sampler_params": str(params), "respacing": str(respacing),
            "jump_length": int(jl),
            "jump_n_sample": int(jn), "device": device, "dtype": dtype,
            "batch_sizes": sorted(int(b) for b in group["batch_size"].unique()), "n_cells": int(len(group)),
            "measured": {k: [float(v) for v in measured[k]] for k in measured.columns},
        }
        if np.unique(steps).size >= 2:
            entry["vs_steps"] = _polyfit(steps, wall, 2)
            entry["vs_unet_calls"] = _polyfit(calls, wall, 1)
            warning = runtime_warning(entry)
            if warning:
                entry["warning"] = warning
        out.append(entry)
    return out
