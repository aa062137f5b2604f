"""The exact least-squares fit of the two-breakpoint model (docs/design.md, "The four-parameter model"):
every (Ax, Bx) cell of the x grid solved in closed form, pooled or with one level per image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aaas_profile.core.formulas import piecewise
from aaas_profile.fit.common import FitError


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
