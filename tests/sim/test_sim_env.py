"""The environment against hand-computed cases, the paper preset's numbers, and gymnasium's checker."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from aaas_profile.sim import (
    ENV_ID,
    AspSelectionEnv,
    AspSet,
    SimConfig,
    crash_penalty,
    paper_runtime_s,
    quality_gain,
)
from aaas_profile.sim.asps import PAPER_AX, PAPER_AY, PAPER_BX, PAPER_BY, PAPER_CAPACITIES, paper_asps


def one_asp(capacity: int, ax=10.0, ay=0.2, bx=110.0, by=0.7) -> AspSet:
    return AspSet(sid=("a",), ax=[ax], ay=[ay], bx=[bx], by=[by], capacity=[capacity])


def test_quality_gain_hand_cases():
    # ax=10, ay=0.2, bx=110, by=0.7: flat 0 below ax, linear to by − ay = 0.5 at bx, flat above
    assert quality_gain(10, 0.2, 110, 0.7, [0, 10, 60, 110, 250]) == pytest.approx([0, 0, 0.25, 0.5, 0.5])
    # a lower-is-better raw metric (by < ay) gives a negative gain
    assert quality_gain(0, 0.9, 100, 0.5, 50) == pytest.approx(-0.2)


def test_crash_penalty_hand_cases():
    assert crash_penalty([]) == pytest.approx(2.0)
    assert crash_penalty([0.25, 0.5]) == pytest.approx(2 + 2 * 0.75 + 2 * 0.5)
    assert crash_penalty([0.0], coef=3.0) == pytest.approx(6.0)


def test_paper_runtime():
    assert paper_runtime_s(100) == pytest.approx((10 + 250 - 14) * 60)
    assert paper_runtime_s(250) == pytest.approx((62.5 + 625 - 14) * 60)


def test_reward_crash_and_release_by_hand():
    env = AspSelectionEnv(one_asp(capacity=250))
    rt = paper_runtime_s(100)
    # three 100-step tasks at 0, 1000, 2000 s: the third does not fit (200 + 100 > 250) and crashes the ASP
    arrivals = [0.0, 1000.0, 2000.0, 3000.0, 3000.0 + rt]
    obs, _ = env.reset(seed=0, options={"arrival_s": arrivals, "steps": [100, 100, 100, 150, 100]})
    assert obs == pytest.approx([250 / 1500, 1.0, 100 / 250, rt / paper_runtime_s(250)])
    _, r1, *_ = env.step(0)
    assert r1 == pytest.approx(0.45)  # (0.7 − 0.2)·(100 − 10)/(110 − 10)
    obs, r2, *_ = env.step(0)
    assert obs[1] == pytest.approx(50 / 250)
    obs, r3, terminated, _, info = env.step(0)
    p1, p2 = 2000 / rt, 1000 / rt
    assert r3 == pytest.approx(-(2 + 2 * (1 - p1) + 2 * (1 - p2)))
    assert info == {"crashed": True, "lost": 2} and not terminated
    assert obs[1] == pytest.approx(1.0)  # everything was lost, the new task dropped
    _, r4, *_ = env.step(0)  # a 150-step task fits the emptied ASP
    assert r4 == pytest.approx(0.5)
    # the last task arrives while the 150-step task still runs (runtime(150) > runtime(100)): 150 + 100 fits
    obs, r5, terminated, _, info = env.step(0)
    assert r5 == pytest.approx(0.45) and not info["crashed"] and terminated
    assert obs[1] == pytest.approx(0.0)
    stats = info["episode_stats"]
    assert stats["crashes"] == 1 and stats["interrupted"] == 2 and stats["dropped"] == 1
    # the 150-step task and the last one still run at the end: not finished (the authors' count), but paid
    assert stats["finished"] == 0 and stats["running"] == 2 and stats["finished_gain"] == 0.0
    assert stats["reward"] == pytest.approx(r1 + r2 + r3 + r4 + r5)


def test_the_agents_read_the_observation_where_the_environment_writes_it():
    """One layout (``ObsLayout``) for the environment and SAC's features: on a two-ASP table with one ASP half
    full, the free steps and the fits-flag SAC computes are what the environment's state says."""
    import torch

    from aaas_profile.sim.env import ObsLayout
    from aaas_profile.sim.sac import fits, free_and_margin

    asps = paper_asps(0)
    env = AspSelectionEnv(asps)
    obs, _ = env.reset(seed=0, options={"arrival_s": [0.0, 1.0], "steps": [250, 250]})
    at = ObsLayout(env.n_asps)
    assert (at.size, env.observation_space.shape) == (len(obs), (len(obs),))
    assert obs[at.capacity] == pytest.approx(asps.capacity / 1500)
    assert obs[at.free].tolist() == [1.0] * env.n_asps and obs[at.task_steps] == pytest.approx([1.0])
    obs, *_ = env.step(0)  # 250 steps now run on ASP 0
    free, margin = free_and_margin(torch.as_tensor(obs)[None], env.n_asps, env.steps_ratio)
    assert free[0].numpy() * 1500 == pytest.approx(asps.capacity - np.eye(env.n_asps)[0] * 250, abs=1e-3)
    expected_fit = asps.capacity - np.eye(env.n_asps)[0] * 250 >= 250
    assert fits(torch.as_tensor(obs)[None], env.n_asps, env.steps_ratio)[0].tolist() == expected_fit.tolist()


def test_a_task_ending_exactly_at_an_arrival_has_left():
    env = AspSelectionEnv(one_asp(capacity=250))
    rt = paper_runtime_s(200)
    env.reset(options={"arrival_s": [0.0, rt, rt + 1], "steps": [200, 200, 200]})
    env.step(0)
    _, r, _, _, info = env.step(0)  # the first ended at exactly rt: capacity is free again
    assert not info["crashed"] and r > 0
    _, r, _, _, info = env.step(0)
    assert info["crashed"] and info["lost"] == 1
    assert r == pytest.approx(-(2 + 2 * (1 - 1 / rt)))


def test_paper_preset_grids_and_stream():
    asps = paper_asps(seed=3)
    assert len(asps) == 20
    for values, grid in ((asps.capacity, PAPER_CAPACITIES), (asps.ax, PAPER_AX), (asps.ay, PAPER_AY),
                         (asps.bx, PAPER_BX), (asps.by, PAPER_BY)):
        assert np.isin(np.round(values, 6), np.round(grid, 6)).all()
    env = AspSelectionEnv(asps)
    counts = []
    for s in range(5):
        obs, info = env.reset(seed=s)
        t = env.tasks
        counts.append(len(t))
        assert np.all(np.diff(t.arrival_s) >= 0) and t.arrival_s.max() <= 1e6
        assert set(np.unique(t.steps)) <= set(range(100, 251, 10))
        assert obs.shape == (42,) and obs[:20] == pytest.approx(asps.capacity / 1500)
        assert obs[20:40] == pytest.approx(np.ones(20))
    assert 850 < np.mean(counts) < 1150  # Poisson(1000)
    assert len(set(counts)) > 1  # the stream is redrawn
    # the ASPs stay fixed across resets; the same seed gives the same stream
    env.reset(seed=1)
    a = env.tasks.arrival_s.copy()
    env.reset(seed=2)
    env.reset(seed=1)
    assert np.array_equal(a, env.tasks.arrival_s)
    assert env.asps is asps


def test_capacities_so_large_that_nothing_ever_crashes():
    huge = AspSet(sid=("a", "b", "c"), ax=[0, 10, 20], ay=[0, 0.1, 0.2], bx=[150, 200, 240],
                  by=[0.5, 0.9, 0.8], capacity=[10**7] * 3)
    env = AspSelectionEnv(huge)
    rng = np.random.default_rng(0)
    for s in range(3):
        env.reset(seed=s)
        done = False
        while not done:
            _, r, done, _, info = env.step(int(rng.integers(3)))
            assert not info["crashed"] and r >= 0
        assert info["episode_stats"]["crashes"] == 0
        stats = info["episode_stats"]
        assert stats["finished"] + stats["running"] == stats["steps"] and stats["running"] > 0


def test_many_tasks_at_once_on_one_asp():
    """More tasks than the initial 64 slots run at once: the slots grow and the bookkeeping stays right."""
    env = AspSelectionEnv(one_asp(capacity=10**6), SimConfig(horizon_s=100_000, arrival_rate=0.01))
    obs, _ = env.reset(seed=0)
    done, peak = False, 0
    while not done:
        obs, r, done, _, info = env.step(0)
        peak = max(peak, int(env._active.sum()))
        assert env.used[0] == env._task_steps[env._active].sum()
    stats = info["episode_stats"]
    assert peak > 64 and stats["finished"] + stats["running"] == stats["steps"]


def test_env_checker_and_registration():
    env = gym.make(ENV_ID)
    check_env(env.unwrapped)
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    assert env.action_space.n == 20


def test_custom_config_and_bad_actions():
    env = AspSelectionEnv(one_asp(400), SimConfig(horizon_s=50_000, task_steps=(100, 200)))
    env.reset(seed=0)
    with pytest.raises(ValueError):
        env.step(1)
    assert set(np.unique(env.tasks.steps)) <= {100, 200}
