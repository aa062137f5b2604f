"""The paper's baseline policies and the oracle. A policy maps (env, observation) to an ASP index.

``random`` and ``round-robin`` ignore the state; ``crash-avoid`` picks the ASP with the most free capacity
(the paper's crash-avoiding baseline); ``greedy-oracle`` knows the hidden curves and picks the best reward
among the ASPs where the task fits. ``sac`` lives in :mod:`aaas_profile.sim.sac`; :mod:`aaas_profile.sim.registry`
names them all. ``PolicyContext`` and ``PreparedPolicy`` are what a registered policy's factory takes and returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

from aaas_profile.sim.asps import SimError

BASELINES = ("random", "round-robin", "crash-avoid", "greedy-oracle")


class Policy:
    """A decision rule for :class:`~aaas_profile.sim.env.AspSelectionEnv`."""

    name = "policy"

    def reset(self, env, seed: int | None = None) -> None:
        """Called at the start of every episode."""

    def act(self, env, obs: np.ndarray) -> int:
        raise NotImplementedError


class RandomPolicy(Policy):
    """Uniformly random ASP, from its own generator (seeded per episode for paired comparisons)."""

    name = "random"

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)

    def reset(self, env, seed=None):
        if seed is not None:
            self.rng = np.random.default_rng(seed)

    def act(self, env, obs):
        return int(self.rng.integers(env.n_asps))


class RoundRobinPolicy(Policy):
    """ASP 0, 1, …, n−1, 0, … regardless of the state."""

    name = "round-robin"

    def __init__(self):
        self.next = 0

    def reset(self, env, seed=None):
        self.next = 0

    def act(self, env, obs):
        choice = self.next
        self.next = (self.next + 1) % env.n_asps
        return choice


class CrashAvoidPolicy(Policy):
    """The ASP with the largest free capacity (lowest index on ties): it crashes only when nothing fits."""

    name = "crash-avoid"

    def act(self, env, obs):
        return int(np.argmax(env.free_capacity()))


class GreedyOraclePolicy(Policy):
    """Knows the hidden curves: the largest reward f(t) − Ay among the ASPs where the task fits.

    Ties go to the ASP with more free capacity. When the task fits nowhere, every choice crashes and the
    oracle picks the cheapest crash (the smallest penalty).
    """

    name = "greedy-oracle"

    def act(self, env, obs):
        fits = env.free_capacity() >= env.current_steps
        if not fits.any():
            return int(np.argmin(env.crash_penalties()))
        gains = np.where(fits, env.current_gains(), -np.inf)
        best = np.flatnonzero(gains >= gains.max() - 1e-12)
        return int(best[np.argmax(env.free_capacity()[best])])


@dataclass
class PolicyContext:
    """What a factory gets: the environment, its output folder ``<out>/sim/<name>/``, the run's ``SimOptions``
    (``runner.SimOptions``), the progress hooks (``runner.Progress``) and ``levels``, the mean evaluation
    reward of each policy evaluated so far (the baselines run first)."""

    env: Any
    folder: Path
    options: Any
    progress: Any
    levels: dict[str, float] = field(default_factory=dict)


@dataclass
class PreparedPolicy:
    """What a factory returns: the policy to evaluate and, for a learning policy, its training.

    ``training`` has one row per training episode with at least episode, env_steps, wall_s (training seconds so
    far), train_reward and eval_reward (the validated greedy reward, NaN between validation points);
    ``selected`` says which trained actor is evaluated (episode, validation_reward, validation_stream_seeds);
    ``notes`` are lines for the summary.
    """

    policy: Policy
    training: pd.DataFrame | None = None
    train_seconds: float = 0.0
    env_steps: int = 0
    selected: dict | None = None
    notes: tuple[str, ...] = ()


def make_baseline(name: str, seed: int = 0) -> Policy:
    """A baseline policy by name (see ``BASELINES``)."""
    if name == "random":
        return RandomPolicy(seed)
    if name == "round-robin":
        return RoundRobinPolicy()
    if name == "crash-avoid":
        return CrashAvoidPolicy()
    if name == "greedy-oracle":
        return GreedyOraclePolicy()
    raise SimError(f"unknown policy {name!r}; the baselines are {', '.join(BASELINES)}")
