"""Whether steps matter at all: Page's trend test over the step counts, paired by image, and how many images
it needs to conclude anything.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from aaas_profile.core.acceptance import EFFECT_ALPHA, images_needed

EXACT_LEVELS = 8  # Page's test is enumerated exactly up to 8 step counts (8! orders per image), else sampled
PERMUTATIONS = 20_000  # Monte Carlo orders beyond that: p to about ±0.003 at p = 0.05 (binomial SD)


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
