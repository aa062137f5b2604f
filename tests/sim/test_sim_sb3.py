"""DQN and PPO from Stable-Baselines3: they learn on a small table, and SB3's checkpoint round-trips."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_sim_sac import small_env

from aaas_profile.sim import sb3
from aaas_profile.sim.asps import SimError
from aaas_profile.sim.episodes import train_seed
from aaas_profile.sim.policies import PolicyContext, make_baseline
from aaas_profile.sim.runner import Progress, SimOptions, run_episode

EVAL = range(100, 104)


def trained(name: str, folder, episodes: int, **changes):
    env = small_env()
    options = SimOptions(policy=name, train_episodes=episodes, **changes)
    return env, sb3.prepare(PolicyContext(env, folder, options, Progress()), name)


def mean_reward(env, policy) -> float:
    """``policy``'s mean episode reward on the evaluation streams ``EVAL``."""
    return float(np.mean([run_episode(env, policy, s)["reward"] for s in EVAL]))


def test_the_budget_is_the_training_streams_task_count():
    env = small_env()
    counts = []
    for e in range(3):
        env.reset(seed=train_seed(5) + e)
        counts.append(len(env.tasks))
    assert sb3.budget_steps(env, 5, 3) == sum(counts) > 0


@pytest.mark.parametrize("name", ["dqn", "ppo"])
def test_a_checkpoint_round_trips(tmp_path, name):
    # validated once, at the last episode, where training stops: the evaluated parameters are the saved ones
    env, prepared = trained(name, tmp_path, 3, eval_every=3)
    assert prepared.env_steps == sb3.budget_steps(env, 0, 3) and prepared.selected["episode"] == 3
    loaded = sb3._load(name, tmp_path / "model.zip", env, seed=1)
    live = prepared.policy.model.policy.state_dict()
    assert live.keys() == loaded.policy.state_dict().keys()
    for key, value in loaded.policy.state_dict().items():
        assert torch.equal(value, live[key]), key  # bit for bit: the parameters written are the ones read
    policy = sb3.Sb3Policy(name, loaded)
    for seed in EVAL:  # so the greedy episodes are the same, step by step
        assert run_episode(env, policy, seed) == run_episode(env, prepared.policy, seed)


def test_a_missing_checkpoint_is_one_line(tmp_path):
    with pytest.raises(SimError, match="DQN checkpoint .* does not exist"):
        sb3._load("dqn", tmp_path / "none.zip", small_env(), seed=0)


def test_a_crafted_checkpoint_never_runs_code(tmp_path):
    """A model.zip whose ``data`` entry carries a pickle that writes a file: SB3's own load runs it (shown first,
    so the test can fail), the tool's reads only the tensors and loads the parameters."""
    import base64
    import json
    import zipfile

    import cloudpickle
    from test_sim_sac import _RunsCode

    (tmp_path / "run").mkdir()
    env, prepared = trained("dqn", tmp_path / "run", 1)
    marker = tmp_path / "pwned"
    crafted = tmp_path / "crafted.zip"
    with zipfile.ZipFile(tmp_path / "run" / "model.zip") as source, zipfile.ZipFile(crafted, "w") as target:
        for item in source.namelist():
            payload = source.read(item)
            if item == "data":
                data = json.loads(payload)
                pickled = base64.b64encode(cloudpickle.dumps(_RunsCode(marker))).decode()
                data["learning_rate"] = {":type:": "<class 'object'>", ":serialized:": pickled}
                payload = json.dumps(data).encode()
            target.writestr(item, payload)
    loaded = sb3._load("dqn", crafted, env, seed=0)
    assert not marker.exists()
    for key, value in loaded.policy.state_dict().items():
        assert torch.equal(value, prepared.policy.model.policy.state_dict()[key]), key
    sb3._algorithm("dqn").load(crafted, device="cpu")  # what the tool must never do: it runs the payload
    assert marker.read_text() == "code ran"


def test_a_foreign_or_mismatched_checkpoint_is_one_line(tmp_path):
    (tmp_path / "not.zip").write_bytes(b"not a zip")
    with pytest.raises(SimError, match=r"cannot load DQN checkpoint .*not\.zip: File is not a zip file"):
        sb3._load("dqn", tmp_path / "not.zip", small_env(), seed=0)
    (tmp_path / "ppo").mkdir()
    trained("ppo", tmp_path / "ppo", 1)
    with pytest.raises(SimError, match=r"cannot load DQN checkpoint .*model\.zip for this set of ASPs"):
        sb3._load("dqn", tmp_path / "ppo" / "model.zip", small_env(), seed=0)


@pytest.mark.slow  # about 40 s of one CPU: SB3's PPO needs ~10,000 steps on this table
def test_ppo_learns_to_beat_crash_avoid(tmp_path):
    env, prepared = trained("ppo", tmp_path, 80)
    ppo, avoid = mean_reward(env, prepared.policy), mean_reward(env, make_baseline("crash-avoid"))
    assert ppo > avoid, (ppo, avoid)


@pytest.mark.slow  # about 95 s of one CPU: SB3's DQN needs ~18,000 steps on this table
def test_dqn_learns_to_beat_crash_avoid(tmp_path):
    env, prepared = trained("dqn", tmp_path, 150)
    dqn, avoid = mean_reward(env, prepared.policy), mean_reward(env, make_baseline("crash-avoid"))
    # a narrow margin (measured 20.1 against 19.6): at 80 episodes DQN was still below crash-avoid (17.1)
    assert dqn > avoid, (dqn, avoid)


def test_training_writes_nothing_outside_its_folder(tmp_path, monkeypatch):
    """SB3's default logger makes an empty SB3-<time> folder in the temp dir on every learn(); ours writes none."""
    import tempfile

    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    monkeypatch.delenv("SB3_LOGDIR", raising=False)
    trained("ppo", tmp_path, 2)
    assert list(temp.glob("SB3-*")) == []  # (torch may keep its own kernel cache there; not ours to judge)
