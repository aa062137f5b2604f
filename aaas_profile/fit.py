"""Fit the four-parameter quality model of Du et al. (2023) to a run's scores, with bootstrap uncertainty,
a comparison against smooth saturating curves, and the runtime model.

The model (docs/design.md, "The four-parameter model"), for x the step count (or UNet calls, or seconds per image)
and y a metric value in its raw units::

    f(x) = Ay                                 for x ≤ Ax
    f(x) = Ay + (By − Ay)·(x − Ax)/(Bx − Ax)  for Ax < x < Bx
    f(x) = By                                 for x ≥ Bx

with min(x) ≤ Ax < Bx ≤ max(x). It serves rising (higher-is-better) and falling (lower-is-better) curves alike.
Every image is measured at every step count, so by default the curve's shape is shared and each image gets its
own level (``image_offsets``: y = f(x) + u_image + e), as docs/design.md describes; ``pooled`` fits one curve
through all points. Both are exact global least-squares fits (``solve_profile``), with a bootstrap over whole
images, R² within images, pooled and on the per-step medians, a paired test of whether steps matter at all
(``step_effect``), flags a reader must see (``curve_flags``) and where the median stops gaining (``stop_point``).

Everything here is a pure function of arrays and tables, usable without files: ``fit_scores`` fits every
(model, mask, sampler, jump setting, metric) curve of a scores table. Reading a run folder's scores and writing
``fit.json`` and the plots is ``aaas_profile.fitrun``'s work; the fit.json format (version, reader, writer)
is ``aaas_profile.fitfile``'s.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import optimize

from aaas_profile import runs
from aaas_profile.core.acceptance import (
    MIN_IMAGES_FOR_INTERVALS,
    MIN_LEVELS_FOR_INTERVALS,
    RUNTIME_MIN_R2,
    has_no_stop,
    runtime_problem,
    runtime_rank,
)
from aaas_profile.core.curve_keys import (
    CURVE_KEY,
    SAMPLER_DEFAULTS,
    sampler_label,
    setting_of,
    with_sampler_columns,
)
from aaas_profile.core.formulas import TASK_STEPS_RANGE as SIM_TASK_STEPS
from aaas_profile.core.formulas import piecewise
from aaas_profile.errors import UserError

X_CHOICES = ("steps", "unet_calls", "wall_s")
X_UNITS = {"steps": "denoising steps", "unet_calls": "UNet calls per image", "wall_s": "seconds per image"}


class FitError(UserError, ValueError):
    """Scores that cannot be fitted as they are; the message is one line."""


# ---------------------------------------------------------------------------------------------------------
# The exact least-squares fit of the two-breakpoint model
# ---------------------------------------------------------------------------------------------------------


def _cell_designs(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every cell of the breakpoint partition as a linear design over the K levels (see ``solve_profile``).

    Returns ``design`` (C, K, 3): the model's free columns with the floor's level fixed at 0 (the constant is
    profiled out, so the level carries no information about the breakpoints), ``kind`` (C,): 0 both
    breakpoints free, 1 Ax on a measured value, 2 Bx on a measured value, 3 both on measured values, and
    ``anchor`` (C, 2): the measured Ax and/or Bx a cell fixes (NaN where free).
    """
    k = x.size
    designs, kinds, anchors = [], [], []
    left = np.arange(k)
    for i in range(k):  # (a) left levels [0, i], middle [i+1, j) (two or more), right [j, k): By, α, β
        for j in range(i + 3, k):
            mid = (left > i) & (left < j)
            designs.append(np.stack([(left >= j) * 1.0, mid * 1.0, mid * x], axis=1))
            kinds.append(0)
            anchors.append((np.nan, np.nan))
    for a in range(k):  # (b) Ax = x[a], Bx inside (a, j): γ·(x − x[a])₊ on [0, j), By on [j, k)
        for j in range(a + 2, k):
            ramp = np.where(left < j, np.maximum(x - x[a], 0.0), 0.0)
            designs.append(np.stack([ramp, (left >= j) * 1.0, np.zeros(k)], axis=1))
            kinds.append(1)
            anchors.append((x[a], np.nan))
    for i in range(k):  # (c) Bx = x[b], Ax inside (i, b): Ay on [0, i], By + δ·(x − x[b])₋ on [i+1, k)
        for b in range(i + 2, k):
            ramp = np.where(left > i, np.minimum(x - x[b], 0.0), 0.0)
            designs.append(np.stack([(left > i) * 1.0, ramp, np.zeros(k)], axis=1))
            kinds.append(2)
            anchors.append((np.nan, x[b]))
    for a in range(k):  # (d) both breakpoints on measured values
        for b in range(a + 1, k):
            designs.append(np.zeros((k, 3)))
            kinds.append(3)
            anchors.append((x[a], x[b]))
    return np.array(designs), np.array(kinds), np.array(anchors)


def solve_profile(x: np.ndarray, q: np.ndarray, b: np.ndarray) -> dict[str, np.ndarray]:
    """Global least-squares breakpoints of the two-breakpoint model under a quadratic form, batched.

    The model at the K measured levels is f = c·1 + d·h, h_k = clip((x_k − Ax)/(Bx − Ax), 0, 1). Every model
    this module fits has a residual sum of squares of the form SSE(f) = C − 2·bᵀf + fᵀQf with Q·1 = 0 and
    bᵀ1 = 0 once the constant (an intercept, or per-image offsets) is profiled out (``pooled_form``,
    ``offset_form``). Minimising over the rise d then gives SSE = C − (bᵀh)²/(hᵀQh), a function of (Ax, Bx)
    alone. x: (K,) strictly increasing, scaled to [0, 1] by the caller; q: (B, K, K); b: (B, K).
    Returns arrays of shape (B,): ``ax``, ``bx``, ``rise`` (d = By − Ay) and ``gain`` ((bᵀh)²/(hᵀQh), the
    reduction of the SSE below that of a flat line).

    Why the optimum is global. Partition the feasible set x₁ ≤ Ax < Bx ≤ x_K by which measured levels fall
    left of Ax, strictly between, and right of Bx. Inside one cell the middle levels follow a straight line
    α + βx, and (Ay, By, α, β) ↔ (Ay, By, Ax, Bx) is a smooth bijection wherever β ≠ 0; the SSE is a convex
    quadratic in (Ay, By, α, β) with a unique minimiser (up to the profiled constant) when the middle holds
    two or more levels. So an interior minimum of a cell is *the* unconstrained minimiser of that quadratic
    (candidate a), and otherwise the minimum lies on the cell's boundary, where Ax or Bx equals a measured
    value; on such an edge the same argument with one free breakpoint gives one closed-form candidate (b: Ax
    fixed, c: Bx fixed), and the edge's ends are pairs of measured values (d). Cells whose middle holds fewer
    than two levels have an SSE that is constant along lines reaching the boundary, and β = 0 is the flat
    model, which every pair matches or beats. Hence the global minimiser is among O(K²) closed-form
    candidates; each is scored exactly and the best is kept. No grid resolution and no starting point is
    involved; candidates outside their own cell are still valid pairs and only add harmless evaluations.
    """
    design, kind, anchor = _cell_designs(x)
    n_batch, k = b.shape
    out = {name: np.empty(n_batch) for name in ("ax", "bx", "rise", "gain")}
    chunk = max(1, int(4e6 // (design.shape[0] * k * k + 1)))  # keep the (B, C, K, K)-sized work small
    eye = np.eye(3)
    for start in range(0, n_batch, chunk):
        sl = slice(start, start + chunk)
        qs, bs = q[sl], b[sl]
        # Each cell's normal equations (the unused third column of kinds b and c gets an identity row).
        ql = np.einsum("bkl,clp->bckp", qs, design)
        normal = np.einsum("ckp,bckq->bcpq", design, ql)
        normal[:, (kind == 1) | (kind == 2), 2, 2] = 1.0
        normal[:, kind == 3] = eye
        rhs = np.einsum("ckp,bk->bcp", design, bs)
        scale = np.abs(normal).reshape(*normal.shape[:2], -1).max(-1)
        det = np.linalg.det(normal)
        singular = ~np.isfinite(det) | (np.abs(det) <= 1e-12 * np.maximum(scale, 1e-300) ** 3)
        theta = np.linalg.solve(np.where(singular[..., None, None], eye, normal), rhs[..., None])[..., 0]
        t0, t1, t2 = theta[..., 0], theta[..., 1], theta[..., 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            ax = np.select([kind == 0, kind == 2], [-t1 / t2, anchor[:, 1] - t0 / t1], anchor[:, 0])
            bx = np.select([kind == 0, kind == 1], [(t0 - t1) / t2, anchor[:, 0] + t1 / t0], anchor[:, 1])
        ok = (np.isfinite(ax) & np.isfinite(bx) & (ax >= x[0] - 1e-9) & (bx <= x[-1] + 1e-9) & (bx - ax > 1e-9)
              & ~(singular & (kind != 3)))
        ax = np.where(ok, np.clip(ax, x[0], x[-1]), x[0])  # an infeasible candidate becomes a harmless duplicate
        bx = np.where(ok, np.clip(bx, x[0], x[-1]), x[-1])
        h = np.clip((x - ax[..., None]) / (bx - ax)[..., None], 0.0, 1.0)
        num = np.einsum("bck,bk->bc", h, bs)
        den = np.einsum("bck,bck->bc", np.einsum("bck,bkl->bcl", h, qs), h)
        with np.errstate(divide="ignore", invalid="ignore"):
            gain = np.where(den > 1e-12 * np.maximum(np.einsum("bkk->b", qs), 1e-300)[:, None], num**2 / den, 0.0)
        best = np.argmax(gain, axis=1)
        rows = np.arange(best.size)
        out["ax"][sl], out["bx"][sl], out["gain"][sl] = ax[rows, best], bx[rows, best], gain[rows, best]
        with np.errstate(divide="ignore", invalid="ignore"):
            rise = num[rows, best] / den[rows, best]
        out["rise"][sl] = np.where(gain[rows, best] > 0, rise, 0.0)
    return out


def pooled_form(w: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(Q, b, C) of the pooled model from per-level weights w and sums s, (B, K) each: one intercept for all
    points, Q = diag(w) − wwᵀ/W, b = s − w·S/W, C = Σ s²/w − S²/W (the between-level sum of squares)."""
    total_w, total_s = w.sum(-1, keepdims=True), s.sum(-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.where(total_w > 0, total_s / total_w, 0.0)
        between = np.where(w > 0, s**2 / np.where(w > 0, w, 1.0), 0.0).sum(-1) - (mean * total_s)[:, 0]
        q = np.einsum("bk,kl->bkl", w, np.eye(w.shape[-1])) - w[:, :, None] * w[:, None, :] / total_w[..., None]
    return q, s - w * mean, between


def offset_terms(n_il: np.ndarray, s_il: np.ndarray, ss_i: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-image terms of the offset model's (Q, b, C): (I, K·K), (I, K), (I,).

    With an offset u_i per image, SSE(f, u) = Σ_i Σ_points (y − f(x) − u_i)². The best u_i is the mean of the
    image's residuals, which leaves SSE(f) = C − 2·bᵀf + fᵀQf with, summed over images,
    Q_i = diag(n_i) − n_i n_iᵀ/N_i, b_i = s_i − n_i·S_i/N_i, C_i = Σ y² − S_i²/N_i (n_i, s_i: the image's point
    count and sum per level; N_i, S_i their totals). A bootstrap resample's (Q, b, C) is then counts @ terms.
    """
    total_n, total_s = n_il.sum(1), s_il.sum(1)
    q = (np.einsum("ik,kl->ikl", n_il, np.eye(n_il.shape[1]))
         - n_il[:, :, None] * n_il[:, None, :] / total_n[:, None, None])
    b = s_il - n_il * (total_s / total_n)[:, None]
    return q.reshape(len(n_il), -1), b, ss_i - total_s**2 / total_n


def _scaled(x: np.ndarray) -> tuple[np.ndarray, float, float]:
    x = np.asarray(x, dtype=float)
    if x.ndim != 1 or x.size < 2 or np.any(np.diff(x) <= 0):
        raise FitError("the fit needs at least two strictly increasing x values")
    # Work on x scaled to [0, 1] so the normal equations stay well conditioned for any unit.
    return (x - x[0]) / (x[-1] - x[0]), float(x[0]), float(x[-1] - x[0])


def _finish(x: np.ndarray, lo: float, span: float, r: dict, w: np.ndarray, s: np.ndarray, c: np.ndarray) -> dict:
    """Breakpoints back to x's units; Ay, By at the level where Σ_k w_k·(s_k/w_k − f_k) = 0 (for the pooled
    model: the residuals sum to zero over all points)."""
    h = np.clip((x - r["ax"][:, None]) / (r["bx"] - r["ax"])[:, None], 0.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ay = (s.sum(-1) - r["rise"] * (w * h).sum(-1)) / w.sum(-1)
    return {"ax": lo + span * r["ax"], "bx": lo + span * r["bx"], "ay": ay, "by": ay + r["rise"],
            "sse": np.maximum(c - r["gain"], 0.0)}


def solve_grouped(x: np.ndarray, w: np.ndarray, s: np.ndarray) -> dict[str, np.ndarray]:
    """Global least-squares fit of the pooled two-breakpoint model, batched, from per-level sufficient statistics.

    x: (K,) strictly increasing measured x values (K ≥ 2). w: (B, K) number of points (or weights) at each x;
    s: (B, K) the sum of y at each x. Returns arrays of shape (B,): ax, ay, bx, by and ``sse`` (the between-level
    part Σ_k w_k·(ȳ_k − f(x_k))²; the point-level SSE adds the constant within-level sum of squares).
    Exact and global: see ``solve_profile``.
    """
    xs, lo, span = _scaled(x)
    w, s = np.atleast_2d(np.asarray(w, dtype=float)), np.atleast_2d(np.asarray(s, dtype=float))
    q, b, c = pooled_form(w, s)
    return _finish(xs, lo, span, solve_profile(xs, q, b), w, s, c)


def solve_offsets(x: np.ndarray, q: np.ndarray, b: np.ndarray, c: np.ndarray, w: np.ndarray,
                  s: np.ndarray) -> dict[str, np.ndarray]:
    """Global least-squares fit of the shared-shape model with one offset per image, batched.

    x: (K,) strictly increasing; q (B, K·K), b (B, K), c (B,): summed ``offset_terms``; w, s (B, K): per level,
    Σ_i n_ik/N_i and Σ_i s_ik/N_i over the (drawn) images. They place Ay, By at the average image's level
    (the offsets average to zero over images, each image counted once however many points it has).
    Returns ax, ay, bx, by and ``sse`` (the within-image SSE: every image at its own level).
    Exact and global: see ``solve_profile``.
    """
    xs, lo, span = _scaled(x)
    k = xs.size
    q = np.asarray(q, dtype=float).reshape(-1, k, k)
    return _finish(xs, lo, span, solve_profile(xs, q, np.atleast_2d(b)), np.atleast_2d(w), np.atleast_2d(s),
                   np.atleast_1d(c))


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
# One curve: point estimate, bootstrap over images, fit statistics, flags
# ---------------------------------------------------------------------------------------------------------

# What `fit --model` can fit. Every image is measured at every step count, so the default shares the curve's
# shape across images and gives each image its own level (docs/design.md, "The four-parameter model").
FIT_MODELS = {
    "image_offsets": "y = f(x) + u_image + e: shape (Ax, Bx, By - Ay) shared, one level u per image; the offsets "
                     "average to zero over images, so Ay and By are the average image's levels",
    "pooled": "y = f(x) + e: one curve through all points, images ignored",
}
EFFECT_ALPHA = 0.05
STOP_FRACTION = 0.01  # "stop paying for steps" once the median gains less than this share of the curve's range
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


def bootstrap_counts(n_images: int, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(resamples, n_images) counts: how often each image is drawn when drawing n_images with replacement."""
    draws = rng.integers(0, n_images, size=(resamples, n_images))
    flat = (draws + n_images * np.arange(resamples)[:, None]).ravel()
    return np.bincount(flat, minlength=resamples * n_images).reshape(resamples, n_images).astype(float)


def level_summary(points: pd.DataFrame) -> pd.DataFrame:
    """Per measured x (increasing): steps, x, n (points), mean, median, q25, q75 of ``value``, and the median
    ``unet_calls`` and ``wall_s`` (seconds per image) where ``points`` has them (NaN otherwise)."""
    by_level = points.groupby("x")
    stats = pd.DataFrame({
        "steps": by_level["steps"].median().to_numpy(float),
        "x": np.asarray(sorted(by_level.groups), dtype=float), "n": by_level.size().to_numpy(int),
        "mean": by_level["value"].mean().to_numpy(), "median": by_level["value"].median().to_numpy(),
        "q25": by_level["value"].quantile(0.25).to_numpy(), "q75": by_level["value"].quantile(0.75).to_numpy(),
    })
    for column in ("unet_calls", "wall_s"):
        stats[column] = (by_level[column].median().to_numpy(float) if column in points
                         else np.full(len(stats), np.nan))
    return stats


def stop_point(stats: pd.DataFrame, higher_is_better: bool, fraction: float = STOP_FRACTION) -> dict:
    """Where to stop paying for steps: the first step count beyond which the per-step median gains less than
    ``fraction`` of the curve's range (max − min of the medians over the grid), i.e. no later median is better
    by that much. ``stats`` is ``level_summary``'s table. ``top_of_grid`` is true when that is the last step
    count: the median was still gaining at the top of the grid."""
    g = stats["median"].to_numpy(float) * (1.0 if higher_is_better else -1.0)
    spread = float(g.max() - g.min())
    best_later = np.append(np.maximum.accumulate(g[::-1])[::-1][1:], -np.inf)
    gain_after = np.maximum(best_later - g, 0.0)
    index = int(np.argmax(gain_after < fraction * spread)) if spread > 0 else 0
    row = stats.iloc[index]
    return {"steps": int(row["steps"]), "x": float(row["x"]), "unet_calls": float(row["unet_calls"]),
            "wall_s": float(row["wall_s"]), "median": float(row["median"]),
            "best_median": float(stats["median"].iloc[int(np.argmax(g))]), "range": spread,
            "gain_after": float(gain_after[index]), "fraction": fraction, "top_of_grid": index == len(g) - 1}


def _weighted_medians(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """(resamples, levels) medians over images of ``values`` (images, levels), image i drawn ``counts[:, i]``
    times: np.median of each resample's multiset of images, without building it."""
    n = values.shape[0]
    lower_pos, upper_pos = (n + 1) // 2, n // 2 + 1  # 1-based positions of the middle element(s)
    out = np.empty((counts.shape[0], values.shape[1]))
    for j in range(values.shape[1]):
        order = np.argsort(values[:, j], kind="stable")
        cum = np.cumsum(counts[:, order], axis=1)
        lower = values[order, j][np.argmax(cum >= lower_pos, axis=1)]
        upper = values[order, j][np.argmax(cum >= upper_pos, axis=1)]
        out[:, j] = (lower + upper) / 2
    return out


def _stop_index(g: np.ndarray, fraction: float) -> np.ndarray:
    """Per row of ``g`` (resamples, levels; larger = better): the first level beyond which no later level is
    better by ``fraction`` of the row's range (``stop_point``'s rule)."""
    spread = g.max(axis=1) - g.min(axis=1)
    best_later = np.concatenate([np.maximum.accumulate(g[:, ::-1], axis=1)[:, ::-1][:, 1:],
                                 np.full((len(g), 1), -np.inf)], axis=1)
    small = np.maximum(best_later - g, 0.0) < fraction * spread[:, None]
    return np.where(spread > 0, np.argmax(small, axis=1), 0)


def noisy_stop(points: pd.DataFrame, stats: pd.DataFrame, higher_is_better: bool, counts: np.ndarray,
               level: float = 0.95, fraction: float = STOP_FRACTION) -> dict:
    """``stop_point`` made robust to the noise the bootstrap measures, with its interval.

    Each resample of images (``counts``: ``bootstrap_counts``) gives the median over images of each image's
    mean at each step count, less that image's mean over all step counts (the change with steps, paired), and
    from it a stop (``stop_point``'s rule). The stop reported is the first step
    count beyond which more steps gain ≥ ``fraction`` of the range in fewer than ``level`` of the resamples:
    a further gain that the images cannot show apart from their noise is not worth paying for. ``ci`` holds
    the ``level`` percentile interval of the resamples' stops (in steps); ``top_of_grid`` is true when even
    the last step's gain is clear. Images with a missing step count are left out of the resamples; with fewer
    than ``MIN_IMAGES_FOR_INTERVALS`` complete images (or no resamples) the plain ``stop_point`` is returned."""
    plain = stop_point(stats, higher_is_better, fraction)
    means = points.groupby(["image_id", "x"])["value"].mean().unstack("x").dropna()
    if counts.size == 0 or len(means) < MIN_IMAGES_FOR_INTERVALS or len(means) != counts.shape[1]:
        return {**plain, "ci": [float("nan"), float("nan")], "rule": "median", "plain_steps": plain["steps"]}
    # Each image centred on its own mean: the medians then follow the change with steps, not which image
    # happens to be the median one at each step count (images differ more than steps change them).
    values = means.to_numpy(float) * (1.0 if higher_is_better else -1.0)
    g = _weighted_medians(values - values.mean(axis=1, keepdims=True), counts)
    stops = _stop_index(g, fraction)
    # P(the resample still gains ≥ fraction of its range after level j) = P(its stop lies beyond j)
    beyond = np.array([np.mean(stops > j) for j in range(g.shape[1])])
    index = int(np.argmax(beyond < level)) if np.any(beyond < level) else g.shape[1] - 1
    steps = stats["steps"].to_numpy(float)
    alpha = (1 - level) / 2
    ci = [float(np.quantile(steps[stops], alpha, method="inverted_cdf")),
          float(np.quantile(steps[stops], 1 - alpha, method="inverted_cdf"))]
    row = stats.iloc[index]
    return {**plain, "steps": int(row["steps"]), "x": float(row["x"]), "unet_calls": float(row["unet_calls"]),
            "wall_s": float(row["wall_s"]), "median": float(row["median"]), "ci": ci, "level": level,
            "still_gaining_share": float(beyond[index]), "top_of_grid": index == len(steps) - 1,
            "rule": "bootstrap", "plain_steps": plain["steps"]}


EXACT_LEVELS = 8  # Page's test is enumerated exactly up to 8 step counts (8! orders per image), else sampled
PERMUTATIONS = 20_000  # Monte Carlo orders beyond that: p to about ±0.003 at p = 0.05 (binomial SD)


def images_needed(n_levels: int, alpha: float = EFFECT_ALPHA) -> int:
    """The fewest images with which Page's trend test over ``n_levels`` step counts can reach p < ``alpha``
    (two-sided): the smallest attainable p is 2/(k!)ⁿ, every image in the same strict order."""
    if n_levels < 2:
        return 0
    orders = math.factorial(n_levels)
    return max(1, math.ceil(math.log(2 / alpha) / math.log(orders) + 1e-12))


def page_trend(values: np.ndarray, rng: np.random.Generator | None = None) -> tuple[float, float, float]:
    """Page's L test for a trend over ordered levels in repeated measures (Page 1963), two-sided, exact.

    ``values`` is (images, levels), levels in increasing x, larger = better. Within each image the values are
    ranked (ties averaged); the statistic is Σ over images and levels of (level index − centre) × rank. Under
    "steps do not matter" every order of an image's values is equally likely, independently across images; the
    null distribution is the convolution of each image's distribution over its k! orders (exact up to
    ``EXACT_LEVELS`` levels, sampled beyond). Returns (statistic, p, trend): trend is the statistic over its
    largest possible value, in [−1, 1] (1: every image improves at every step count)."""
    from itertools import permutations

    from scipy import stats as scipy_stats

    n, k = values.shape
    centre = 2 * np.arange(k) - (k - 1)  # 2 × (index − centre): integers
    ranks = np.vstack([scipy_stats.rankdata(row) for row in values]) * 2  # integers (ties: halves × 2)
    observed = int(round(float((ranks @ centre).sum())))
    largest = float(np.sum(centre * 2 * (np.arange(k) + 1))) * n
    trend = observed / largest if largest else 0.0
    if k <= EXACT_LEVELS:
        orders = np.array(list(permutations(range(k))))
        lo, hi = 0, 0
        dist = np.ones(1)  # probabilities of the running sum, offset lo
        for row in ranks:
            sums = np.rint(row[orders] @ centre).astype(np.int64)
            rlo = int(sums.min())
            counts = np.bincount(sums - rlo) / len(sums)
            dist = np.convolve(dist, counts)
            lo, hi = lo + rlo, hi + int(sums.max())
        support = np.arange(lo, lo + dist.size)
        p = float(dist[np.abs(support) >= abs(observed)].sum())
    else:
        rng = rng or np.random.default_rng(0)
        extreme = 0
        for start in range(0, PERMUTATIONS, 1000):  # in chunks: (1000, images, levels) at a time
            keys = rng.random((min(1000, PERMUTATIONS - start), n, k))
            shuffled = np.take_along_axis(np.broadcast_to(ranks, keys.shape), keys.argsort(axis=2), axis=2)
            extreme += int(np.sum(np.abs(np.rint(shuffled @ centre).sum(axis=1)) >= abs(observed)))
        p = float((1 + extreme) / (PERMUTATIONS + 1))
    return observed / 4, min(p, 1.0), trend


def step_effect(points: pd.DataFrame, higher_is_better: bool, alpha: float = EFFECT_ALPHA) -> dict:
    """Do steps change the metric at all? Page's trend test over every step count, within images.

    Per image its mean at each x (over masks and seeds); images measured at every x take part (when none is,
    the test falls back to the bottom and top of the grid: an exact sign-flip test). The test uses every step
    count, so a few images that all improve conclude (four images at seven step counts: p ≈ 10⁻¹³), where a
    test of the top of the grid against its bottom cannot reach p < 0.05 under six images. ``note`` says when
    no result could reach ``alpha`` with these images and step counts (``images_needed``).

    Beside it, descriptive effect sizes of the top of the grid against its bottom (images measured at both;
    when fewer images reach the largest x, the largest x that as many images share with the smallest as any
    does): images better/worse/tied, the median gain (raw units, positive = better), the matched-pairs
    rank-biserial correlation (Kerby 2014) and Cohen's d_z (mean gain / its SD).
    """
    from scipy import stats as scipy_stats

    sign = 1.0 if higher_is_better else -1.0
    means = points.groupby(["image_id", "x"])["value"].mean().unstack("x")
    lo = means.columns[0]
    # The top: the largest x with as many images paired with the bottom as any x has, so an extended or
    # unfinished sweep (the top step count for a few images only) still tests on all its images.
    paired = means.notna().mul(means[lo].notna(), axis=0).sum()
    hi = paired.index[1:][paired.iloc[1:] == paired.iloc[1:].max()][-1] if len(paired) > 1 else lo
    per = means[[lo, hi]].dropna()
    gain = (per[hi] - per[lo]).to_numpy(float) * sign if len(per) else np.array([])
    n = int(gain.size)
    complete = means.dropna().to_numpy(float) * sign
    if len(complete) == 0 or complete.shape[1] < 2:
        complete = per.to_numpy(float) * sign
    if complete.size and complete.shape[1] >= 2:
        _, p, trend = page_trend(complete)
    else:
        p, trend = float("nan"), 0.0
    nonzero = gain[gain != 0]
    rank_biserial = 0.0
    if nonzero.size:
        ranks = scipy_stats.rankdata(np.abs(nonzero))
        rank_biserial = float((ranks[nonzero > 0].sum() - ranks[nonzero < 0].sum()) / ranks.sum())
    sd = float(np.std(gain, ddof=1)) if n >= 2 else float("nan")
    steps_of = points.groupby("x")["steps"].median()
    tested, levels = (int(complete.shape[0]), int(complete.shape[1])) if complete.size else (0, 0)
    need = images_needed(levels, alpha)
    return {
        "test": "page_trend", "alternative": "two-sided", "alpha": alpha, "p_value": p, "trend": trend,
        "test_images": tested, "test_levels": levels, "images_needed": need,
        "low_steps": int(steps_of[lo]), "high_steps": int(steps_of[hi]), "n_images": n,
        "better": int((gain > 0).sum()), "worse": int((gain < 0).sum()), "ties": int((gain == 0).sum()),
        "median_gain": float(np.median(gain)) if n else float("nan"),
        "rank_biserial": rank_biserial, "cohens_dz": float(np.mean(gain) / sd) if n >= 2 and sd > 0 else float("nan"),
        "note": "" if tested >= need and levels >= 2 else (
            f"with {tested} image(s) at {levels} step count(s) no result can reach p < {alpha:g} "
            f"(needs ≥ {need} images)"),
    }


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


def fit_curve(points: pd.DataFrame, key: dict, higher_is_better: bool, resamples: int = 200,
              rng: np.random.Generator | None = None, level: float = 0.95,
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


# ---------------------------------------------------------------------------------------------------------
# A whole scores table
# ---------------------------------------------------------------------------------------------------------


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


def fit_scores(scores: pd.DataFrame, x: str = "steps", resamples: int = 200, seed: int = 0,
               level: float = 0.95, model: str = "image_offsets") -> list[CurveFit]:
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
            intervals = ", ".join(f"{e['metric']} {_steps_interval(e['stop'])}" for e in moving)
            text = (f"pay for {steps} steps: beyond it no metric gains measurably (set by {', '.join(deciding)}; "
                    f"stops with {round(100 * moving[0]['stop'].get('level', 0.95))} % intervals: {intervals})"
                    f"{flat_text}")
        out.append({"group": dict(key), "steps": steps, "top_of_grid": bool(gaining), "text": text})
    return out


def _steps_interval(stop: dict) -> str:
    ci = stop.get("ci") or [float("nan")] * 2
    if ci[0] != ci[0]:
        return str(stop["steps"])
    return f"{stop['steps']} [{ci[0]:g}–{ci[1]:g}]"
