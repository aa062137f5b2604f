"""A whole scores table: every curve fitted (``fit_scores``), the [0, 1] quality scale per metric, and one
recommendation per mask in words.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd

from aaas_profile.core.acceptance import BOOTSTRAP_RESAMPLES, INTERVAL_LEVEL, has_no_stop
from aaas_profile.core.curve_keys import CURVE_KEY, SAMPLER_DEFAULTS, with_sampler_columns
from aaas_profile.fit.common import FitError
from aaas_profile.fit.curve import CurveFit, fit_curve


def quality_scales(curves: list[CurveFit]) -> dict[str, dict]:
    """Per metric, the linear map of raw values onto [0, 1] used by the simulator, direction respected.

    0 is the worst fitted level and 1 the best fitted level of that metric over all curves in the run (the
    worst floor and the best saturation among Ay and By), so q = (y − raw_worst)/(raw_best − raw_worst),
    clipped to [0, 1]; for a lower-is-better metric raw_best < raw_worst. Every fitted Ay, By then lies in
    [0, 1] without clipping, and curves of one metric (different masks, models) stay comparable.
    """
    scales = {}
    for metric in sorted({c.key["metric"] for c in curves}):
        these = [c for c in curves if c.key["metric"] == metric]
        hib = these[0].higher_is_better
        values = [v for c in these for v in (c.estimate.ay, c.estimate.by)]
        worst, best = (min(values), max(values)) if hib else (max(values), min(values))
        if best == worst:  # a flat metric: map everything to 0 rather than divide by zero
            best = worst + (1.0 if hib else -1.0)
        scales[metric] = {
            "method": "run_fitted_range", "higher_is_better": hib, "raw_worst": worst, "raw_best": best,
            "formula": "q = clip((y - raw_worst) / (raw_best - raw_worst), 0, 1)",
        }
    return scales


def to_unit(scale: dict, y) -> np.ndarray:
    """Raw metric values onto the [0, 1] quality scale described by one entry of ``quality_scales``."""
    q = (np.asarray(y, dtype=float) - scale["raw_worst"]) / (scale["raw_best"] - scale["raw_worst"])
    return np.clip(q, 0.0, 1.0)


def curve_seed(seed: int, key: dict) -> np.random.SeedSequence:
    """The bootstrap's seed for one curve: from the run's ``seed`` and the curve's key alone (its values in
    ``CURVE_KEY`` order, as canonical JSON, hashed with SHA-256: stable across processes and Python versions,
    unlike ``hash()``). So a curve gets the same resamples, and the same intervals, whichever other curves
    are fitted with it (``fit --metrics dss`` gives dss the intervals of a full fit). A sampler key at its
    default (``SAMPLER_DEFAULTS``: RePaint, "{}") is left out, so a scores table from before samplers fits
    exactly as it did."""
    if seed < 0:
        raise FitError(f"bootstrap seed {seed} must be 0 or more")
    kept = [[k, key[k]] for k in CURVE_KEY if k in key and SAMPLER_DEFAULTS.get(k, object()) != key[k]]
    text = json.dumps(kept, separators=(",", ":"), ensure_ascii=True)
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return np.random.SeedSequence([int(seed), *(int.from_bytes(digest[i:i + 4], "little") for i in range(0, 16, 4))])


def fit_scores(scores: pd.DataFrame, x: str = "steps", resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0,
               level: float = INTERVAL_LEVEL, model: str = "image_offsets") -> list[CurveFit]:
    """Fit every curve (``CURVE_KEY``: model, mask, sampler, jump setting, metric) of a scores table; a table
    without sampler columns is RePaint's (``with_sampler_columns``).

    With ``x="wall_s"`` each step count sits at the median seconds per image of its cells in that curve: the
    batch-to-batch jitter of wall time says nothing about quality, and a shared x per step count keeps the
    images paired across step counts for the bootstrap. Each curve's bootstrap draws from its own generator,
    ``curve_seed(seed, key)``.
    """
    curves = []
    scores = with_sampler_columns(scores)
    for values, group in scores.groupby(list(CURVE_KEY), sort=True):
        key = dict(zip(CURVE_KEY, values, strict=True))
        key = {k: (int(v) if k.startswith("jump") else str(v)) for k, v in key.items()}
        points = pd.DataFrame({"image_id": group["image_id"].to_numpy(), "steps": group["steps"].to_numpy(),
                               "value": group["value"].to_numpy(float), "x": group[x].to_numpy(float),
                               "unet_calls": group["unet_calls"].to_numpy(float),
                               "wall_s": group["wall_s"].to_numpy(float)})
        if x == "wall_s":
            points["x"] = points.groupby("steps")["x"].transform("median")
        points["x"] = points["x"].astype(float)
        hib = bool(group["higher_is_better"].iloc[0])  # the metric's direction, as the sweep recorded it
        rng = np.random.default_rng(curve_seed(seed, key))
        curves.append(fit_curve(points, key, hib, resamples=resamples, rng=rng, level=level, model=model))
    return curves


def recommendations(curves: list) -> list[dict]:
    """One recommendation in words per curve group (``CURVE_KEY`` but the metric: a mask under one setting),
    from its curves' noise-aware stops (``noisy_stop``). ``curves`` are ``CurveFit``s or fit.json entries.

    The steps to pay for are the largest stop among the metrics that steps improve measurably; metrics with
    no measurable effect (or worse with steps) are named, not counted. Each entry: ``group`` (the key), ``steps``
    (None when no metric improves), ``top_of_grid`` (a metric still gains at the largest step count) and
    ``text``."""
    groups: dict[tuple, list[dict]] = {}
    for c in curves:
        entry = c.to_dict() if hasattr(c, "to_dict") else c
        key = tuple((k, entry.get(k, SAMPLER_DEFAULTS.get(k))) for k in CURVE_KEY if k != "metric")
        groups.setdefault(key, []).append(entry)
    out = []
    for key, entries in groups.items():
        moving = [e for e in entries if not has_no_stop(e.get("flags")) and isinstance(e.get("stop"), dict)]
        flat = [e["metric"] for e in entries if has_no_stop(e.get("flags"))]
        flat_text = f"; no measurable effect of steps on {', '.join(flat)}" if flat else ""
        if not moving:
            out.append({"group": dict(key), "steps": None, "top_of_grid": False,
                        "text": "steps make no measurable difference on any metric: pay for the fewest"
                                + (f" ({', '.join(flat)} tested)" if flat else "")})
            continue
        steps = max(int(e["stop"]["steps"]) for e in moving)
        deciding = [e["metric"] for e in moving if int(e["stop"]["steps"]) == steps]
        gaining = [e["metric"] for e in moving if e["stop"].get("top_of_grid")]
        if gaining:
            verb = "still gains" if len(gaining) == 1 else "still gain"
            text = (f"pay for at least {steps} steps, the top of the grid: {', '.join(gaining)} {verb} there "
                    f"(sweep higher step counts to find where they stop){flat_text}")
        else:
            intervals = ", ".join(f"{e['metric']} {steps_interval(e['stop'])}" for e in moving)
            level = moving[0]["stop"].get("level", INTERVAL_LEVEL)
            text = (f"pay for {steps} steps: beyond it no metric gains measurably (set by {', '.join(deciding)}; "
                    f"stops with {round(100 * level)} % intervals: {intervals})"
                    f"{flat_text}")
        out.append({"group": dict(key), "steps": steps, "top_of_grid": bool(gaining), "text": text})
    return out


def steps_interval(stop: dict) -> str:
    ci = stop.get("ci") or [float("nan")] * 2
    if ci[0] != ci[0]:
        return str(stop["steps"])
    return f"{stop['steps']} [{ci[0]:g}–{ci[1]:g}]"
