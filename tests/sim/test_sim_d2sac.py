"""D2SAC: the diffusion actor's reverse chain, a checkpoint that round-trips with ``weights_only=True``, and a
short CPU run that beats crash-avoid on a small table."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_sim_sac import small_env

from aaas_profile.sim import registry
from aaas_profile.sim.d2sac import D2SAC, D2sacConfig, DiffusionActor, vp_betas
from aaas_profile.sim.policies import make_baseline
from aaas_profile.sim.runner import run_episode
from aaas_profile.sim.sac import SacPolicy, train

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # torch on one thread (conftest)


def small_config(**changes) -> D2sacConfig:
    return D2sacConfig(**{"learning_starts": 150, "buffer_size": 5_000, "hidden": (64, 64), **changes})


def test_the_vp_schedule_and_the_last_reverse_step():
    betas = vp_betas(5)
    # β_1 = 1 − exp(−0.1/5 − 0.5·9.9·1/25), rising to β_5 = 1 − exp(−0.02 − 0.5·9.9·9/25)
    assert betas[0].item() == pytest.approx(1 - np.exp(-0.02 - 0.198), rel=1e-6)
    assert betas[-1].item() == pytest.approx(1 - np.exp(-0.02 - 1.782), rel=1e-6)
    assert torch.all(betas[1:] > betas[:-1])
    actor = DiffusionActor(6, 3, hidden=8, steps=5, t_dim=4, clip=1.0)
    # the last step returns x̂0 itself: the posterior mean at k = 0 puts weight 1 on x̂0 and 0 on x_1
    assert actor.coefs[0][2] == pytest.approx(1.0, abs=1e-6)  # c1_0
    assert actor.coefs[0][3] == pytest.approx(0.0, abs=1e-6)  # c2_0
    torch.manual_seed(0)
    logits = actor(torch.rand(700, 6))
    # the logits are the clipped x̂0 of the last step: within ±1
    assert logits.shape == (700, 3) and torch.all(logits.abs() <= 1.0)


def test_the_actor_is_the_reverse_chain_of_the_docstring():
    """The actor's forward (the denoiser's first layer split into a state, a step and a sample part) against the
    chain written as the module docstring states it, on the same weights and noise: the same map, summed in
    another order (measured largest difference 6.9e-7 over 10 weight seeds × 300 draws, 1 and 2 threads; 1e-5
    allowed)."""
    torch.manual_seed(1)
    actor = DiffusionActor(6, 3, hidden=16, steps=5, t_dim=4, clip=1.0)
    state = torch.rand(300, 6)
    betas = vp_betas(5).double()
    alphas = 1 - betas
    abar = torch.cumprod(alphas, 0)
    abar_prev = torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])

    def reference(x):
        emb = actor.time_mlp(actor.t_sin)
        a = torch.randn(len(x), 3)
        for k in reversed(range(5)):
            eps = actor.body(actor.state_in(x) + actor.noise_in(torch.cat([a, emb[k].expand(len(x), -1)], dim=1)))
            x0 = ((1 / abar[k]).sqrt() * a - (1 / abar[k] - 1).sqrt() * eps).clamp(-1, 1)
            a = betas[k] * abar_prev[k].sqrt() / (1 - abar[k]) * x0 + (1 - abar_prev[k]) * alphas[k].sqrt() / (
                1 - abar[k]) * a
            if k > 0:
                a = a + (betas[k] * (1 - abar_prev[k]) / (1 - abar[k])).sqrt() * torch.randn_like(a)
        return a.float()

    with torch.no_grad():
        torch.manual_seed(7)
        ours = actor(state)
        torch.manual_seed(7)
        theirs = reference(state)
    assert (ours - theirs).abs().max().item() < 1e-5


def test_x0_clip_none_runs_the_chain_unclipped():
    clipped = DiffusionActor(6, 3, hidden=8, steps=5, t_dim=4, clip=1.0)
    free = DiffusionActor(6, 3, hidden=8, steps=5, t_dim=4, clip=None)
    free.load_state_dict(clipped.state_dict())
    for actor in (clipped, free):  # ε = 0: x̂0 = √(1/ᾱ_k)·x_k, beyond ±1 for most draws at the first steps
        with torch.no_grad():
            actor.body[-2].weight.zero_()
            actor.body[-2].bias.zero_()
    state = torch.rand(500, 6)
    torch.manual_seed(4)
    a = clipped(state)
    torch.manual_seed(4)  # the same noise
    b = free(state)
    assert torch.all(a.abs() <= 1.0) and b.abs().max() > 1.5
    inside = b.abs() < 0.9  # ended inside the bound unclipped, yet different: the clip acted at earlier steps
    assert not torch.equal(a[inside], b[inside])


def test_checkpoint_round_trips_bit_for_bit(tmp_path):
    env = small_env(horizon_s=150_000)
    config = small_config(learning_starts=40, hidden=(16, 16), batch_size=32)
    agent = D2SAC(10, 4, config, seed=3, steps_ratio=env.steps_ratio)
    train(env, agent, episodes=2, seed=7, checkpoint=tmp_path / "ckpt.pt")
    assert agent.updates > 0
    torch.load(tmp_path / "ckpt.pt", weights_only=True)  # no pickled objects: loads with the safe loader
    loaded = D2SAC.load(tmp_path / "ckpt.pt")
    assert loaded.config == agent.config and (loaded.episodes, loaded.env_steps) == (2, agent.env_steps)
    for name in ("actor", "critic", "critic_target"):
        for a, b in zip(getattr(loaded, name).state_dict().values(), getattr(agent, name).state_dict().values(),
                        strict=True):
            assert torch.equal(a, b)  # bit for bit: the same tensors saved and read back
    obs, _ = env.reset(seed=0)
    actions = []
    for model in (agent, loaded):
        torch.manual_seed(11)  # the diffusion actor samples noise: the same noise gives the same action
        actions.append([model.act(obs) for _ in range(20)])
    assert actions[0] == actions[1]


def test_short_d2sac_run_beats_crash_avoid():
    env = small_env()
    agent = D2SAC(10, 4, small_config(), seed=0, steps_ratio=env.steps_ratio)
    train(env, agent, episodes=8, seed=0)
    seeds = range(100, 104)
    d2sac = np.mean([run_episode(env, SacPolicy(agent), s)["reward"] for s in seeds])
    avoid = np.mean([run_episode(env, make_baseline("crash-avoid"), s)["reward"] for s in seeds])
    assert d2sac > avoid, (d2sac, avoid)


def test_d2sac_is_registered_as_a_learning_policy():
    spec = registry.get("d2sac")
    assert spec.learns and spec.checkpoint == "checkpoint.pt" and spec.torch_threads and spec.title == "D2SAC"


def test_greedy_ties_at_the_clip_bound_go_to_the_better_critic_value():
    q_values = [0.0, 1.0, 3.0, 2.0]
    agent = D2SAC(10, 4, small_config(hidden=(8, 8), mask_crashes=False, fit_features=False), seed=0)
    with torch.no_grad():
        # the denoiser predicts ε = 0, so x̂0 = √(1/ᾱ_k)·x_k: often beyond ±1, so clipped, so tied at +1
        agent.actor.body[-2].weight.zero_()
        agent.actor.body[-2].bias.zero_()
        agent.critic.weights[-1].zero_()
        agent.critic.biases[-1].copy_(torch.tensor([q_values, q_values])[:, None, :])
    obs = np.zeros(10, np.float32)
    ties = 0
    for noise in range(30):
        torch.manual_seed(noise)
        logits = agent.logits(torch.zeros(1, 10), torch.zeros(1, 10))[0]
        top = [int(i) for i in torch.nonzero(logits >= logits.max() - 1e-6).flatten()]
        ties += len(top) > 1
        torch.manual_seed(noise)  # the same noise inside act: the same logits
        assert agent.act(obs, deterministic=True) == max(top, key=lambda i: q_values[i]), logits
    assert ties > 0  # the case under test happened
