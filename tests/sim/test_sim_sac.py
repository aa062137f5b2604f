"""Discrete SAC: n-step returns, checkpoints that resume exactly, and a short CPU run that beats random."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aaas_profile.sim import AspSelectionEnv, AspSet, SimConfig
from aaas_profile.sim.policies import make_baseline
from aaas_profile.sim.runner import run_episode
from aaas_profile.sim.sac import DiscreteSAC, NStep, SacConfig, SacPolicy, fits, train

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # torch on one thread (conftest)


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


def stopped_after_two(tmp_path):
    """(env, an agent trained straight for 3 episodes, one of the same seed stopped after 2 with a checkpoint,
    that checkpoint loaded)."""
    env = small_env(horizon_s=150_000)
    config = small_config(learning_starts=40, hidden=(16, 16))
    straight = DiscreteSAC(10, 4, config, seed=3, steps_ratio=env.steps_ratio)
    train(env, straight, episodes=3, seed=7)
    first = DiscreteSAC(10, 4, config, seed=3, steps_ratio=env.steps_ratio)
    train(env, first, episodes=2, seed=7, checkpoint=tmp_path / "ckpt.pt")
    return env, straight, first, DiscreteSAC.load(tmp_path / "ckpt.pt")


def test_checkpoint_resumes_exactly(tmp_path):
    env, straight, first, resumed = stopped_after_two(tmp_path)
    assert (resumed.episodes, resumed.env_steps, resumed.updates) == (2, first.env_steps, first.updates)
    obs, _ = env.reset(seed=0)
    assert resumed.act(obs, deterministic=True) == first.act(obs, deterministic=True)
    train(env, resumed, episodes=3, seed=7)
    assert resumed.episodes == 3 and resumed.env_steps == straight.env_steps
    # with the torch and numpy generator states saved, resuming gives the same weights as never stopping
    assert resumed.updates == straight.updates > 0
    for a, b in zip(resumed.actor.parameters(), straight.actor.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-5)


def test_loading_only_to_look_leaves_the_callers_random_stream(tmp_path):
    """``load(restore_rng=False)`` (checking a checkpoint before a resume) leaves torch's global generator as the
    caller had it; building the agent inside ``load`` used to reset it to seed 0. ``load()`` (resuming) sets it to
    the saved stream."""
    agent = DiscreteSAC(10, 4, small_config(hidden=(8,)), seed=3, steps_ratio=0.5)
    torch.rand(5)  # the saved stream is somewhere past seed 3
    agent.save(tmp_path / "ckpt.pt")
    saved_next = torch.rand(3)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    DiscreteSAC.load(tmp_path / "ckpt.pt", restore_rng=False)
    assert torch.equal(torch.rand(3), expected)  # the same computation: bit for bit
    torch.manual_seed(123)
    DiscreteSAC.load(tmp_path / "ckpt.pt")
    assert torch.equal(torch.rand(3), saved_next)


def test_short_sac_run_beats_random():
    env = small_env()
    torch.manual_seed(0)
    agent = DiscreteSAC(10, 4, small_config(), seed=0, steps_ratio=env.steps_ratio)
    train(env, agent, episodes=10, seed=0)
    seeds = range(100, 104)
    sac = np.mean([run_episode(env, SacPolicy(agent), s)["reward"] for s in seeds])
    rnd = np.mean([run_episode(env, make_baseline("random"), s)["reward"] for s in seeds])
    assert sac > rnd + 10, (sac, rnd)


# -- one update against its equations, on a tiny network with constant outputs ----------------------------

GAMMA = 0.9


def tiny_agent(**changes) -> DiscreteSAC:
    """3 inputs, 2 ASPs, one hidden layer of 4; every output layer's weights zero, so outputs are its biases.

    Actor logits (0, ln 3): π = (1/4, 3/4) everywhere. Target critics Q̄1 = (1, 3), Q̄2 = (2, 0.5); online
    critics Q1 = (0.5, 1.5), Q2 = (1, 0.5).
    """
    config = SacConfig(hidden=(4,), fit_features=False, mask_crashes=False, gamma=GAMMA, alpha=0.05, tau=0.1,
                       learning_starts=0, **changes)
    agent = DiscreteSAC(3, 2, config, seed=0, steps_ratio=0.5)
    with torch.no_grad():
        agent.actor[-1].weight.zero_()
        agent.actor[-1].bias.copy_(torch.tensor([0.0, np.log(3.0)]))
        for critic, values in ((agent.critic, [[0.5, 1.5], [1.0, 0.5]]), (agent.critic_target, [[1, 3], [2, 0.5]])):
            critic.weights[-1].zero_()
            critic.biases[-1].copy_(torch.tensor(values, dtype=torch.float32)[:, None, :])
    return agent


def hand_batch():
    """Two n-step transitions: (a) action 1, R = 1, a 3-step return that bootstraps (done 0, discount γ³);
    (b) action 0, R = 2, the episode's last (done 1, discount γ²: the flushed tail of a 2-step return)."""
    obs = np.array([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]], np.float32)
    next_obs = np.array([[0.7, 0.8, 0.9], [0.2, 0.2, 0.2]], np.float32)
    return (obs, np.array([1, 0]), np.array([1.0, 2.0], np.float32), next_obs, np.array([0.0, 1.0], np.float32),
            np.array([GAMMA**3, GAMMA**2], np.float32))


def test_one_update_follows_the_soft_bellman_equations():
    agent = tiny_agent()
    pi, alpha = np.array([0.25, 0.75]), 0.05
    # soft value of s' by hand: Σ_a π(a)·[min(Q̄1, Q̄2)(a) − α·log π(a)], with min(Q̄1, Q̄2) = (1, 0.5)
    v_next = 0.25 * (1 - alpha * np.log(0.25)) + 0.75 * (0.5 - alpha * np.log(0.75))
    target = np.array([1.0 + GAMMA**3 * v_next, 2.0])  # (1 − done) masks the bootstrap of the last transition
    # critic loss: ½·mean(Q1(s, a) − y)² + ½·mean(Q2(s, a) − y)², chosen Q1 = (1.5, 0.5), Q2 = (0.5, 1)
    q_loss = 0.5 * np.mean((np.array([1.5, 0.5]) - target) ** 2) + 0.5 * np.mean((np.array([0.5, 1.0]) - target) ** 2)
    # actor loss: Σ_a π(a)·[α·log π(a) − mean(Q1, Q2)(a)] with the critics before the step: mean = (0.75, 1)
    actor_loss = float(np.sum(pi * (alpha * np.log(pi) - np.array([0.75, 1.0]))))
    target_before = [p.detach().clone() for p in agent.critic_target.parameters()]
    out = agent.update(hand_batch())
    # float32 arithmetic against float64 by hand: a few ulps (measured differences ≤ 3e-7)
    assert out["target"].numpy() == pytest.approx(target, abs=1e-6)
    assert float(out["q_loss"]) == pytest.approx(q_loss, abs=1e-6)
    assert float(out["actor_loss"]) == pytest.approx(actor_loss, abs=1e-6)
    # Polyak: θ̄ ← (1 − τ)·θ̄ + τ·θ, with θ the critics after this step's gradient update (τ = 0.1)
    for old, new, online in zip(target_before, agent.critic_target.parameters(), agent.critic.parameters(),
                                strict=True):
        assert torch.allclose(new, 0.9 * old + 0.1 * online, atol=1e-7)
    moved = agent.critic.biases[-1].detach()
    assert not torch.allclose(moved, torch.tensor([[[0.5, 1.5]], [[1.0, 0.5]]]))  # the critics did learn


@pytest.mark.parametrize("logits, direction", [((0.0, 0.0), -1), ((0.0, 4.0), +1)])
def test_learned_alpha_moves_towards_the_target_entropy(logits, direction):
    """α falls while the policy's entropy is above the target 0.98·ln|A| (a uniform π: ln 2) and rises below it.

    L_α = −log α · (H̄ − H(π)), so ∂L/∂log α = H(π) − H̄; Adam's first step moves log α by lr against its sign.
    """
    agent = tiny_agent(auto_alpha=True, alpha_lr=0.01)
    with torch.no_grad():
        agent.actor[-1].bias.copy_(torch.tensor(logits))
    agent.update(hand_batch())
    # Adam's first step is lr·g/(|g| + ε), ε = 1e-8: lr within 1e-6
    assert np.log(agent.alpha) == pytest.approx(np.log(0.05) + direction * 0.01, abs=1e-6)


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
    weight, bias = agent.critic.weights[-1][0], agent.critic.biases[-1][0]  # critic 1's output layer

    def unchosen_rows():  # output columns 1–3 (weights are stored (in, out))
        return torch.cat([weight[:, 1:].flatten(), bias[:, 1:].flatten()]).detach().clone()

    unchosen = unchosen_rows()
    for _ in range(400):
        agent.update()
    after = unchosen_rows()
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
    with torch.no_grad():
        agent.critic.weights[-1].zero_()
        agent.critic.biases[-1].copy_(torch.tensor([[[1.0, 0.2]], [[0.0, 0.6]]]))
    rng = np.random.default_rng(0)
    for _ in range(200):
        obs, next_obs = rng.uniform(0, 1, (2, 6)).astype(np.float32)
        agent.buffer.add(obs, int(rng.integers(2)), 0.0, next_obs, 1.0, 0.95)
    for _ in range(150):
        agent.update()
    obs = torch.as_tensor(rng.uniform(0, 1, (20, 6)), dtype=torch.float32)
    probs = torch.softmax(agent.actor(agent.features(obs)), 1)
    assert (probs.argmax(1) == preferred).all() and probs[:, preferred].min() > 0.8


def test_the_crash_mask_keeps_the_policy_off_asps_the_task_does_not_fit():
    # 3 ASPs of capacity 1500, 600 and 300 (observed as capacity/1500); steps_ratio 250/1500.
    obs = torch.tensor([[1.0, 0.4, 0.2, 0.4, 0.25, 0.5, 1.0, 1.0],  # free 600, 150, 150; t = 250: fits ASP 0
                        [1.0, 0.4, 0.2, 0.4, 0.25, 0.5, 0.6, 1.0],  # the same, t = 150: fits all three
                        [1.0, 0.4, 0.2, 0.1, 0.1, 0.1, 1.0, 1.0]])  # free 150, 60, 30; t = 250: fits none
    assert fits(obs, 3, 250 / 1500).tolist() == [[True, False, False], [True] * 3, [False] * 3]
    agent = DiscreteSAC(8, 3, small_config(hidden=(8,)), seed=0, steps_ratio=250 / 1500)
    with torch.no_grad():
        agent.actor[-1].weight.zero_()
        agent.actor[-1].bias.copy_(torch.tensor([0.0, 5.0, 5.0]))  # the actor itself prefers ASPs 1 and 2
        probs = torch.softmax(agent.logits(obs, agent.features(obs)), dim=1)
    assert probs[0, 0] == pytest.approx(1.0) and probs[0, 1:].max() < 1e-10  # only ASP 0 takes 250 steps
    own = torch.softmax(torch.tensor([0.0, 5.0, 5.0]), 0)
    assert torch.allclose(probs[1], own) and torch.allclose(probs[2], own)  # all fit / none fits: no mask
    assert agent.act(obs[0].numpy(), deterministic=True) == 0
    unmasked = DiscreteSAC(8, 3, small_config(hidden=(8,), mask_crashes=False), seed=0, steps_ratio=250 / 1500)
    unmasked.actor.load_state_dict(agent.actor.state_dict())
    assert unmasked.act(obs[0].numpy(), deterministic=True) == 1


class _RunsCode:
    """An object whose unpickling runs code (writes a file): what a crafted checkpoint would carry."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        from pathlib import Path

        return (Path.write_text, (self.marker, "code ran"))


def test_a_crafted_checkpoint_never_runs_code(tmp_path):
    import torch

    from aaas_profile.errors import UserError
    from aaas_profile.sim.learning import load_agent

    path, marker = tmp_path / "agent.pt", tmp_path / "pwned"
    torch.save({"format": 2, "actor": _RunsCode(marker)}, path)
    with pytest.raises(UserError, match=r"cannot load SAC checkpoint .*agent\.pt"):
        load_agent(path, obs_dim=4, n_actions=2)
    assert not marker.exists()


def test_a_resumed_run_keeps_the_learning_curve_of_the_episodes_before_the_stop(tmp_path):
    """Training stopped after 2 episodes (a Ctrl-C: training.parquet never written) and resumed to 3: the
    checkpoint holds episodes 1-2's rows, so the learning curve has all three, the same as a run never stopped."""
    env, straight, first, resumed = stopped_after_two(tmp_path)
    assert [r["episode"] for r in resumed.history] == [1, 2]
    train(env, resumed, episodes=3, seed=7)
    assert [r["episode"] for r in resumed.history] == [1, 2, 3]
    for key in ("env_steps", "updates", "train_reward", "crashes"):  # same computation: bit for bit
        assert [r[key] for r in resumed.history] == [r[key] for r in straight.history]
