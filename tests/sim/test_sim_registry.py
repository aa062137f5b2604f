"""The policy registry: a learning policy registered here runs through ``simulate`` exactly like SAC (training,
checkpoint, --resume, --checkpoint, option refusals, Ctrl-C), with no change to the runner or the CLI."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import invoke, one_line_error

from aaas_profile.atomic import write_atomic
from aaas_profile.sim import registry
from aaas_profile.sim.asps import SimError
from aaas_profile.sim.episodes import run_episode, train_seed, validation_seeds
from aaas_profile.sim.policies import BASELINES, Policy, PolicyContext, PreparedPolicy

FAST = ["--episodes", "1", "--no-optimum", "--horizon", "50000"]  # ≈ 50 tasks an episode
SIM = Path(registry.__file__).parent
INTERRUPT_AFTER = {"episodes": None}  # the Ctrl-C test sets it


class Bandit(Policy):
    """A toy learner: the mean reward it has seen at each ASP; acts greedily among the ASPs where the task fits."""

    name = "toy"

    def __init__(self, n: int, state: dict | None = None):
        self.state = state or {"episodes": 0, "env_steps": 0, "wall_s": 0.0, "sums": [0.0] * n, "counts": [0] * n}

    def act(self, env, obs):
        sums, counts = np.asarray(self.state["sums"]), np.asarray(self.state["counts"])
        value = np.where(env.free_capacity() >= env.current_steps, sums / np.maximum(counts, 1), -np.inf)
        return int(np.argmax(value))


def prepare_toy(context: PolicyContext) -> PreparedPolicy:
    env, folder, options = context.env, context.folder, context.options
    if options.checkpoint is not None:
        return PreparedPolicy(Bandit(env.n_asps, json.loads(Path(options.checkpoint).read_text())))
    path = folder / "toy.json"
    bandit = Bandit(env.n_asps, json.loads(path.read_text()) if options.resume else None)
    state, rows, rng = bandit.state, [], np.random.default_rng(options.seed)
    while state["episodes"] < options.train_episodes:
        start = time.perf_counter()
        obs, _ = env.reset(seed=train_seed(options.seed) + state["episodes"])
        done, total = False, 0.0
        while not done:  # ε-greedy: explore one task in four
            action = int(rng.integers(env.n_asps)) if rng.random() < 0.25 else bandit.act(env, obs)
            obs, reward, done, _, _ = env.step(action)
            state["sums"][action] += reward
            state["counts"][action] += 1
            state["env_steps"] += 1
            total += reward
        state["episodes"] += 1
        state["wall_s"] += time.perf_counter() - start
        write_atomic(path, json.dumps(state))
        greedy = np.mean([run_episode(env, bandit, s)["reward"] for s in validation_seeds(options.seed)])
        rows.append({"episode": state["episodes"], "env_steps": state["env_steps"], "wall_s": state["wall_s"],
                     "train_reward": total, "eval_reward": greedy})
        if state["episodes"] == INTERRUPT_AFTER["episodes"]:  # as a Ctrl-C would, after the save
            raise KeyboardInterrupt
    return PreparedPolicy(bandit, pd.DataFrame(rows), state["wall_s"], state["env_steps"],
                    {"episode": state["episodes"], "validation_reward": rows[-1]["eval_reward"] if rows else None,
                     "validation_stream_seeds": validation_seeds(options.seed)}, ("toy: the last actor",))


@pytest.fixture
def toy():
    spec = registry.register(registry.PolicySpec("toy", prepare_toy, learns=True, checkpoint="toy.json",
                                                 label="TOY"))
    yield spec
    registry.REGISTRY.pop("toy")


def test_the_registry_names_the_papers_policies():
    assert registry.names() == (*BASELINES, "sac", "d2sac", "dqn", "ppo")
    assert registry.baseline_names() == BASELINES
    sac = registry.get("sac")
    assert sac.learns and sac.checkpoint == "checkpoint.pt" and sac.options == ("auto_alpha",) and sac.torch_threads
    assert not any(registry.get(name).learns for name in BASELINES)
    with pytest.raises(SimError, match="unknown policy 'best'; choose from random, "):
        registry.get("best")
    with pytest.raises(ValueError, match="registered already"):
        registry.register(registry.PolicySpec("random", lambda context: None))


def test_a_registered_learning_policy_trains_resumes_and_loads_through_simulate(toy, tmp_path):
    out = tmp_path / "run"
    result = invoke("simulate", "--policy", "toy", "--train-episodes", "2", "--out", out, *FAST)
    assert result.exit_code == 0, result.output
    folder = out / "sim" / "toy"
    training = pd.read_parquet(folder / "training.parquet")
    assert training["episode"].tolist() == [1, 2]
    state = json.loads((folder / "toy.json").read_text())
    assert state["episodes"] == 2 and sum(state["counts"]) == training["env_steps"].iloc[-1] > 0
    meta = json.loads((folder / "checkpoint.json").read_text())  # written by the runner, read by --resume
    assert meta["seed"] == 0 and meta["asps_source"] == "paper preset, seed 0"
    # the baselines ran beside it, and the learner is not one of them
    assert set(pd.read_parquet(folder / "episodes.parquet")["policy"]) == {"toy"}
    assert all((out / "sim" / name / "episodes.parquet").exists() for name in BASELINES)
    summary = json.loads((folder / "summary.json").read_text())
    assert list(summary["policies"]) == [*BASELINES, "toy"]
    assert [p["episode"] for p in summary["sac_learning"]["curve"]] == [1, 2]
    assert "toy: the last actor" in summary["notes"] and (folder / "figure5.png").stat().st_size > 1000
    assert summary["train_env_steps"] == state["env_steps"]

    result = invoke("simulate", "--policy", "toy", "--resume", "--train-episodes", "3", "--no-baselines",
                    "--out", out, *FAST)
    assert result.exit_code == 0, result.output
    assert pd.read_parquet(folder / "training.parquet")["episode"].tolist() == [3]  # continued, not restarted
    assert json.loads((folder / "toy.json").read_text())["episodes"] == 3

    result = invoke("simulate", "--policy", "toy", "--checkpoint", folder / "toy.json", "--no-baselines",
                    "--out", tmp_path / "eval", *FAST)
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "eval" / "sim" / "toy" / "training.parquet").exists()
    assert not (tmp_path / "eval" / "sim" / "toy" / "checkpoint.json").exists()


def test_the_options_a_registered_policy_takes_follow_from_its_entry(toy, tmp_path):
    one_line_error(invoke("simulate", "--policy", "toy", "--auto-alpha", "--out", tmp_path, *FAST),
             "--auto-alpha only applies to --policy sac, not toy; drop it or use --policy sac")
    one_line_error(invoke("simulate", "--policy", "random", "--resume", "--out", tmp_path, *FAST),
             "--resume only applies to --policy sac or --policy d2sac or --policy dqn or --policy ppo or --policy toy, "
             "not random")
    one_line_error(invoke("simulate", "--policy", "toy", "--resume", "--out", tmp_path, *FAST),
             "--resume: no TOY checkpoint at", "toy.json")
    one_line_error(invoke("simulate", "--policy", "toy", "--train-episodes", "0", "--out", tmp_path, *FAST),
             "would evaluate an untrained TOY agent")
    one_line_error(invoke("simulate", "--policy", "toy", "--resume", "--checkpoint", tmp_path / "x.json",
                    "--out", tmp_path, *FAST), "give one of them")


def test_ctrl_c_while_a_registered_policy_trains_names_its_checkpoint(toy, tmp_path, monkeypatch):
    monkeypatch.setitem(INTERRUPT_AFTER, "episodes", 2)
    result = invoke("simulate", "--policy", "toy", "--train-episodes", "5", "--no-baselines", "--out", tmp_path,
                    *FAST)
    one_line_error(result, f"interrupted; TOY's last checkpoint is in {tmp_path / 'sim' / 'toy'} (use --resume)",
             code=130)  # Ctrl-C: 128 + SIGINT, as a shell reports it
    assert json.loads((tmp_path / "sim" / "toy" / "toy.json").read_text())["episodes"] == 2


def test_no_policy_is_special_outside_the_registry():
    """The runner, the seeds and the command treat every policy alike: no comparison with a policy's name."""
    branch = re.compile(r"""(==|!=|\bin\b|\bnot in\b)\s*\(?\s*["'](sac|random|round-robin|crash-avoid|greedy-oracle)""")
    for path in (SIM / "runner.py", SIM / "seeds.py", SIM.parent / "cli" / "simulate.py"):
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            assert not branch.search(line), f"{path.name}:{number}: {line.strip()}"
