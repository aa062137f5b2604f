"""Where a curve stops paying for steps: the per-step medians, the stop point and its bootstrap interval."""

from __future__ import annotations

import numpy as np
import pandas as pd

from aaas_profile.core.acceptance import INTERVAL_LEVEL, MIN_IMAGES_FOR_INTERVALS

STOP_FRACTION = 0.01  # "stop paying for steps" once the median gains less than this share of the curve's range


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
               level: float = INTERVAL_LEVEL, fraction: float = STOP_FRACTION) -> dict:
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
