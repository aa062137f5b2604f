"""Smooth saturating alternatives to the piecewise model (exponential, logistic), compared by AIC and BIC."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize

from aaas_profile.fit.solver import Piecewise, _group, fit_piecewise


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
