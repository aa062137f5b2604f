"""Discrete SAC: n-step returns, checkpoints that resume exactly, and a short CPU run that beats random."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aaas_profile.sim import AspSelectionEnv, AspSet, SimConfig
from aaas_profile.sim.policies import make_baseline
from aaas_profile.sim.runner import run_episode
from aaas_profile.sim.sac import DiscreteSAC, NStep, SacConfig, SacPolicy, train


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small networks: one thread is fastest, especially on a busy machine
    yield
    torch.set_num_threads(threads)


def test_n_step_returns_by_hand():
    fold = NStep(n=3, gamma=0.5)
    assert fold.push("s0", 0, 1.0, "s1", False) == []
    assert fold.push("s1", 1, 2.0, "s2", False) == []
    (first,) = fold.push("s2", 2, 3.0, "s3", False)
    assert first == ("s0", 0, pytest.approx(1 + 0.5 * 2 + 0.25 * 3), "s3", 0.0, 0.125)
    tail = fold.push("s3", 3, 4.0, "end", True)  # the episode ends: flush everything, no bootstrap
    assert [t[0] for t in tail] == ["s1", "s2", "s3"]
    assert [t[2] for t in tail] == pytest.approx([2 + 0.5 * 3 + 0.25 * 4, 3 + 0.5 * 4, 4])
    assert [t[5] for t in tail] == pytest.approx([0.125, 0.25, 0.5])
    assert all(t[3] == "end" and t[4] == 1.0 for t in tail)
    # a truncated episode flushes too, but keeps bootstrapping from the last state
    fold.push("x0", 0, 1.0, "x1", False)
    (cut,) = fold.push("x1", 1, 1.0, "x2", False, truncated=True)[-1:]
    assert cut[3:] == ("x2", 0.0, 0.5) and not fold.queue


def small_env(horizon_s: float = 400_000) -> AspSelectionEnv:
    """Four small ASPs, ≈ 0.3 tasks per 1,000 s: random assignment crashes often, a careful policy rarely."""
    asps = AspSet(
        sid=("a", "b", "c", "d"),
        ax=[0, 50, 90, 0],
        ay=[0.0, 0.2, 0.4, 0.1],
        bx=[150, 240, 240, 150],
        by=[0.9, 0.5, 0.5, 0.6],
        capacity=[600, 400, 400, 800],
    )
    return AspSelectionEnv(asps, SimConfig(horizon_s=horizon_s, arrival_rate=0.0003))


def small_config(**changes) -> SacConfig:
    return SacConfig(**{"learning_starts": 150, "buffer_size": 5_000, "hidden": (64, 64), **changes})


def test_checkpoint_resumes_exactly(tmp_path):
    env = small_env(horizon_s=150_000)
    config = small_config(learning_starts=40, hidden=(16, 16))
    straight = DiscreteSAC(10, 4, config, seed=3, steps_ratio=env.steps_ratio)
    train(env, straight, episodes=3, seed=7)
    first = DiscreteSAC(10, 4, config, seed=3, steps_ratio=env.steps_ratio)
    train(env, first, episodes=2, seed=7, checkpoint=tmp_path / "ckpt.pt")
    resumed = DiscreteSAC.load(tmp_path / "ckpt.pt")
    assert (resumed.episodes, resumed.env_steps, resumed.updates) == (2, first.env_steps, first.updates)
    obs, _ = env.reset(seed=0)
    assert resumed.act(obs, deterministic=True) == first.act(obs, deterministic=True)
    train(env, resumed, episodes=3, seed=7)
    assert resumed.episodes == 3 and resumed.env_steps == straight.env_steps
    # with the torch and numpy generator states saved, resuming gives the same weights as never stopping
    assert resumed.updates == straight.updates > 0
    for a, b in zip(resumed.actor.parameters(), straight.actor.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-5)


def test_short_sac_run_beats_random():
    env = small_env()
    torch.manual_seed(0)
    agent = DiscreteSAC(10, 4, small_config(), seed=0, steps_ratio=env.steps_ratio)
    train(env, agent, episodes=10, seed=0)
    seeds = range(100, 104)
    sac = np.mean([run_episode(env, SacPolicy(agent), s)["reward"] for s in seeds])
    rnd = np.mean([run_episode(env, make_baseline("random"), s)["reward"] for s in seeds])
    assert sac > rnd + 10, (sac, rnd)


def test_learned_alpha_moves():
    env = small_env(horizon_s=150_000)
    agent = DiscreteSAC(
        10,
        4,
        small_config(auto_alpha=True, learning_starts=20, hidden=(16, 16)),
        seed=0,
        steps_ratio=env.steps_ratio,
    )
    train(env, agent, episodes=2, seed=0)
    assert agent.updates > 0 and agent.alpha != pytest.approx(0.05)


def test_an_asp_missing_from_the_buffer_keeps_its_q_value():
    """Weight decay must not wipe out the Q-row of an ASP the buffer no longer holds (the dead-action trap).

    Every transition chose ASP 0, so rows 1–3 of each critic's last layer see only the weight decay. With
    Adam's coupled L2 they fall to zero within a few hundred updates; decoupled (AdamW) they barely move.
    """
    agent = DiscreteSAC(10, 4, small_config(learning_starts=0, hidden=(16, 16)), seed=0, steps_ratio=0.5)
    rng = np.random.default_rng(0)
    for _ in range(500):
        obs, next_obs = rng.uniform(0, 1, (2, 10)).astype(np.float32)
        agent.buffer.add(obs, 0, 1.0, next_obs, 0.0, 0.95**3)
    last = agent.q1[1][-1]
    unchosen = torch.cat([last.weight[1:].flatten(), last.bias[1:]]).detach().clone()
    for _ in range(400):
        agent.update()
    after = torch.cat([last.weight[1:].flatten(), last.bias[1:]]).detach()
    assert torch.linalg.norm(after) > 0.95 * torch.linalg.norm(unchosen)


def test_the_best_validated_actor_is_kept_and_saved(tmp_path):
    env = small_env(horizon_s=150_000)
    agent = DiscreteSAC(10, 4, small_config(learning_starts=40, hidden=(16, 16)), seed=0,
                        steps_ratio=env.steps_ratio)
    scores = iter([1.0, 5.0, 3.0])
    snapshots = {}

    def validate(a):
        snapshots[a.episodes] = {k: v.clone() for k, v in a.actor.state_dict().items()}
        return next(scores)

    rows = train(env, agent, episodes=3, seed=0, eval_fn=validate, eval_every=1,
                 checkpoint=tmp_path / "ckpt.pt")
    assert [r["eval_reward"] for r in rows] == [1.0, 5.0, 3.0]
    assert (agent.best["episode"], agent.best["validation"]) == (2, 5.0)
    loaded = DiscreteSAC.load(tmp_path / "ckpt.pt")
    best = SacPolicy(loaded, best=True).actor
    current = SacPolicy(loaded).actor
    for name, value in best.state_dict().items():
        assert torch.equal(value, snapshots[2][name])
    assert any(not torch.equal(v, snapshots[2][k]) for k, v in current.state_dict().items())


@pytest.mark.parametrize("actor_q, preferred", [("mean", 0), ("min", 1)])
def test_the_actor_follows_the_mean_or_the_min_of_the_twin_critics(actor_q, preferred):
    # Frozen critics with constant outputs: Q1 = (1, 0.2), Q2 = (0, 0.6). Their mean prefers ASP 0 (0.5 > 0.4),
    # their minimum ASP 1 (0.2 > 0).
    config = small_config(learning_starts=0, hidden=(16, 16), actor_lr=1e-2, critic_lr=0.0, actor_q=actor_q)
    agent = DiscreteSAC(6, 2, config, seed=0, steps_ratio=0.5)
    for critic, values in ((agent.q1, (1.0, 0.2)), (agent.q2, (0.0, 0.6))):
        last = critic[1][-1]
        with torch.no_grad():
            last.weight.zero_()
            last.bias.copy_(torch.tensor(values))
    rng = np.random.default_rng(0)
    for _ in range(200):
        obs, next_obs = rng.uniform(0, 1, (2, 6)).astype(np.float32)
        agent.buffer.add(obs, int(rng.integers(2)), 0.0, next_obs, 1.0, 0.95)
    for _ in range(150):
        agent.update()
    probs = torch.softmax(agent.actor(torch.as_tensor(rng.uniform(0, 1, (20, 6)), dtype=torch.float32)), 1)
    assert (probs.argmax(1) == preferred).all() and probs[:, preferred].min() > 0.8
