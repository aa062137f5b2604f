"""The ASP-selection environment of Du et al. (2023), paper preset as docs/design.md states it.

Tasks arrive as a Poisson process; each asks for ``t`` diffusion steps and runs for ``runtime(t)`` seconds.
For every arriving task the agent picks one ASP. If the task fits (free capacity ≥ t) the reward is the
quality gain ``f(t) − Ay`` of that ASP's hidden curve. If it does not, the ASP crashes: every task running
there is lost, the new task is dropped, and the reward is ``−(2 + Σ 2·(1 − progress))`` over the lost tasks
(``CRASH_PENALTY_COEF`` in the authors' ``env/config.py``). The ASP set is fixed when the environment is
built; the task stream is redrawn from ``self.np_random`` at every reset.

Observation (all in [0, 1]): per ASP ``capacity / 1500`` then per ASP ``free / capacity``, then the task's
``t / 250`` and ``runtime(t) / runtime(250)``. Action: the ASP's index.
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from aaas_profile.core.formulas import (
    CRASH_PENALTY_COEF,
    PAPER_RUNTIME_COEF,
    TASK_STEPS,
    crash_penalty,
    polynomial,
    quality_gain,
)
from aaas_profile.sim.asps import AspSet, SimError, paper_asps


@dataclass(frozen=True)
class ObsLayout:
    """Where each quantity sits in the observation of an environment with ``n`` ASPs, for the environment that
    writes it and the agents that read it: n capacities (÷ the largest preset capacity), n free fractions, the
    waiting task's t / t_max and its runtime / the longest runtime (both 0 once the stream has ended)."""

    n: int

    @property
    def capacity(self) -> slice:
        return slice(0, self.n)

    @property
    def free(self) -> slice:
        return slice(self.n, 2 * self.n)

    @property
    def task_steps(self) -> slice:  # one column, kept as a slice so that a batch keeps its second axis
        return slice(2 * self.n, 2 * self.n + 1)

    @property
    def task_runtime(self) -> slice:
        return slice(2 * self.n + 1, 2 * self.n + 2)

    @property
    def task(self) -> slice:
        return slice(2 * self.n, 2 * self.n + 2)

    @property
    def size(self) -> int:
        return 2 * self.n + 2


@dataclass(frozen=True)
class SimConfig:
    """The task stream and the penalty; defaults are the paper preset (docs/design.md, authors' ``config.py``)."""

    arrival_rate: float = 0.001  # tasks per second
    horizon_s: float = 1_000_000.0  # episode length in seconds (≈ 1,000 tasks)
    task_steps: tuple[int, ...] = TASK_STEPS  # t ∈ {100, 110, …, 250}
    crash_penalty_coef: float = CRASH_PENALTY_COEF
    capacity_scale: float = 1500.0  # observation divides capacity by this (the largest paper capacity)


@dataclass
class EpisodeTasks:
    """One episode's task stream, known in full only to the hindsight optimum and the oracle."""

    arrival_s: np.ndarray  # (n,) sorted arrival times
    steps: np.ndarray  # (n,) diffusion steps asked for
    runtime_s: np.ndarray  # (n,)
    gains: np.ndarray  # (n, n_asps) reward f(t) − Ay of each task at each ASP

    def __len__(self) -> int:
        return len(self.arrival_s)


class AspSelectionEnv(gym.Env):
    """Pick an ASP for each arriving diffusion task (Du et al. 2023). See the module docstring.

    ``asps`` defaults to the paper preset drawn with ``asp_seed``. ``info`` at the last step carries the
    episode's totals under ``"episode_stats"``: reward, crashes, interrupted (lost) tasks, dropped tasks,
    finished tasks (served, and done by the last task's arrival), the summed gain of the finished tasks, and
    ``running`` (served tasks still running when the episode ends). The authors' summaries count a task
    still running at the end as not finished; so does ``finished`` here (its reward was earned all the same).
    """

    metadata = {"render_modes": []}

    def __init__(self, asps: AspSet | None = None, config: SimConfig | None = None, asp_seed: int = 0):
        self.asps = paper_asps(asp_seed) if asps is None else asps
        self.config = SimConfig() if config is None else config
        if min(self.config.task_steps) <= 0:
            raise SimError("task steps must be positive")
        self.n_asps = n = len(self.asps)
        self.runtime_coef = self.asps.runtime_coef or PAPER_RUNTIME_COEF
        self.capacity = self.asps.capacity.astype(np.int64)
        if self.capacity.max() < max(self.config.task_steps):
            raise SimError(
                f"no ASP can ever run a {max(self.config.task_steps)}-step task (largest capacity "
                f"{self.capacity.max()})"
            )
        self.t_max = float(max(self.config.task_steps))
        self.runtime_max = float(polynomial(self.runtime_coef, self.t_max))
        if np.any(polynomial(self.runtime_coef, np.asarray(self.config.task_steps)) <= 0):
            raise SimError("the runtime model is not positive over the task steps")
        capacity_scale = max(self.config.capacity_scale, float(self.capacity.max()))
        self._capacity_obs = (self.capacity / capacity_scale).astype(np.float32)
        self.steps_ratio = self.t_max / capacity_scale  # t/t_max in the observation's capacity units
        # Slots per ASP for running tasks: as many as can run at once (capacity // smallest task), but at most
        # 64 to start with; _grow doubles them if an ASP with a huge capacity ever needs more.
        self._slots = min(int(self.capacity.max() // min(self.config.task_steps)) + 1, 64)
        self.layout = ObsLayout(n)
        self.observation_space = spaces.Box(0.0, 1.0, shape=(self.layout.size,), dtype=np.float32)
        self.action_space = spaces.Discrete(n)
        self.tasks: EpisodeTasks | None = None

    # -- the episode -------------------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Draw a new task stream or replay ``options={"arrival_s": [...], "steps": [...]}`` (sorted)."""
        super().reset(seed=seed)
        rng, cfg = self.np_random, self.config
        if options and "arrival_s" in options:
            arrival = np.asarray(options["arrival_s"], dtype=float)
            steps = np.asarray(options["steps"], dtype=np.int64)
            if (
                arrival.ndim != 1
                or arrival.shape != steps.shape
                or len(arrival) == 0
                or np.any(np.diff(arrival) < 0)
            ):
                raise ValueError(
                    "a replayed stream needs equal-length, non-empty arrival_s (sorted) and steps"
                )
            if steps.min() < min(cfg.task_steps) or steps.max() > max(cfg.task_steps):
                raise ValueError("replayed task steps must lie within the configured task steps")
            n_tasks = len(arrival)
        else:
            # A Poisson process on [0, horizon]: a Poisson count, then sorted uniform times. At least one
            # task, so every episode has a first observation (P(no task) = e^-1000 in the paper preset).
            n_tasks = max(int(rng.poisson(cfg.arrival_rate * cfg.horizon_s)), 1)
            arrival = np.sort(rng.uniform(0.0, cfg.horizon_s, n_tasks))
            steps = rng.choice(np.asarray(cfg.task_steps, dtype=np.int64), n_tasks)
        a = self.asps
        self.tasks = EpisodeTasks(
            arrival_s=arrival,
            steps=steps,
            runtime_s=polynomial(self.runtime_coef, steps),
            gains=quality_gain(a.ax[None, :], a.ay[None, :], a.bx[None, :], a.by[None, :], steps[:, None]),
        )
        shape = (self.n_asps, self._slots)
        self._active = np.zeros(shape, dtype=bool)
        self._start = np.zeros(shape)
        self._end = np.zeros(shape)
        self._task_steps = np.zeros(shape, dtype=np.int64)
        self._task_gain = np.zeros(shape)
        self.used = np.zeros(self.n_asps, dtype=np.int64)
        self._next_end = np.inf
        self.k = 0  # index of the task waiting for a decision
        self.stats = {
            "reward": 0.0,
            "crashes": 0,
            "interrupted": 0,
            "dropped": 0,
            "accepted": 0,
            "finished": 0,
            "finished_gain": 0.0,
            "running": 0,
            "steps": 0,
        }
        return self._observation(), {"n_tasks": n_tasks}

    def step(self, action):
        if self.tasks is None or self.k >= len(self.tasks):
            raise RuntimeError("call reset() before step(): the episode has ended")
        a = int(action)
        if not 0 <= a < self.n_asps:
            raise ValueError(f"action {action!r} is not an ASP index in [0, {self.n_asps})")
        k, tasks, stats = self.k, self.tasks, self.stats
        now, t = tasks.arrival_s[k], int(tasks.steps[k])
        crashed, lost = False, 0
        if self.used[a] + t <= self.capacity[a]:
            if self._active[a].all():
                self._grow()
            slot = int(np.argmin(self._active[a]))  # first free slot
            end = now + tasks.runtime_s[k]
            self._active[a, slot] = True
            self._start[a, slot], self._end[a, slot] = now, end
            self._task_steps[a, slot] = t
            reward = float(tasks.gains[k, a])
            self._task_gain[a, slot] = reward
            self.used[a] += t
            self._next_end = min(self._next_end, end)
            stats["accepted"] += 1
        else:
            running = self._active[a]
            lost = int(running.sum())
            progress = (now - self._start[a, running]) / (self._end[a, running] - self._start[a, running])
            reward = -crash_penalty(progress, self.config.crash_penalty_coef)
            self._active[a] = False
            self.used[a] = 0
            crashed = True
            stats["crashes"] += 1
            stats["interrupted"] += lost
            stats["dropped"] += 1
        stats["reward"] += reward
        stats["steps"] += 1
        self.k += 1
        terminated = self.k >= len(tasks)
        info = {"crashed": crashed, "lost": lost}
        if terminated:
            # The episode ends at the last arrival: what still runs is counted apart (the authors' rule).
            stats["running"] = int(self._active.sum())
            info["episode_stats"] = dict(stats)
        else:
            self._release(tasks.arrival_s[self.k])
        return self._observation(), reward, terminated, False, info

    def _grow(self) -> None:
        """Double the task slots of every ASP (rare: only capacities far above the paper's need it)."""
        self._slots *= 2
        for name in ("_active", "_start", "_end", "_task_steps", "_task_gain"):
            old = getattr(self, name)
            new = np.zeros((self.n_asps, self._slots), dtype=old.dtype)
            new[:, : old.shape[1]] = old
            setattr(self, name, new)

    def _release(self, now: float) -> None:
        """Free the slots of tasks that have ended by ``now`` (a task ending exactly at ``now`` is done)."""
        if now < self._next_end:
            return
        done = self._active & (self._end <= now)
        self.stats["finished"] += int(done.sum())
        self.stats["finished_gain"] += float(self._task_gain[done].sum())
        self.used -= (self._task_steps * done).sum(axis=1)
        self._active &= ~done
        self._next_end = float(self._end[self._active].min()) if self._active.any() else np.inf

    def _observation(self) -> np.ndarray:
        at = self.layout
        obs = np.empty(at.size, dtype=np.float32)
        obs[at.capacity] = self._capacity_obs
        obs[at.free] = (self.capacity - self.used) / self.capacity
        if self.k < len(self.tasks):
            t = float(self.tasks.steps[self.k])
            obs[at.task_steps] = t / self.t_max
            obs[at.task_runtime] = self.tasks.runtime_s[self.k] / self.runtime_max
        else:
            obs[at.task] = 0.0  # the stream has ended: no task waits
        return obs

    # -- what baselines may look at (the oracle's view of the hidden state) --------------------------------

    @property
    def current_steps(self) -> int:
        """Diffusion steps of the task waiting for a decision."""
        return int(self.tasks.steps[self.k])

    def free_capacity(self) -> np.ndarray:
        """Free diffusion steps per ASP now, shape (n_asps,)."""
        return self.capacity - self.used

    def current_gains(self) -> np.ndarray:
        """Reward f(t) − Ay of the waiting task at each ASP if it fits (hidden curves), shape (n_asps,)."""
        return self.tasks.gains[self.k]

    def crash_penalties(self) -> np.ndarray:
        """The penalty a crash at each ASP would cost now, shape (n_asps,)."""
        now = self.tasks.arrival_s[self.k]
        duration = np.where(self._active, self._end - self._start, 1.0)
        remaining = np.where(self._active, 1.0 - (now - self._start) / duration, 0.0)
        coef = self.config.crash_penalty_coef
        return coef + coef * remaining.sum(axis=1)
