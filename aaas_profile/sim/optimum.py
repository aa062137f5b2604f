"""The hindsight optimum: the best crash-free assignment of one episode's whole task stream.

An integer program over task × ASP (Du et al.'s simulator has no such bound; it tells what was possible):

    maximise   Σ_ij g_ij · x_ij                       g_ij = f_j(t_i) − Ay_j, the reward of task i at ASP j
    subject to Σ_j x_ij ≤ 1                            every task served at most once (or dropped)
               Σ_{i ∈ C} t_i · x_ij ≤ capacity_j       for every ASP j and every maximal set C of tasks
                                                       running at once, x_ij ∈ {0, 1}

Task i runs on [arrival_i, arrival_i + runtime_i); a task ending exactly when another arrives has left, as in
the environment. The sets of tasks running at once form an interval graph, so capacity only needs checking at
its maximal cliques: at an arrival after which some running task ends before the next arrival. Solved with
scipy's ``milp`` (HiGHS) to a relative gap (default 0.1 %) under a time limit. The reported ``bound`` is
always an upper bound on the optimum: HiGHS' dual bound when the integer program finishes (within the gap
of the best assignment found), else the smaller of the LP relaxation and the dual bound reached, together
with the best integer solution found.

Any run of a policy that never crashes is such an assignment, and so is the set of tasks any policy finished,
so the optimum is at least every policy's finished-task gain on the same episode.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.optimize import Bounds, LinearConstraint, milp


@dataclass
class Optimum:
    """``bound`` ≥ the optimum; ``exact``: the integer program finished (``incumbent`` ≥ (1 − gap)·bound)."""

    bound: float
    exact: bool
    incumbent: float  # value of the best integer solution found (nan if none)
    seconds: float
    assignment: np.ndarray | None  # (n_tasks,) ASP index or −1 (dropped), for the incumbent


def running_cliques(arrival_s: np.ndarray, runtime_s: np.ndarray) -> list[np.ndarray]:
    """Maximal sets of tasks running at once (indices into the arrival-sorted tasks)."""
    end = arrival_s + runtime_s
    n = len(arrival_s)
    longest = float(runtime_s.max()) if n else 0.0
    cliques = []
    for k in range(n):
        lo = int(np.searchsorted(arrival_s, arrival_s[k] - longest, side="left"))
        members = np.arange(lo, k + 1)
        members = members[end[members] > arrival_s[k]]
        # maximal unless every member is still running when the next task arrives
        if k == n - 1 or end[members].min() <= arrival_s[k + 1]:
            cliques.append(members)
    return cliques


def hindsight_optimum(
    arrival_s, runtime_s, steps, gains, capacity, time_limit_s: float = 30.0, mip_rel_gap: float = 1e-3
) -> Optimum:
    """Solve the integer program above for one episode; ``gains`` is (n_tasks, n_asps), arrivals sorted."""
    import time

    arrival_s, runtime_s = np.asarray(arrival_s, float), np.asarray(runtime_s, float)
    steps, gains, capacity = np.asarray(steps, float), np.asarray(gains, float), np.asarray(capacity, float)
    n, m = gains.shape
    start = time.perf_counter()
    if n == 0:
        return Optimum(0.0, True, 0.0, 0.0, np.zeros(0, dtype=int))
    var = np.arange(n * m).reshape(n, m)  # x_ij is variable i*m + j
    rows, cols, vals, upper = [], [], [], []
    # Σ_j x_ij ≤ 1
    rows.append(np.repeat(np.arange(n), m))
    cols.append(var.ravel())
    vals.append(np.ones(n * m))
    upper.append(np.ones(n))
    row = n
    for members in running_cliques(arrival_s, runtime_s):
        for j in range(m):
            rows.append(np.full(len(members), row))
            cols.append(var[members, j])
            vals.append(steps[members])
            upper.append([capacity[j]])
            row += 1
    matrix = sparse.csr_array(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(row, n * m)
    )
    constraint = LinearConstraint(matrix, -np.inf, np.concatenate(upper).astype(float))
    # Tasks with no positive gain anywhere never help: fix them to 0 (keeps the problem small and exact).
    ub = (gains > 0).astype(float).ravel()
    c = -gains.ravel()
    result = milp(
        c,
        constraints=constraint,
        integrality=np.ones(n * m),
        bounds=Bounds(0, ub),
        options={"time_limit": float(time_limit_s), "disp": False, "mip_rel_gap": mip_rel_gap},
    )
    incumbent, assignment = np.nan, None
    if result.x is not None:
        x = np.round(result.x).reshape(n, m)
        incumbent = float((gains * x).sum())
        assignment = np.where(x.any(axis=1), x.argmax(axis=1), -1)
    dual = getattr(result, "mip_dual_bound", None)
    dual = -float(dual) if dual is not None and np.isfinite(dual) else np.inf
    if result.status == 0:
        # within the gap: the dual bound is ≥ the optimum ≥ the incumbent (equal when the gap closed)
        bound = max(dual, incumbent) if np.isfinite(dual) else incumbent
        return Optimum(bound, True, incumbent, time.perf_counter() - start, assignment)
    relaxed = milp(
        c, constraints=constraint, integrality=np.zeros(n * m), bounds=Bounds(0, ub), options={"disp": False}
    )
    bound = min(-float(relaxed.fun), dual)
    return Optimum(bound, False, incumbent, time.perf_counter() - start, assignment)
