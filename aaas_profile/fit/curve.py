"""One curve: the point estimate, the bootstrap over whole images, the fit statistics and the flags a reader
must see (``fit_curve``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from aaas_profile.core.acceptance import (
    BOOTSTRAP_RESAMPLES,
    INTERVAL_LEVEL,
    MIN_IMAGES_FOR_INTERVALS,
    MIN_LEVELS_FOR_INTERVALS,
)
from aaas_profile.fit.alternatives import compare_models
from aaas_profile.fit.common import FitError
from aaas_profile.fit.effect import step_effect
from aaas_profile.fit.solver import Piecewise, fit_piecewise, offset_terms, solve_grouped, solve_offsets
from aaas_profile.fit.stops import bootstrap_counts, level_summary, noisy_stop

# What `fit --model` can fit. Every image is measured at every step count, so the default shares the curve's
# shape across images and gives each image its own level (docs/design.md, "The four-parameter model").
FIT_MODELS = {
    "image_offsets": "y = f(x) + u_image + e: shape (Ax, Bx, By - Ay) shared, one level u per image; the offsets "
                     "average to zero over images, so Ay and By are the average image's levels",
    "pooled": "y = f(x) + e: one curve through all points, images ignored",
}


@dataclass
class CurveFit:
    """The fit of one curve (``CURVE_KEY``: model, mask, sampler, jump setting, metric); raw units of metric and x.

    ``estimate`` is the fitted model's curve (``model``): for ``image_offsets`` the shared shape at the average
    image's level, and ``estimate.sse`` its within-image SSE (every image at its own level).
    """

    key: dict
    higher_is_better: bool
    model: str
    estimate: Piecewise
    ci: dict[str, tuple[float, float]]
    sd: dict[str, float]
    r2_within: float  # 1 − SSE/SST after removing each image's mean (and the curve's best offsets)
    r2_pooled: float  # 1 − SSE/SST over all points, no offsets
    median_fit: Piecewise  # the paper's way: the four parameters fitted to the per-step medians
    r2_medians: float
    rmse: float
    n_images: int
    n_points: int
    x_levels: np.ndarray
    level_stats: pd.DataFrame  # per x level: steps, x, n, mean, median, q25, q75, unet_calls, wall_s
    saturated: bool
    floor_observed: bool
    share_not_saturated: float  # bootstrap resamples whose Bx sits on the upper boundary
    comparison: dict
    effect: dict  # the paired test of the top of the grid against its bottom (``step_effect``)
    stop: dict  # where the median stops gaining (``stop_point``)
    flags: list[dict]  # {"code", "message"}: what a reader must know before using the curve
    points: pd.DataFrame = field(repr=False)  # image_id, x, value (for plots)

    @property
    def r2(self) -> float:
        """R² of the fitted model on its own terms: within images for image_offsets, over all points for pooled."""
        return self.r2_within if self.model == "image_offsets" else self.r2_pooled

    def flagged(self, code: str) -> bool:
        return any(f["code"] == code for f in self.flags)

    def to_dict(self) -> dict:
        e = self.estimate
        params = {name: {"value": getattr(e, name), "ci": list(self.ci[name]), "sd": self.sd[name]}
                  for name in ("ax", "ay", "bx", "by")}
        m = self.median_fit
        return {
            **self.key, "higher_is_better": self.higher_is_better, "fit_model": self.model, **params,
            "flags": self.flags,
            "saturated": self.saturated, "floor_observed": self.floor_observed,
            "share_not_saturated": self.share_not_saturated,
            "r2": {"within_image": self.r2_within, "pooled": self.r2_pooled, "medians": self.r2_medians},
            "rmse": self.rmse, "sse": e.sse, "n_images": self.n_images, "n_points": self.n_points,
            "median_fit": {"ax": m.ax, "ay": m.ay, "bx": m.bx, "by": m.by, "r2": self.r2_medians},
            "effect": self.effect, "stop": self.stop,
            "levels": self.level_stats.to_dict(orient="list"),
            "comparison": self.comparison,
        }


def _plateau_seen(breakpoint, levels: np.ndarray, upper: bool):
    """Whether at least two measured levels lie on the flat part beyond ``breakpoint`` (upper: x ≥ Bx, else
    x ≤ Ax). One level is always matched exactly by By (or Ay), so it is no evidence of a plateau: a Bx
    between the last two step counts means "not saturated within the measured range", like Bx on the edge."""
    tol = 1e-9 * (levels[-1] - levels[0])
    if upper:
        return np.asarray(breakpoint) <= levels[-2] + tol
    return np.asarray(breakpoint) >= levels[1] - tol


def curve_flags(curve_effect: dict, n_levels: int, n_images: int, levels: np.ndarray, bx: float,
                saturated: bool, steps: np.ndarray) -> list[dict]:
    """The flags a reader must see beside a curve, each {"code", "message"} (message one line)."""
    flags = []
    if n_levels < MIN_LEVELS_FOR_INTERVALS or n_images < MIN_IMAGES_FOR_INTERVALS:
        why = []
        if n_levels < MIN_LEVELS_FOR_INTERVALS:
            why.append(f"{n_levels} distinct x value(s) for four parameters (need {MIN_LEVELS_FOR_INTERVALS})")
        if n_images < MIN_IMAGES_FOR_INTERVALS:
            why.append(f"{n_images} image(s) to resample (need {MIN_IMAGES_FOR_INTERVALS})")
        flags.append({"code": "under_determined", "summary": "under-determined: no intervals",
                      "message": "under-determined, no intervals: " + " and ".join(why)})
    e = curve_effect
    p = e["p_value"]
    test = (f"Page's trend test over {e['test_levels']} step counts, {e['test_images']} images: p = {p:.2g}, "
            f"trend {e['trend']:+.2f}; {e['high_steps']} vs {e['low_steps']} steps: {e['better']} of "
            f"{e['n_images']} images better, {e['worse']} worse, median gain {e['median_gain']:.3g}"
            + (f"; {e['note']}" if e["note"] else ""))
    effect = p == p and p < e["alpha"]
    if effect and e["trend"] < 0:
        flags.append({"code": "worse_with_steps", "summary": "quality gets worse with more steps",
                      "message": f"quality gets worse with more steps ({test})"})
    elif not effect:
        flags.append({"code": "no_effect", "summary": "no measurable effect of steps",
                      "message": f"no measurable effect of steps ({test})"})
    if effect and n_levels >= 3:
        tol = 1e-9 * (levels[-1] - levels[0])
        # Bx before the third grid point: at most the first two step counts lie on the rise, so its shape
        # (and Ax) is not resolved; a Bx a hair above the second point is "at" it for any practical purpose.
        if bx < levels[2] - tol:
            flags.append({"code": "saturated_in_grid",
                          "summary": f"the fitted rise ends before the third step count; {_finer_grid(steps)}",
                          "message": (
                f"saturates within the first grid points (Bx = {bx:.3g}, before the third at {steps[2]:g} steps: "
                f"only {int(np.sum(levels < bx - tol))} step count(s) on the rise); {_finer_grid(steps)}")})
        elif not saturated:
            flags.append({"code": "not_saturated",
                          "summary": "not saturated within the grid: add higher step counts", "message": (
                f"not saturated within the grid: add higher step counts (Bx = {bx:.3g}, fewer than two grid "
                f"points at or beyond it)")})
    return flags


def _finer_grid(steps: np.ndarray) -> str:
    """What would resolve a rise that ends before the third step count, never advice the grid already follows:
    lower counts where the grid starts above 1 (where the floor ends is then unseen), and counts between the
    first and the third where whole ones are missing (the rise itself), else nothing."""
    first, third = int(steps[0]), int(steps[2])
    between = [s for s in range(first + 1, third) if s not in set(steps.astype(int))]
    # divisors of the 1000 training steps first: the strided walk starts every such count from pure noise
    between = [s for s in between if 1000 % s == 0] or between
    wanted = [f"lower step counts (below {first})"] if first > 1 else []
    if between:
        wanted.append(f"step counts between {first} and {third} (e.g. {', '.join(map(str, between[:3]))})")
    if wanted:
        return f"add {' and '.join(wanted)} to resolve the rise"
    return "no finer grid of whole steps exists there: the rise is complete by the third step count"


def fit_curve(points: pd.DataFrame, key: dict, higher_is_better: bool, resamples: int = BOOTSTRAP_RESAMPLES,
              rng: np.random.Generator | None = None, level: float = INTERVAL_LEVEL,
              model: str = "image_offsets") -> CurveFit:
    """Fit one curve from ``points`` (columns image_id, steps, x, value; optionally unet_calls, wall_s).

    ``model`` is ``image_offsets`` (the curve's shape shared, a level per image: the quality of one image at
    many step counts is a repeated measure) or ``pooled`` (one curve through all points); both by the exact
    global search of ``solve_profile``. With every image at every step count (and the same number of points
    at each) the two give the same curve, since image offsets are then orthogonal to the step effect; they
    differ when cells are missing (dropped NaN, partial sweeps) and in R². Each bootstrap resample draws the
    curve's images with replacement (every row of a drawn image comes along: all its step counts and seeds,
    so the resample stays paired) and refits exactly; intervals are percentile intervals at ``level``, and
    none are computed for an under-determined curve (``curve_flags``).
    """
    if model not in FIT_MODELS:
        raise FitError(f"unknown fit model {model!r}; choose one of {', '.join(FIT_MODELS)}")
    rng = rng or np.random.default_rng(0)
    what = " ".join(f"{k}={v}" for k, v in key.items())
    x, y = points["x"].to_numpy(float), points["value"].to_numpy(float)
    levels, index = np.unique(x, return_inverse=True)
    if levels.size < 2:
        raise FitError(f"{what}: measured at a single step count ({points['steps'].iloc[0]}); "
                       "a fit needs at least two")
    images, image_index = np.unique(points["image_id"].to_numpy(str), return_inverse=True)
    # Per image × level: counts and sums, so a resample's statistics are one matrix product.
    n_il = np.zeros((images.size, levels.size))
    s_il = np.zeros((images.size, levels.size))
    np.add.at(n_il, (image_index, index), 1.0)
    np.add.at(s_il, (image_index, index), y)
    if model == "image_offsets":
        if not np.any((n_il > 0).sum(1) >= 2):
            raise FitError(f"{what}: no image is measured at two or more step counts, so per-image offsets "
                           "leave nothing to fit; use --fit-model pooled")
        terms = offset_terms(n_il, s_il, np.bincount(image_index, weights=y * y, minlength=images.size))

        level_share = n_il / n_il.sum(1, keepdims=True)  # each image's points per level, as a share of its points
        mean_part = s_il / n_il.sum(1, keepdims=True)

        def solve(counts):
            return solve_offsets(levels, counts @ terms[0], counts @ terms[1], counts @ terms[2], counts @ level_share,
                                 counts @ mean_part)
    else:
        def solve(counts):
            return solve_grouped(levels, counts @ n_il, counts @ s_il)

    best = solve(np.ones((1, images.size)))
    estimate = Piecewise(*(float(best[n][0]) for n in ("ax", "ay", "bx", "by")), sse=0.0)
    # Fit statistics from the residuals themselves, for either model.
    resid = y - estimate(x)
    per_image = np.bincount(image_index, minlength=images.size)
    offsets = np.bincount(image_index, weights=resid, minlength=images.size) / per_image
    image_mean = np.bincount(image_index, weights=y, minlength=images.size) / per_image
    sse_pooled, sse_within = float(np.sum(resid**2)), float(np.sum((resid - offsets[image_index]) ** 2))
    sst_pooled, sst_within = float(np.sum((y - y.mean()) ** 2)), float(np.sum((y - image_mean[image_index]) ** 2))
    estimate = Piecewise(estimate.ax, estimate.ay, estimate.bx, estimate.by,
                         sse_within if model == "image_offsets" else sse_pooled)
    stats = level_summary(points)
    median_fit = fit_piecewise(stats["x"], stats["median"])
    sst_medians = float(np.sum((stats["median"] - stats["median"].mean()) ** 2))

    effect = step_effect(points, higher_is_better)
    flags = curve_flags(effect, levels.size, images.size, levels, estimate.bx,
                        bool(_plateau_seen(estimate.bx, levels, upper=True)), stats["steps"].to_numpy(float))
    names = ("ax", "ay", "bx", "by")
    ci = {n: (float("nan"), float("nan")) for n in names}
    sd = {n: float("nan") for n in names}
    share = float("nan")
    counts = np.empty((0, images.size))
    if resamples > 0 and not any(f["code"] == "under_determined" for f in flags):
        counts = bootstrap_counts(images.size, resamples, rng)
        boot = solve(counts)
        alpha = (1 - level) / 2
        ci = {n: (float(np.quantile(boot[n], alpha)), float(np.quantile(boot[n], 1 - alpha))) for n in names}
        sd = {n: float(np.std(boot[n], ddof=1)) if resamples > 1 else float("nan") for n in names}
        share = float(np.mean(~_plateau_seen(boot["bx"], levels, upper=True)))
    # The smooth alternatives see what the model sees: for image offsets, each image's mean removed (the
    # grand mean added back), so between-image spread does not decide the ranking.
    y_compared = y - image_mean[image_index] + y.mean() if model == "image_offsets" else y

    def ratio(sse, sst):
        return 1.0 - sse / sst if sst > 0 else float("nan")

    return CurveFit(
        key=key, higher_is_better=higher_is_better, model=model, estimate=estimate, ci=ci, sd=sd,
        r2_within=ratio(sse_within, sst_within), r2_pooled=ratio(sse_pooled, sst_pooled), median_fit=median_fit,
        r2_medians=ratio(median_fit.sse, sst_medians), rmse=math.sqrt(estimate.sse / y.size),
        n_images=int(images.size), n_points=int(y.size), x_levels=levels, level_stats=stats,
        saturated=bool(_plateau_seen(estimate.bx, levels, upper=True)),
        floor_observed=bool(_plateau_seen(estimate.ax, levels, upper=False)), share_not_saturated=share,
        comparison=compare_models(x, y_compared), effect=effect,
        stop=noisy_stop(points, stats, higher_is_better, counts, level),
        flags=flags, points=points[["image_id", "x", "value"]].reset_index(drop=True),
    )
