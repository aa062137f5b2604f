"""What a fitted curve and a runtime model must meet before the simulator takes them: the flags that refuse a
curve (``refusal``), and the runtime polynomial's shape over the task steps (``runtime_problem``). ``fit``
sets the flags and warns with these rules; ``simulate --profile`` refuses with them; the report shows them.
"""

from __future__ import annotations

import math

import numpy as np

from aaas_profile.core.curve_keys import STEPS_WALK

# The intervals every stage reports by default (fit --bootstrap, --level; the report's captions): resamples of
# whole images, and the confidence level.
BOOTSTRAP_RESAMPLES = 200
INTERVAL_LEVEL = 0.95
# Whether steps matter at all is Page's trend test at this level (fit.effect); the sweep says beforehand how many
# images a grid needs for it (``images_needed``).
EFFECT_ALPHA = 0.05
MIN_LEVELS_FOR_INTERVALS = 4  # four parameters: with fewer distinct x values the bootstrap only re-draws a fit
MIN_IMAGES_FOR_INTERVALS = 3  # that passes through every level; with 1-2 images it has nothing to resample
# Flags of a curve that more steps do not improve: it has no step count at which to stop paying for steps.
NO_STOP_FLAGS = ("no_effect", "worse_with_steps")
# Flags that make a curve unfit for the simulator (simulate --profile refuses them without an override).
REFUSED_FLAGS = ("under_determined", *NO_STOP_FLAGS)


def has_no_stop(flags: list[dict] | None) -> bool:
    """Whether a curve with these flags (fit.json's ``{"code", "message"}`` dicts) has no place to stop: steps
    do not improve it (NO_STOP_FLAGS). The fit table and the report's lead both ask."""
    return any(f.get("code") in NO_STOP_FLAGS for f in flags or [])


def refusal(entry: dict) -> str | None:
    """Why a fit.json curve entry is unfit for the simulator (one line), or None.

    Version 2 entries carry ``flags`` (``REFUSED_FLAGS``: under-determined, no measurable effect of steps,
    worse with steps). Version 1 entries have none; their under-determination is judged from ``levels`` and
    ``n_images`` where present, with the same limits as ``curve_flags``.
    """
    flags = entry.get("flags")
    if isinstance(flags, list):
        for flag in flags:
            if isinstance(flag, dict) and flag.get("code") in REFUSED_FLAGS:
                return str(flag.get("message", flag["code"]))
        return None
    n_levels = len((entry.get("levels") or {}).get("x") or []) or None
    n_images = entry.get("n_images")
    if (n_levels is not None and n_levels < MIN_LEVELS_FOR_INTERVALS) or (
            isinstance(n_images, int) and n_images < MIN_IMAGES_FOR_INTERVALS):
        return (f"under-determined: {n_levels} distinct x value(s) and {n_images} image(s) (need "
                f"{MIN_LEVELS_FOR_INTERVALS} and {MIN_IMAGES_FOR_INTERVALS})")
    return None


# Below this R² the quadratic explains too little of the timings to extrapolate it to the simulator's steps:
# steady CPU timings of the bundled models fit with R² > 0.99; a sweep timed on a machine under load had 0.61.
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


def runtime_rank(sampler: str, respacing: str) -> int:
    """Which runtime model the simulator takes first: the authors' RePaint on a respaced grid (the paper's
    protocol, task units), then RePaint on the steps walk, then diffusers' RePaint, then the other samplers."""
    if sampler == "repaint":
        return 0 if respacing != STEPS_WALK else 1
    return 2 if sampler == "repaint-diffusers" else 3


def images_needed(n_levels: int, alpha: float = EFFECT_ALPHA) -> int:
    """The fewest images with which Page's trend test over ``n_levels`` step counts can reach p < ``alpha``
    (two-sided): the smallest attainable p is 2/(k!)ⁿ, every image in the same strict order."""
    if n_levels < 2:
        return 0
    orders = math.factorial(n_levels)
    return max(1, math.ceil(math.log(2 / alpha) / math.log(orders) + 1e-12))
