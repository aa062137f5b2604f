"""The pure formulas of Du et al. (2023) that the fit and the simulator share (docs/design.md, "The simulator").

The four-parameter curve, the task-step grid, the paper's task runtime, the reward of a served task and the
penalty of a crash. Pure functions of numbers and arrays: this module imports nothing else from the project, so
the environment, the ASP sources and ``fit`` (which fits the curve and checks a measured runtime model over the
same steps) can all import it without importing one another.
"""

from __future__ import annotations

import numpy as np

# The task sizes: every task asks for t ∈ {100, 110, …, 250} diffusion steps (authors' ``env/config.py``).
TASK_STEPS_MIN, TASK_STEPS_MAX, TASK_STEPS_STRIDE = 100, 250, 10
TASK_STEPS = tuple(range(TASK_STEPS_MIN, TASK_STEPS_MAX + 1, TASK_STEPS_STRIDE))
TASK_STEPS_RANGE = (TASK_STEPS_MIN, TASK_STEPS_MAX)  # the steps a runtime model must serve, inclusive

# The paper's runtime model: (0.001·t² + 2.5·t − 14)·60 seconds, as ascending polynomial coefficients, and as
# ``fit.json`` records it beside the measured models (``runtime.paper``).
PAPER_RUNTIME_COEF = (-14.0 * 60, 2.5 * 60, 0.001 * 60)
PAPER_RUNTIME = {"formula": "(0.001*t**2 + 2.5*t - 14)*60", "unit": "s", "coef": list(PAPER_RUNTIME_COEF)}

# A crash costs coef + Σ coef·(1 − progress) over the lost tasks (``CRASH_PENALTY_COEF`` in ``env/config.py``).
CRASH_PENALTY_COEF = 2.0


def polynomial(coef, x) -> np.ndarray:
    """``c0 + c1·x + c2·x² + …`` for ascending coefficients ``coef``; works on scalars and arrays."""
    x = np.asarray(x, dtype=float)
    out = np.zeros_like(x)
    for c in reversed(coef):
        out = out * x + c
    return out


def paper_runtime_s(t) -> np.ndarray:
    """Runtime in seconds of a task of ``t`` diffusion steps: (0.001·t² + 2.5·t − 14)·60 (Du et al. 2023)."""
    return polynomial(PAPER_RUNTIME_COEF, t)


def rise(x, ax, bx) -> np.ndarray:
    """How far along its rise the four-parameter curve is at ``x``: 0 up to Ax, 1 from Bx on, linear between
    (requires ax < bx); broadcasts."""
    ax, bx, x = (np.asarray(v, dtype=float) for v in (ax, bx, x))
    return np.clip((x - ax) / (bx - ax), 0.0, 1.0)


def piecewise(x, ax, ay, bx, by) -> np.ndarray:
    """The four-parameter quality curve of Du et al. (2023) at ``x`` (docs/design.md, "The four-parameter
    model"): Ay up to Ax, a straight rise to By at Bx, By beyond; broadcasts."""
    ay, by = np.asarray(ay, dtype=float), np.asarray(by, dtype=float)
    return ay + (by - ay) * rise(x, ax, bx)


def quality_gain(ax, ay, bx, by, t) -> np.ndarray:
    """The reward of a served task, ``f(t) − Ay`` for the four-parameter curve ``piecewise``, computed as the
    rise times (By − Ay) so that it is exactly 0 below Ax; broadcasts."""
    return rise(t, ax, bx) * (np.asarray(by, dtype=float) - np.asarray(ay, dtype=float))


def crash_penalty(progress, coef: float = CRASH_PENALTY_COEF) -> float:
    """The (positive) penalty of a crash, ``coef + Σ coef·(1 − progress)`` over the lost tasks' progress.

    ``progress`` in [0, 1] is the fraction of its runtime a lost task had done (authors' ``assign_task``).
    """
    progress = np.asarray(progress, dtype=float)
    return float(coef + coef * np.sum(1.0 - progress))
