"""Simulator speed: environment steps/s, SAC updates/s, and how long SAC takes to reach the greedy oracle.

Measured on one CPU thread (``torch.set_num_threads(1)``), in one run:

- environment steps per second under the random and the greedy-oracle policies;
- SAC gradient updates per second at the default batch size and at the authors' 64, and greedy actions/s;
- D2SAC's updates/s at its default batch and at the authors' 512, and its cost per update as a multiple of
  SAC's (both at their default batch sizes);
- one default SAC training run (``--preset``/``--seed``, validated after every episode on the three held-out
  validation streams that ``simulate`` uses): the environment steps and wall seconds (training and
  validation) until the validated greedy reward first reaches 97 % of the greedy oracle's on the same streams.

The "before" figures were measured on the agent the current SAC replaced: 144 updates/s, and 120k environment
steps / 34 min of training for 95.7 % of the greedy oracle (it never reached 97 %). Numbers depend on the
machine and its load; compare rates measured in the same run. Writes ``results/bench/sim.json``.

Run: ``python bench/bench_sim.py [--preset paper] [--seed 0] [--episodes 30]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from aaas_profile.sim import AspSelectionEnv, preset_asps
from aaas_profile.sim.d2sac import D2SAC, D2sacConfig
from aaas_profile.sim.policies import make_baseline
from aaas_profile.sim.runner import first_reaching, run_episode, train_seed, validation_seeds
from aaas_profile.sim.sac import DiscreteSAC, SacConfig, SacPolicy, train

BEFORE = {"sac_updates_per_s": 144, "env_steps_to_95.7pct": 120_336, "wall_s_to_95.7pct": 34 * 60}


def env_steps_per_s(env: AspSelectionEnv, policy_name: str, episodes: int = 5) -> float:
    policy = make_baseline(policy_name)
    steps, start = 0, time.perf_counter()
    for s in range(episodes):
        obs, _ = env.reset(seed=s)
        policy.reset(env, seed=s)
        done = False
        while not done:
            obs, _, done, _, _ = env.step(policy.act(env, obs))
            steps += 1
    return steps / (time.perf_counter() - start)


def sac_rates(env: AspSelectionEnv, batch_size: int, updates: int = 1_000,
              agent_cls: type[DiscreteSAC] = DiscreteSAC) -> tuple[float, float]:
    """(updates/s, greedy actions/s) of a default agent (SAC or D2SAC) at ``batch_size`` on a buffer of random
    transitions."""
    obs_dim = env.observation_space.shape[0]
    agent = agent_cls(obs_dim, env.n_asps, agent_cls.config_class(batch_size=batch_size), steps_ratio=env.steps_ratio)
    rng = np.random.default_rng(0)
    for _ in range(5_000):
        agent.buffer.add(rng.random(obs_dim), int(rng.integers(env.n_asps)), float(rng.random()),
                         rng.random(obs_dim), 0.0, 0.5**3)
    for _ in range(20):  # warm-up: allocator and optimiser state
        agent.update()
    start = time.perf_counter()
    for _ in range(updates):
        agent.update()
    update_rate = updates / (time.perf_counter() - start)
    obs = rng.random(obs_dim).astype(np.float32)
    start = time.perf_counter()
    for _ in range(2_000):
        agent.act(obs, deterministic=True)
    return update_rate, 2_000 / (time.perf_counter() - start)


def time_to_oracle(env: AspSelectionEnv, seed: int, episodes: int) -> dict:
    """Train a default agent, validating every episode; when it first reaches 97 % of the greedy oracle."""
    validation = validation_seeds(seed)
    oracle = float(np.mean([run_episode(env, make_baseline("greedy-oracle"), s)["reward"] for s in validation]))
    torch.manual_seed(seed)
    agent = DiscreteSAC(env.observation_space.shape[0], env.n_asps, SacConfig(), seed=seed,
                        steps_ratio=env.steps_ratio)

    def validate(a) -> float:
        return float(np.mean([run_episode(env, SacPolicy(a), s)["reward"] for s in validation]))

    rows = pd.DataFrame(train(env, agent, episodes, seed=train_seed(seed), eval_fn=validate, eval_every=1))
    reached = first_reaching(rows, 0.97 * oracle)
    return {
        "greedy_oracle_validation_reward": oracle,
        "best_validation_reward": float(rows["eval_reward"].max()),
        "best_fraction_of_oracle": float(rows["eval_reward"].max() / oracle),
        "env_steps_to_97pct": reached and reached["env_steps"],
        "wall_s_to_97pct": reached and reached["wall_s"],
        "train_env_steps": int(agent.env_steps),
        "train_updates": int(agent.updates),
        "train_wall_s": float(agent.wall_s),
        "train_env_steps_per_s": float(agent.env_steps / agent.wall_s),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="paper", choices=("paper", "agod"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--episodes", type=int, default=30, help="training episodes of the time-to-oracle run")
    args = parser.parse_args()
    torch.set_num_threads(1)
    env = AspSelectionEnv(preset_asps(args.preset, args.seed))
    results: dict = {"preset": args.preset, "seed": args.seed}
    results["env_steps_per_s_random"] = env_steps_per_s(env, "random")
    results["env_steps_per_s_greedy_oracle"] = env_steps_per_s(env, "greedy-oracle")
    batch = SacConfig().batch_size
    results[f"sac_updates_per_s_batch{batch}"], results["sac_greedy_actions_per_s"] = sac_rates(env, batch)
    results["sac_updates_per_s_batch64"], _ = sac_rates(env, 64)
    # D2SAC: its five-step diffusion actor, at its default batch and at the authors' 512 (sim/d2sac.py)
    d2sac_batch = D2sacConfig().batch_size
    results[f"d2sac_updates_per_s_batch{d2sac_batch}"], results["d2sac_greedy_actions_per_s"] = sac_rates(
        env, d2sac_batch, updates=200, agent_cls=D2SAC)
    results["d2sac_updates_per_s_batch512"], _ = sac_rates(env, 512, updates=50, agent_cls=D2SAC)
    # cost of one update relative to SAC's, both at the default batch sizes, measured in this run
    results["d2sac_update_cost_x_sac"] = (results[f"sac_updates_per_s_batch{batch}"]
                                          / results[f"d2sac_updates_per_s_batch{d2sac_batch}"])
    results.update(time_to_oracle(env, args.seed, args.episodes))
    results["before_issue_16"] = BEFORE
    results.update({"torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                    "python": platform.python_version(), "machine": platform.machine(),
                    "load_average_1min": _load()})
    for key, value in results.items():
        if isinstance(value, float):
            print(f"{key:36s} {value:,.3f}" if abs(value) < 10 else f"{key:36s} {value:,.1f}")
        else:
            print(f"{key:36s} {value}")
    out = Path(__file__).resolve().parents[1] / "results" / "bench" / "sim.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")


def _load() -> float | None:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except OSError:  # not Linux
        return None


if __name__ == "__main__":
    main()
