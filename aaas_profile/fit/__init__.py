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
(model, mask, sampler, jump setting, metric) curve of a scores table. One concern per module:

- ``solver``: the exact least-squares fit (``solve_profile``, ``fit_piecewise``);
- ``alternatives``: smooth saturating curves and AIC/BIC (``compare_models``);
- ``stops``: per-step medians and where a curve stops paying for steps (``stop_point``, ``noisy_stop``);
- ``effect``: whether steps matter at all (Page's trend test, ``step_effect``, ``images_needed``);
- ``curve``: one curve's estimate, bootstrap, statistics and flags (``fit_curve``, ``CurveFit``);
- ``runtime``: the runtime model and its warnings (``fit_runtime``);
- ``table``: a whole scores table, the [0, 1] scale and the recommendations (``fit_scores``);
- ``common``: the x axes and ``FitError``.

The curve formula, the curve key and the acceptance rules the simulator shares are the core's
(``aaas_profile.core``). This package re-exports the names other stages use, so ``fit.fit_scores`` reads as one
stage from outside. Reading a run folder's scores and writing ``fit.json`` and the plots is
``aaas_profile.fitrun``'s work; the fit.json format (version, reader, writer) is ``aaas_profile.fitfile``'s.
"""

from __future__ import annotations

from aaas_profile.core.acceptance import runtime_problem
from aaas_profile.core.curve_keys import SAMPLER_DEFAULTS
from aaas_profile.core.formulas import TASK_STEPS_RANGE as SIM_TASK_STEPS
from aaas_profile.core.formulas import piecewise
from aaas_profile.fit.alternatives import SmoothFit, compare_models, fit_exponential, fit_logistic, information_criteria
from aaas_profile.fit.common import X_CHOICES, X_UNITS, FitError
from aaas_profile.fit.curve import FIT_MODELS, CurveFit, curve_flags, fit_curve
from aaas_profile.fit.effect import EFFECT_ALPHA, EXACT_LEVELS, PERMUTATIONS, images_needed, page_trend, step_effect
from aaas_profile.fit.runtime import fit_runtime, runtime_label, runtime_warning
from aaas_profile.fit.solver import (
    Piecewise,
    fit_piecewise,
    offset_terms,
    pooled_form,
    solve_grouped,
    solve_offsets,
    solve_profile,
)
from aaas_profile.fit.stops import STOP_FRACTION, bootstrap_counts, level_summary, noisy_stop, stop_point
from aaas_profile.fit.table import curve_seed, fit_scores, quality_scales, recommendations, steps_interval, to_unit

__all__ = [
    "CurveFit", "EFFECT_ALPHA", "EXACT_LEVELS", "FIT_MODELS", "FitError", "PERMUTATIONS", "Piecewise",
    "SAMPLER_DEFAULTS", "SIM_TASK_STEPS", "STOP_FRACTION", "SmoothFit", "X_CHOICES", "X_UNITS", "bootstrap_counts",
    "compare_models", "curve_flags", "curve_seed", "fit_curve", "fit_exponential", "fit_logistic", "fit_piecewise",
    "fit_runtime", "fit_scores", "images_needed", "information_criteria", "level_summary", "noisy_stop",
    "offset_terms", "page_trend", "piecewise", "pooled_form", "quality_scales", "recommendations", "runtime_label",
    "runtime_problem", "runtime_warning", "solve_grouped", "solve_offsets", "solve_profile", "step_effect",
    "steps_interval", "stop_point", "to_unit",
]
