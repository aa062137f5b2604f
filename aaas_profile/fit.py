"""Fit the four-parameter quality model of Du et al. (2023) to a run's scores, with bootstrap uncertainty,
a comparison against smooth saturating curves, and the runtime model.

The model (DESIGN.md, "The four-parameter model"), for x the step count (or UNet calls, or seconds per image)
and y a metric value in its raw units::

    f(x) = Ay                                 for x ≤ Ax
    f(x) = Ay + (By − Ay)·(x − Ax)/(Bx − Ax)  for Ax < x < Bx
    f(x) = By                                 for x ≥ Bx

with min(x) ≤ Ax < Bx ≤ max(x). It serves rising (higher-is-better) and falling (lower-is-better) curves alike.

``fit_run`` fits every (model, mask, jump setting, metric) of a run folder and writes ``fit.json``
(schema in docs/fit-json.md, ``SCHEMA_VERSION``) and ``plots/*.png``. Everything below it is a pure function
of arrays and tables, usable without files.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import optimize

from aaas_profile import metrics as metrics_mod
from aaas_profile import runs
from aaas_profile.errors import UserError, check_writable

SCHEMA_VERSION = 1
X_CHOICES = ("steps", "unet_calls", "wall_s")
X_UNITS = {"steps": "denoising steps", "unet_calls": "UNet calls per image", "wall_s": "seconds per image"}
CURVE_KEY = ("model", "mask", "jump_length", "jump_n_sample", "metric")
# The paper's simulator: runtime(t) = (0.001·t² + 2.5·t − 14)·60 s (Du et al. 2023, simulation settings).
PAPER_RUNTIME = {"formula": "(0.001*t**2 + 2.5*t - 14)*60", "unit": "s", "coef": [-840.0, 150.0, 0.06]}


class FitError(UserError, ValueError):
    """Scores that cannot be fitted as they are; the message is one line."""


def piecewise(x, ax: float, ay: float, bx: float, by: float) -> np.ndarray:
    """The four-parameter model at x (any shape). Requires ax < bx."""
    h = np.clip((np.asarray(x, dtype=float) - ax) / (bx - ax), 0.0, 1.0)
    return ay + (by - ay) * h


def paper_runtime(t) -> np.ndarray:
    """Seconds a task of t steps runs in the paper's simulator: (0.001·t² + 2.5·t − 14)·60."""
    t = np.asarray(t, dtype=float)
    return (0.001 * t**2 + 2.5 * t - 14.0) * 60.0


# ---------------------------------------------------------------------------------------------------------
# The exact least-squares fit of the two-breakpoint model
# ---------------------------------------------------------------------------------------------------------


def _prefix(a: np.ndarray) -> np.ndarray:
    return np.concatenate([np.zeros(a.shape[:-1] + (1,)), np.cumsum(a, axis=-1)], axis=-1)


def _candidates(x: np.ndarray, w: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Breakpoint pairs (Ax, Bx), shape (B, C), among which the global optimum lies (see ``solve_grouped``)."""
    n_batch, k = w.shape
    p0, p1, p2, py, pxy = (_prefix(a) for a in (w, w * x, w * x * x, s, s * x))

    def total(p, lo, hi):  # sums over the levels [lo, hi), one column per (lo, hi) pair
        lo, hi = np.broadcast_arrays(lo, hi)
        return p[:, hi] - p[:, lo]

    ax_list, bx_list = [], []
    # (d) both breakpoints on measured x values.
    a, b = np.triu_indices(k, 1)
    ax_list.append(np.broadcast_to(x[a], (n_batch, a.size)))
    bx_list.append(np.broadcast_to(x[b], (n_batch, b.size)))
    with np.errstate(divide="ignore", invalid="ignore"):
        # (a) both strictly between measured values: left levels [0, i], middle [i+1, j) (two or more levels),
        # right [j, k). Ay, By are the left and right means, the slope is the middle's least-squares line.
        i, j = (v.ravel() for v in np.meshgrid(np.arange(k), np.arange(k), indexing="ij"))
        keep = j - i >= 3
        i, j = i[keep], j[keep]
        ay = total(py, 0, i + 1) / total(p0, 0, i + 1)
        by = total(py, j, k) / total(p0, j, k)
        wm, xm, xxm = total(p0, i + 1, j), total(p1, i + 1, j), total(p2, i + 1, j)
        ym, xym = total(py, i + 1, j), total(pxy, i + 1, j)
        beta = (wm * xym - xm * ym) / (wm * xxm - xm**2)
        alpha = (ym - beta * xm) / wm
        ax_list.append((ay - alpha) / beta)
        bx_list.append((by - alpha) / beta)
        # (b) Ax on a measured value x[a], Bx strictly between: f = Ay + γ·(x − x[a])₊ on levels [0, j),
        # By the mean of [j, k); the middle (a, j) holds one level or more.
        a, j = (v.ravel() for v in np.meshgrid(np.arange(k), np.arange(k), indexing="ij"))
        keep = j - a >= 2
        a, j = a[keep], j[keep]
        xa = x[a]
        wm, xm, xxm = total(p0, a + 1, j), total(p1, a + 1, j), total(p2, a + 1, j)
        ym, xym = total(py, a + 1, j), total(pxy, a + 1, j)
        u, uu, uy = xm - xa * wm, xxm - 2 * xa * xm + xa**2 * wm, xym - xa * ym
        wg, yg = total(p0, 0, j), total(py, 0, j)
        gamma = (wg * uy - u * yg) / (wg * uu - u**2)
        ay = (yg - gamma * u) / wg
        by = total(py, j, k) / total(p0, j, k)
        ax_list.append(np.broadcast_to(xa, ay.shape))
        bx_list.append(xa + (by - ay) / gamma)
        # (c) Bx on a measured value x[b], Ax strictly between: f = By + δ·(x − x[b])₋ on levels [i+1, k),
        # Ay the mean of [0, i]; the middle (i, b) holds one level or more.
        i, b = (v.ravel() for v in np.meshgrid(np.arange(k), np.arange(k), indexing="ij"))
        keep = b - i >= 2
        i, b = i[keep], b[keep]
        xb = x[b]
        wm, xm, xxm = total(p0, i + 1, b), total(p1, i + 1, b), total(p2, i + 1, b)
        ym, xym = total(py, i + 1, b), total(pxy, i + 1, b)
        v, vv, vy = xm - xb * wm, xxm - 2 * xb * xm + xb**2 * wm, xym - xb * ym
        wg, yg = total(p0, i + 1, k), total(py, i + 1, k)
        delta = (wg * vy - v * yg) / (wg * vv - v**2)
        by = (yg - delta * v) / wg
        ay = total(py, 0, i + 1) / total(p0, 0, i + 1)
        ax_list.append(xb + (ay - by) / delta)
        bx_list.append(np.broadcast_to(xb, ay.shape))
    ax, bx = np.concatenate(ax_list, axis=1), np.concatenate(bx_list, axis=1)
    ok = np.isfinite(ax) & np.isfinite(bx) & (ax >= x[0] - 1e-9) & (bx <= x[-1] + 1e-9) & (bx - ax > 1e-9)
    ax = np.where(ok, np.clip(ax, x[0], x[-1]), x[0])  # an infeasible candidate becomes a harmless duplicate
    bx = np.where(ok, np.clip(bx, x[0], x[-1]), x[-1])
    return ax, bx


def _levels_fit(x, w, s, ax, bx):
    """For breakpoint pairs (B, C): the least-squares (Ay, By) and the between-level SSE Σ w·(mean − f)²."""
    with np.errstate(divide="ignore", invalid="ignore"):
        h = np.clip((x - ax[..., None]) / (bx - ax)[..., None], 0.0, 1.0)
        g = 1.0 - h
        wb, sb = w[:, None, :], s[:, None, :]
        a11, a12, a22 = (wb * g * g).sum(-1), (wb * g * h).sum(-1), (wb * h * h).sum(-1)
        r1, r2 = (sb * g).sum(-1), (sb * h).sum(-1)
        det = a11 * a22 - a12**2
        ay = (a22 * r1 - a12 * r2) / det
        by = (a11 * r2 - a12 * r1) / det
        mean = np.where(w > 0, s / np.where(w > 0, w, 1.0), 0.0)[:, None, :]
        sse = (wb * (mean - ay[..., None] * g - by[..., None] * h) ** 2).sum(-1)
    sse = np.where(np.isfinite(sse) & (det > 0), sse, np.inf)
    return ay, by, sse


def solve_grouped(x: np.ndarray, w: np.ndarray, s: np.ndarray) -> dict[str, np.ndarray]:
    """Global least-squares fit of the two-breakpoint model, batched, from per-level sufficient statistics.

    x: (K,) strictly increasing measured x values (K ≥ 2). w: (B, K) number of points (or weights) at each x;
    s: (B, K) the sum of y at each x. Returns arrays of shape (B,): ax, ay, bx, by and ``sse`` (the between-level
    part Σ_k w_k·(ȳ_k − f(x_k))²; the point-level SSE adds the constant within-level sum of squares).

    Why the optimum is global. For fixed (Ax, Bx) the model is linear in (Ay, By), so the profile SSE
    S(Ax, Bx) = min over (Ay, By) is an exact 2×2 least-squares solve. Partition the feasible set
    x₁ ≤ Ax < Bx ≤ x_K by which measured levels fall left of Ax, strictly between, and right of Bx. Inside one
    cell of that partition the middle levels follow a straight line α + βx, and (Ay, By, α, β) ↔
    (Ay, By, Ax, Bx) is a smooth bijection wherever β ≠ 0; the SSE is a convex quadratic in (Ay, By, α, β)
    with a unique minimiser when the middle holds two or more levels. So an interior minimum of a cell is
    *the* unconstrained minimiser of that quadratic (candidate a), and otherwise the minimum lies on the
    cell's boundary, where Ax or Bx equals a measured value; on such an edge the same argument with one free
    breakpoint gives one closed-form candidate (b: Ax fixed, c: Bx fixed), and the edge's ends are pairs of
    measured values (d). Cells whose middle holds fewer than two levels have an SSE that is constant along
    lines reaching the boundary, and β = 0 is the constant model, which every pair matches or beats. Hence
    the global minimiser is among O(K²) closed-form candidates; each is scored exactly with S and the best
    is kept. No grid resolution and no starting point is involved; candidates (a)–(c) outside their own
    cell are still valid pairs and only add harmless extra evaluations.
    """
    x = np.asarray(x, dtype=float)
    w, s = np.atleast_2d(np.asarray(w, dtype=float)), np.atleast_2d(np.asarray(s, dtype=float))
    if x.ndim != 1 or x.size < 2 or np.any(np.diff(x) <= 0):
        raise FitError("solve_grouped needs at least two strictly increasing x values")
    # Work on x scaled to [0, 1] so the normal equations stay well conditioned for any unit.
    lo, span = x[0], x[-1] - x[0]
    xs = (x - lo) / span
    out = {name: np.empty(w.shape[0]) for name in ("ax", "ay", "bx", "by", "sse")}
    chunk = max(1, int(2e7 // (x.size**3 + 1)))  # keep the (B, C, K) evaluation within a few hundred MB
    for start in range(0, w.shape[0], chunk):
        sl = slice(start, start + chunk)
        ax, bx = _candidates(xs, w[sl], s[sl])
        ay, by, sse = _levels_fit(xs, w[sl], s[sl], ax, bx)
        best = np.argmin(sse, axis=1)
        rows = np.arange(best.size)
        out["ax"][sl], out["bx"][sl] = lo + span * ax[rows, best], lo + span * bx[rows, best]
        out["ay"][sl], out["by"][sl], out["sse"][sl] = ay[rows, best], by[rows, best], sse[rows, best]
    return out


def _group(x, y, weights=None) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Distinct x levels, weight and sum of y per level, and the within-level sum of squares."""
    x, y = np.asarray(x, dtype=float).ravel(), np.asarray(y, dtype=float).ravel()
    wt = np.ones_like(y) if weights is None else np.asarray(weights, dtype=float).ravel()
    levels, index = np.unique(x, return_inverse=True)
    w = np.bincount(index, weights=wt, minlength=levels.size)
    s = np.bincount(index, weights=wt * y, minlength=levels.size)
    mean = s / w
    within = float(np.sum(wt * (y - mean[index]) ** 2))
    return levels, w, s, within


@dataclass(frozen=True)
class Piecewise:
    """A fitted two-breakpoint curve; ``sse`` is the point-level sum of squared residuals."""

    ax: float
    ay: float
    bx: float
    by: float
    sse: float

    def __call__(self, x) -> np.ndarray:
        return piecewise(x, self.ax, self.ay, self.bx, self.by)


def fit_piecewise(x, y, weights=None) -> Piecewise:
    """Global least-squares fit of the four-parameter model to points (x, y); see ``solve_grouped``."""
    levels, w, s, within = _group(x, y, weights)
    if levels.size < 2:
        raise FitError(f"the points are measured at a single x value ({levels[0]:g}); a fit needs at least two")
    r = solve_grouped(levels, w[None], s[None])
    return Piecewise(float(r["ax"][0]), float(r["ay"][0]), float(r["bx"][0]), float(r["by"][0]),
                     float(r["sse"][0]) + within)


# ---------------------------------------------------------------------------------------------------------
# Smooth saturating alternatives, for AIC/BIC
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SmoothFit:
    """A fitted smooth curve: ``name``, its parameters (raw units), point-level SSE and parameter count."""

    name: str
    params: dict[str, float]
    sse: float
    n_params: int

    def __call__(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        p = self.params
        if self.name == "exponential":
            return p["y_inf"] + (p["y0"] - p["y_inf"]) * np.exp(-(x - p["x0"]) / p["tau"])
        return p["lower"] + (p["upper"] - p["lower"]) / (1.0 + np.exp(-(x - p["x_mid"]) / p["scale"]))


def _linear_in_two(basis: np.ndarray, w: np.ndarray, s: np.ndarray):
    """Weighted least squares of level means on [1, basis] for many bases (…, K): (c0, c1, between-SSE)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        sw, sb, sbb = w.sum(), (w * basis).sum(-1), (w * basis * basis).sum(-1)
        sy, sby = s.sum(), (s * basis).sum(-1)
        c1 = (sw * sby - sb * sy) / (sw * sbb - sb**2)
        c0 = (sy - c1 * sb) / sw
        mean = s / w
        sse = (w * (mean - c0[..., None] - c1[..., None] * basis) ** 2).sum(-1)
    return c0, c1, np.where(np.isfinite(sse), sse, np.inf)


def fit_exponential(x, y) -> SmoothFit:
    """Least squares of y = y_inf + (y0 − y_inf)·exp(−(x − x0)/τ), x0 = min(x) fixed (3 parameters).

    Linear in (y_inf, y0) for fixed τ, so the fit is a 1-D search over τ: a log grid from span/200 to 20·span,
    then a bounded scalar refinement around the best grid point.
    """
    levels, w, s, within = _group(x, y)
    x0, span = levels[0], levels[-1] - levels[0]

    def sse_of(tau):
        basis = np.exp(-(levels - x0) / np.atleast_1d(tau)[:, None])
        return _linear_in_two(basis, w, s)

    taus = span * np.logspace(np.log10(1 / 200), np.log10(20), 240)
    best = int(np.argmin(sse_of(taus)[2]))
    lo, hi = taus[max(best - 1, 0)], taus[min(best + 1, taus.size - 1)]
    res = optimize.minimize_scalar(lambda t: float(sse_of(t)[2][0]), bounds=(lo, hi), method="bounded",
                                   options={"xatol": 1e-9 * span})
    tau = float(res.x) if res.fun <= sse_of(taus[best])[2][0] else float(taus[best])
    c0, c1, sse = (float(v[0]) for v in sse_of(tau))
    return SmoothFit("exponential", {"y_inf": c0, "y0": c0 + c1, "tau": tau, "x0": float(x0)}, sse + within, 3)


def fit_logistic(x, y) -> SmoothFit:
    """Least squares of y = lower + (upper − lower)/(1 + exp(−(x − x_mid)/scale)) (4 parameters).

    Linear in (lower, upper) for fixed (x_mid, scale): a 2-D grid (x_mid over the range widened by half a
    span each side, scale on a log grid), then Nelder–Mead from the best grid point.
    """
    levels, w, s, within = _group(x, y)
    span = levels[-1] - levels[0]
    mids = np.linspace(levels[0] - span / 2, levels[-1] + span / 2, 81)
    scales = span * np.logspace(np.log10(1 / 200), np.log10(5), 60)

    def fit_at(mid, scale):
        mid, scale = np.asarray(mid, dtype=float), np.asarray(scale, dtype=float)
        with np.errstate(over="ignore"):
            basis = 1.0 / (1.0 + np.exp(-(levels - mid[..., None]) / scale[..., None]))
        return _linear_in_two(basis, w, s)

    m, sc = np.meshgrid(mids, scales, indexing="ij")
    grid_sse = fit_at(m, sc)[2]
    i, j = np.unravel_index(int(np.argmin(grid_sse)), grid_sse.shape)
    start = np.array([mids[i], np.log(scales[j])])
    res = optimize.minimize(lambda p: float(fit_at(p[0], np.exp(p[1]))[2]), start, method="Nelder-Mead",
                            options={"xatol": 1e-8, "fatol": 1e-12, "maxiter": 2000})
    best = res.x if res.fun <= grid_sse[i, j] else start
    c0, c1, sse = (float(v) for v in fit_at(best[0], np.exp(best[1])))
    params = {"lower": c0, "upper": c0 + c1, "x_mid": float(best[0]), "scale": float(np.exp(best[1]))}
    return SmoothFit("logistic", params, sse + within, 4)


def information_criteria(sse: float, n: int, n_params: int) -> dict[str, float]:
    """Gaussian AIC and BIC from a least-squares fit: n·ln(SSE/n) + 2k and n·ln(SSE/n) + k·ln n, where k counts
    the curve's parameters plus the noise variance."""
    k = n_params + 1
    core = n * math.log(max(sse, 1e-300) / n)
    return {"aic": core + 2 * k, "bic": core + k * math.log(n)}


def compare_models(x, y, piece: Piecewise | None = None) -> dict:
    """The four-parameter model against exponential and logistic saturation, by AIC and BIC (lower wins).

    Points are treated as independent Gaussian errors; repeated images make that optimistic for every model
    alike, so the ranking, not the absolute values, is what to read."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    piece = piece or fit_piecewise(x, y)
    n = y.size
    fits = {"piecewise": (piece.sse, 4, {"ax": piece.ax, "ay": piece.ay, "bx": piece.bx, "by": piece.by})}
    for smooth in (fit_exponential(x, y), fit_logistic(x, y)):
        fits[smooth.name] = (smooth.sse, smooth.n_params, smooth.params)
    models = {name: {"n_params": k, "sse": sse, **information_criteria(sse, n, k), "params": params}
              for name, (sse, k, params) in fits.items()}
    best_aic = min(models, key=lambda m: models[m]["aic"])
    best_bic = min(models, key=lambda m: models[m]["bic"])
    return {"models": models, "best_aic": best_aic, "best_bic": best_bic,
            "delta_aic_piecewise": models["piecewise"]["aic"] - models[best_aic]["aic"]}


# ---------------------------------------------------------------------------------------------------------
# One curve: point estimate, bootstrap over images, fit statistics
# ---------------------------------------------------------------------------------------------------------


@dataclass
class CurveFit:
    """The fit of one (model, mask, jump setting, metric) curve; parameters in raw units of metric and x."""

    key: dict
    higher_is_better: bool
    estimate: Piecewise
    ci: dict[str, tuple[float, float]]
    sd: dict[str, float]
    r2: float
    rmse: float
    n_images: int
    n_points: int
    x_levels: np.ndarray
    level_stats: pd.DataFrame  # per x level: steps, x, n, mean, median, q25, q75
    saturated: bool
    floor_observed: bool
    share_not_saturated: float  # bootstrap resamples whose Bx sits on the upper boundary
    comparison: dict
    points: pd.DataFrame = field(repr=False)  # image_id, x, value (for plots)

    def to_dict(self) -> dict:
        e = self.estimate
        params = {name: {"value": getattr(e, name), "ci": list(self.ci[name]), "sd": self.sd[name]}
                  for name in ("ax", "ay", "bx", "by")}
        return {
            **self.key, "higher_is_better": self.higher_is_better, **params,
            "saturated": self.saturated, "floor_observed": self.floor_observed,
            "share_not_saturated": self.share_not_saturated,
            "r2": self.r2, "rmse": self.rmse, "sse": e.sse, "n_images": self.n_images, "n_points": self.n_points,
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


def bootstrap_counts(n_images: int, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(resamples, n_images) counts: how often each image is drawn when drawing n_images with replacement."""
    draws = rng.integers(0, n_images, size=(resamples, n_images))
    flat = (draws + n_images * np.arange(resamples)[:, None]).ravel()
    return np.bincount(flat, minlength=resamples * n_images).reshape(resamples, n_images).astype(float)


def fit_curve(points: pd.DataFrame, key: dict, higher_is_better: bool, resamples: int = 200,
              rng: np.random.Generator | None = None, level: float = 0.95) -> CurveFit:
    """Fit one curve from ``points`` (columns image_id, steps, x, value) with a bootstrap over images.

    Each resample draws the curve's images with replacement (every row of a drawn image comes along: all its
    step counts and seeds) and refits exactly; the interval for each parameter is the bootstrap percentile
    interval at ``level``. R² and RMSE are over all points of the curve.
    """
    rng = rng or np.random.default_rng(0)
    x, y = points["x"].to_numpy(float), points["value"].to_numpy(float)
    levels, index = np.unique(x, return_inverse=True)
    if levels.size < 2:
        what = " ".join(f"{k}={v}" for k, v in key.items())
        raise FitError(f"{what}: measured at a single step count ({points['steps'].iloc[0]}); "
                       "a fit needs at least two")
    estimate = fit_piecewise(x, y)
    images, image_index = np.unique(points["image_id"].to_numpy(str), return_inverse=True)
    # Per image × level: counts and sums, so a resample's level statistics are one matrix product.
    n_il = np.zeros((images.size, levels.size))
    s_il = np.zeros((images.size, levels.size))
    np.add.at(n_il, (image_index, index), 1.0)
    np.add.at(s_il, (image_index, index), y)
    names = ("ax", "ay", "bx", "by")
    if resamples > 0:
        counts = bootstrap_counts(images.size, resamples, rng)
        boot = solve_grouped(levels, counts @ n_il, counts @ s_il)
        alpha = (1 - level) / 2
        ci = {n: (float(np.quantile(boot[n], alpha)), float(np.quantile(boot[n], 1 - alpha))) for n in names}
        sd = {n: float(np.std(boot[n], ddof=1)) if resamples > 1 else float("nan") for n in names}
        share = float(np.mean(~_plateau_seen(boot["bx"], levels, upper=True)))
    else:
        ci = {n: (float("nan"), float("nan")) for n in names}
        sd = {n: float("nan") for n in names}
        share = float("nan")
    sst = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - estimate.sse / sst if sst > 0 else float("nan")
    by_level = points.groupby("x")
    stats = pd.DataFrame({
        "steps": by_level["steps"].median().to_numpy(float),
        "x": levels, "n": by_level.size().to_numpy(int), "mean": by_level["value"].mean().to_numpy(),
        "median": by_level["value"].median().to_numpy(),
        "q25": by_level["value"].quantile(0.25).to_numpy(), "q75": by_level["value"].quantile(0.75).to_numpy(),
    })
    return CurveFit(
        key=key, higher_is_better=higher_is_better, estimate=estimate, ci=ci, sd=sd, r2=r2,
        rmse=math.sqrt(estimate.sse / y.size), n_images=int(images.size), n_points=int(y.size), x_levels=levels,
        level_stats=stats, saturated=bool(_plateau_seen(estimate.bx, levels, upper=True)),
        floor_observed=bool(_plateau_seen(estimate.ax, levels, upper=False)), share_not_saturated=share,
        comparison=compare_models(x, y, estimate), points=points[["image_id", "x", "value"]].reset_index(drop=True),
    )


# ---------------------------------------------------------------------------------------------------------
# The [0, 1] quality scale and the runtime model
# ---------------------------------------------------------------------------------------------------------


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


def _polyfit(x: np.ndarray, y: np.ndarray, degree: int) -> dict:
    degree = min(degree, np.unique(x).size - 1)
    coef = np.polynomial.polynomial.polyfit(x, y, degree)  # ascending powers
    predicted = np.polynomial.polynomial.polyval(x, coef)
    sst = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - float(np.sum((y - predicted) ** 2)) / sst if sst > 0 else float("nan")
    return {"degree": int(degree), "coef": [float(c) for c in coef], "r2": r2,
            "rmse": float(np.sqrt(np.mean((y - predicted) ** 2)))}


# The simulator's task sizes (DESIGN.md, "The simulator"): t ∈ {100, 110, …, 250} steps.
SIM_TASK_STEPS = (100, 250)
# Below this R² the quadratic explains too little of the timings to extrapolate it to the simulator's steps:
# steady CPU timings of the bundled models fit with R² > 0.99; the noisy case of issue 15 had 0.61.
RUNTIME_MIN_R2 = 0.9


def runtime_problem(coef, low: float, high: float) -> str | None:
    """Why the runtime polynomial ``coef`` (seconds per image, ascending powers) cannot be a task's runtime over
    ``low``–``high`` steps, as a phrase ("is not positive at 250 steps (-3.1 s)"), or None when it can: it must
    be positive there and must not fall as the steps grow."""
    grid = np.arange(float(low), float(high) + 1.0)
    values = np.polynomial.polynomial.polyval(grid, np.asarray(coef, dtype=float))
    if np.any(values <= 0):
        i = int(np.argmax(values <= 0))
        return f"is not positive at {grid[i]:g} steps ({values[i]:.3g} s)"
    if np.any(np.diff(values) < 0):
        i = int(np.argmax(np.diff(values) < 0))
        return f"falls as steps grow ({values[i]:.3g} s at {grid[i]:g} steps, less after)"
    return None


def runtime_warning(entry: dict) -> str | None:
    """One line on a fitted runtime model (a ``fit_runtime`` entry) that the simulator should not trust, or
    None: a low R², or a curve that is not positive and rising from the smallest measured step count to the
    simulator's largest task."""
    fit = entry.get("vs_steps")
    if fit is None:
        return None
    low = min(entry["measured"]["steps"])
    problem = runtime_problem(fit["coef"], low, max(SIM_TASK_STEPS))
    where = f"runtime model of {entry['model']} ({entry['device']}, {entry['dtype']})"
    if problem:
        return (f"{where} {problem} over {low:g}–{max(SIM_TASK_STEPS)} steps (R² {fit['r2']:.2f}): the timings "
                "are too noisy or too few; simulate --profile needs --runtime paper, or re-sweep with steady timings")
    if fit["r2"] == fit["r2"] and fit["r2"] < RUNTIME_MIN_R2:
        return (f"{where} explains little of the timings (R² {fit['r2']:.2f} < {RUNTIME_MIN_R2}); the simulator "
                "extrapolates it to 250 steps, so check it, or use simulate --runtime paper")
    return None


def fit_runtime(scores: pd.DataFrame) -> list[dict]:
    """Seconds per image against steps (quadratic, the paper's form) and against UNet calls (linear).

    One entry per (model, jump setting, device, dtype), from one row per cell (the scores table repeats a cell's
    wall_s on each metric row); ``coef`` holds ascending powers, c0 + c1·x + c2·x², in seconds per image.
    Cells with a missing or non-finite wall_s are left out.
    """
    cells = scores.drop_duplicates(subset=list(runs.CELL_KEY))
    cells = cells[np.isfinite(cells["wall_s"].to_numpy(float))]
    out = []
    for (model, jl, jn, device, dtype), group in cells.groupby(
        ["model", "jump_length", "jump_n_sample", "device", "dtype"], sort=True
    ):
        steps, calls = group["steps"].to_numpy(float), group["unet_calls"].to_numpy(float)
        wall = group["wall_s"].to_numpy(float)
        measured = group.groupby("steps").agg(unet_calls=("unet_calls", "median"), median_wall_s=("wall_s", "median"),
                                              n_cells=("wall_s", "size")).reset_index()
        entry = {
            "model": model, "jump_length": int(jl), "jump_n_sample": int(jn), "device": device, "dtype": dtype,
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


# ---------------------------------------------------------------------------------------------------------
# A whole run folder
# ---------------------------------------------------------------------------------------------------------


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
    return scores.reset_index(drop=True)


def fit_scores(scores: pd.DataFrame, x: str = "steps", resamples: int = 200, seed: int = 0,
               level: float = 0.95) -> list[CurveFit]:
    """Fit every (model, mask, jump setting, metric) curve of a scores table.

    With ``x="wall_s"`` each step count sits at the median seconds per image of its cells in that curve: the
    batch-to-batch jitter of wall time says nothing about quality, and a shared x per step count keeps the
    images paired across step counts for the bootstrap.
    """
    rng = np.random.default_rng(seed)
    curves = []
    for values, group in scores.groupby(list(CURVE_KEY), sort=True):
        key = dict(zip(CURVE_KEY, values, strict=True))
        key = {k: (int(v) if k.startswith("jump") else str(v)) for k, v in key.items()}
        points = pd.DataFrame({"image_id": group["image_id"].to_numpy(), "steps": group["steps"].to_numpy(),
                               "value": group["value"].to_numpy(float), "x": group[x].to_numpy(float)})
        if x == "wall_s":
            points["x"] = points.groupby("steps")["x"].transform("median")
        points["x"] = points["x"].astype(float)
        metric = key["metric"]
        if metric in metrics_mod.METRICS:
            hib = metrics_mod.METRICS[metric].higher_is_better
        else:
            hib = bool(group["higher_is_better"].iloc[0])
        curves.append(fit_curve(points, key, hib, resamples=resamples, rng=rng, level=level))
    return curves


def _clean(value):
    """JSON-safe: numpy scalars to Python, NaN/inf to None."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_clean(v) for v in value]
    if isinstance(value, np.bool_ | bool):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    return value


def build_document(run_dir: Path, x: str, curves: list[CurveFit], scales: dict, runtime: list[dict],
                   resamples: int, seed: int, level: float) -> dict:
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
    if fitted:  # the first (model, jump setting, device, dtype), as the simulator's default
        first = fitted[0]
        source = {k: first[k] for k in ("model", "jump_length", "jump_n_sample", "device", "dtype")}
        summary["steps"] = {"coef": first["vs_steps"]["coef"], "unit": "s per image", **source}
        summary["unet_calls"] = {"coef": first["vs_unet_calls"]["coef"], "unit": "s per image", **source}
    return _clean({
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "aaas-profile", "version": aaas_profile.__version__, "git": runs.git_revision()},
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "run": str(run_dir),
        "model_form": "f(x) = Ay for x <= Ax; Ay + (By - Ay)*(x - Ax)/(Bx - Ax) for Ax < x < Bx; By for x >= Bx",
        "x": {"name": x, "unit": X_UNITS[x]},
        "bootstrap": {"resamples": resamples, "seed": seed, "level": level, "unit": "image_id",
                      "interval": "percentile"},
        "curves": entries,
        "scales": scales,
        "runtime": summary,
    })


def write_json(path: Path, document: dict) -> None:
    """Write atomically (temp file, then rename; nothing left behind on failure)."""
    runs.write_atomic(Path(path), json.dumps(document, indent=2, allow_nan=False) + "\n")


def load_fit(path: Path) -> dict:
    """Read a fit.json; raises FitError if it is missing, not JSON, or of a schema version this code does not know."""
    path = Path(path)
    if path.is_dir():
        path = path / "fit.json"
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        raise FitError(f"{path}: no such file; run `aaas-profile fit` on the run folder first") from None
    except json.JSONDecodeError as err:
        raise FitError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from None
    version = document.get("schema_version") if isinstance(document, dict) else None
    if version != SCHEMA_VERSION:
        raise FitError(f"{path}: fit.json schema_version {version!r}, this aaas-profile reads {SCHEMA_VERSION}")
    return document


def fit_run(run: Path, x: str = "steps", resamples: int = 200, seed: int = 0, level: float = 0.95,
            metrics: list[str] | None = None, drop_nan: bool = False, plots: bool = True) -> FitResult:
    """Fit a run folder: writes ``<run>/fit.json`` and, with ``plots``, ``<run>/plots/*.png``."""
    if not 0 < level < 1:
        raise FitError(f"confidence level {level} must be between 0 and 1")
    if resamples < 0:
        raise FitError(f"bootstrap resamples {resamples} must be 0 or more")
    run = Path(run)
    scores = load_scores(run, x=x, metrics=metrics, drop_nan=drop_nan)
    for folder in (run, *([run / "plots"] if plots else [])):  # check first: fail before the bootstrap
        check_writable(folder, "run folder (fit writes fit.json and plots/ there)")
    curves = fit_scores(scores, x=x, resamples=resamples, seed=seed, level=level)
    scales = quality_scales(curves)
    runtime = fit_runtime(scores)
    document = build_document(run, x, curves, scales, runtime, resamples, seed, level)
    path = run / "fit.json"
    write_json(path, document)
    written: list[Path] = []
    if plots:
        from aaas_profile import plots as plots_mod

        written = plots_mod.plot_all(curves, run / "plots", x=x)
    return FitResult(run, x, curves, scales, runtime, path, written, document)
