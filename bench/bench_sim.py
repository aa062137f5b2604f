"""Simulator speed: environment steps per second and SAC updates per second (CPU).

Prints the numbers and writes them to results/bench/sim.json. Run: ``python bench/bench_sim.py``.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from aaas_profile.sim import AspSelectionEnv
from aaas_profile.sim.policies import make_baseline
from aaas_profile.sim.sac import DiscreteSAC, SacConfig


def env_steps_per_s(policy_name: str, episodes: int = 5) -> float:
    env, policy = AspSelectionEnv(), make_baseline(policy_name)
    steps, start = 0, time.perf_counter()
    for s in range(episodes):
        obs, _ = env.reset(seed=s)
        policy.reset(env, seed=s)
        done = False
        while not done:
            obs, _, done, _, _ = env.step(policy.act(env, obs))
            steps += 1
    return steps / (time.perf_counter() - start)


def sac_updates_per_s(updates: int = 300) -> tuple[float, float]:
    env = AspSelectionEnv()
    agent = DiscreteSAC(env.observation_space.shape[0], env.n_asps, SacConfig(), steps_ratio=env.steps_ratio)
    rng = np.random.default_rng(0)
    obs_dim = env.observation_space.shape[0]
    for _ in range(2_000):
        agent.buffer.add(rng.random(obs_dim), int(rng.integers(20)), float(rng.random()), rng.random(obs_dim),
                         0.0, 0.95**3)
    agent.update()
    start = time.perf_counter()
    for _ in range(updates):
        agent.update()
    update_rate = updates / (time.perf_counter() - start)
    obs = rng.random(obs_dim).astype(np.float32)
    start = time.perf_counter()
    for _ in range(1_000):
        agent.act(obs)
    return update_rate, 1_000 / (time.perf_counter() - start)


def main() -> None:
    torch.set_num_threads(1)
    results = {
        "env_steps_per_s_random": env_steps_per_s("random"),
        "env_steps_per_s_greedy_oracle": env_steps_per_s("greedy-oracle"),
    }
    results["sac_updates_per_s"], results["sac_actions_per_s"] = sac_updates_per_s()
    results.update({"torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                    "python": platform.python_version(), "machine": platform.machine()})
    for key, value in results.items():
        print(f"{key:32s} {value:,.0f}" if isinstance(value, float) else f"{key:32s} {value}")
    out = Path("results/bench/sim.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
