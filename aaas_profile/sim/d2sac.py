"""D2SAC: discrete soft actor-critic with a diffusion-model actor (Du et al., "Diffusion-based Reinforcement
Learning for Edge-enabled AI-Generated Content Services", IEEE TMC 2024).

The actor is a small denoising diffusion model over the action logits, conditioned on the state. Sampling
starts from x_K ~ N(0, I) over the |A| logits and runs K = 5 reverse steps of the variance-preserving (VP)
β schedule; each step an MLP (hidden 256) predicts the noise ε(x_k, k, s), from which

    x̂0       = √(1/ᾱ_k) · x_k − √(1/ᾱ_k − 1) · ε,   clipped to [−1, 1] (``x0_clip``)
    x_{k−1}  = c1_k · x̂0 + c2_k · x_k + σ_k · z        (the posterior q(x_{k−1} | x_k, x̂0); no noise at k = 0)

and π(·|s) = softmax(x_0). Everything else is the discrete SAC of :mod:`aaas_profile.sim.sac`: double-Q
critic, n-step soft targets, fixed α, Polyak targets, replay, training loop, best-validated actor, checkpoint and
resume; this module only replaces the actor (``new_actor``) and the defaults. The gradient of the actor loss
flows through all five denoising steps (the reparameterised sample).

Defaults are the follow-up's: actor lr 1e-4, critic lr 1e-3, α 0.05 fixed, τ 0.005, 3-step returns, weight
decay 1e-4, denoiser hidden 256 with a 16-wide step embedding, x̂0 clipped to the action bound 1. The departures
(the SAC machinery's features and mask, γ 0.5, the clip at every step, greedy ties broken by the critics, 0.5
updates per step on batches of 128), the measurements behind each, and where D2SAC stops (about 95–97 % of the
greedy oracle) are in docs/policies.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from aaas_profile.sim import learning
from aaas_profile.sim.policies import PolicyContext, PreparedPolicy
from aaas_profile.sim.sac import DiscreteSAC, SacConfig


@dataclass
class D2sacConfig(SacConfig):
    """The follow-up's hyper-parameters (docs/policies.md for the departures)."""

    hidden: tuple[int, ...] = (256, 256)  # critics' and denoiser's hidden layers
    actor_lr: float = 1e-4
    gamma: float = 0.5  # the authors' 0.95: 91 % of the oracle after 12 episodes, 0.5: 96 % (docs/policies.md)
    batch_size: int = 128  # the authors' 512 costs 3.1× the time per update on one thread (docs/policies.md)
    denoise_steps: int = 5  # K reverse diffusion steps per action
    t_dim: int = 16  # width of the denoising step's embedding
    x0_clip: float | None = 1.0  # x̂0 clipped to ±x0_clip (the action bound); None: unclipped (docstring)


def vp_betas(steps: int, beta_min: float = 0.1, beta_max: float = 10.0) -> torch.Tensor:
    """The variance-preserving schedule discretised to ``steps``: β_k = 1 − exp(−β_min/K − ½(β_max−β_min)(2k−1)/K²),
    k = 1..K (Song et al. 2021's VP SDE; Wang et al. 2023, Diffusion-QL, use it for K = 5)."""
    k = np.arange(1, steps + 1)
    alphas = np.exp(-beta_min / steps - 0.5 * (beta_max - beta_min) * (2 * k - 1) / steps**2)
    return torch.tensor(1.0 - alphas, dtype=torch.float32)


class DiffusionActor(nn.Module):
    """Features (batch, n_in) → logits (batch, n_actions): the x_0 of K reverse diffusion steps.

    The denoiser's first layer on [x_k, emb(k), s] is split into one product with s (computed once for all K
    steps) and one with [x_k, emb(k)]: the same affine map, K − 1 fewer products with the state.
    """

    def __init__(self, n_in: int, n_actions: int, hidden: int = 256, steps: int = 5, t_dim: int = 16,
                 clip: float | None = 1.0, activation: str = "silu"):
        super().__init__()
        self.n_actions, self.steps, self.clip = n_actions, steps, clip
        act = nn.Mish if activation == "mish" else nn.SiLU
        self.time_mlp = nn.Sequential(nn.Linear(t_dim, 2 * t_dim), act(), nn.Linear(2 * t_dim, t_dim))
        self.state_in = nn.Linear(n_in, hidden)
        self.noise_in = nn.Linear(n_actions + t_dim, hidden, bias=False)
        self.body = nn.Sequential(act(), nn.Linear(hidden, hidden), act(), nn.Linear(hidden, n_actions), nn.Tanh())
        half = t_dim // 2
        freq = torch.exp(-math.log(10_000) * torch.arange(half) / (half - 1))
        angle = torch.arange(steps, dtype=torch.float32)[:, None] * freq[None]
        self.register_buffer("t_sin", torch.cat([angle.sin(), angle.cos()], dim=1), persistent=False)
        betas = vp_betas(steps)
        alphas = 1.0 - betas
        abar = torch.cumprod(alphas, 0)
        abar_prev = torch.cat([torch.ones(1), abar[:-1]])
        # The schedule's per-step coefficients as Python floats: a float times a tensor is one kernel, a 0-d
        # tensor picked out of a buffer is two (the pick, then the product).
        self.coefs = [tuple(float(c[k]) for c in (
            (1.0 / abar).sqrt(),  # √(1/ᾱ_k)
            (1.0 / abar - 1.0).sqrt(),  # √(1/ᾱ_k − 1)
            betas * abar_prev.sqrt() / (1.0 - abar),  # c1_k
            (1.0 - abar_prev) * alphas.sqrt() / (1.0 - abar),  # c2_k
            (betas * (1.0 - abar_prev) / (1.0 - abar)).clamp(min=1e-20).sqrt(),  # σ_k
        )) for k in range(steps)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch = x.shape[0]
        state_h = self.state_in(x)
        # noise_in on [x_k, emb(k)] is x_k·W_aᵀ + emb(k)·W_tᵀ: the step's part for all K steps in one product
        w_a, w_t = self.noise_in.weight.split([self.n_actions, self.noise_in.in_features - self.n_actions], dim=1)
        step_h = self.time_mlp(self.t_sin) @ w_t.T  # (K, hidden)
        a = torch.randn(batch, self.n_actions, device=x.device)
        for k in reversed(range(self.steps)):
            sqrt_recip, sqrt_recipm1, coef_x0, coef_xt, sigma = self.coefs[k]
            eps = self.body(torch.addmm(state_h + step_h[k], a, w_a.T))
            x0 = sqrt_recip * a - sqrt_recipm1 * eps
            if self.clip is not None:
                x0 = x0.clamp(-self.clip, self.clip)
            a = coef_x0 * x0 + coef_xt * a
            if k > 0:
                a = a + sigma * torch.randn_like(a)
        return a


class D2SAC(DiscreteSAC):
    """Discrete SAC with :class:`DiffusionActor` as its actor (docs/policies.md)."""

    config_class = D2sacConfig
    name, label = "d2sac", "D2SAC"

    def new_actor(self) -> nn.Module:
        cfg = self.config
        return DiffusionActor(self.n_features, self.n_actions, hidden=cfg.hidden[0], steps=cfg.denoise_steps,
                              t_dim=cfg.t_dim, clip=cfg.x0_clip, activation=cfg.activation)

    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool = False, actor: nn.Module | None = None) -> int:
        """A sampled action, or (``deterministic``) the argmax of π with ties broken by the twin critics' mean.

        x̂0 is clipped to ±1, so several ASPs often share the top logit exactly (docs/policies.md); a plain
        argmax would then pick the lowest index among them."""
        if not deterministic:
            return super().act(obs, deterministic=False, actor=actor)
        obs_t = torch.as_tensor(obs, device=self.device).unsqueeze(0)
        x = self.features(obs_t)
        logits = self.logits(obs_t, x, actor)[0]
        tied = logits >= logits.max() - 1e-6
        if int(tied.sum()) == 1:
            return int(logits.argmax())
        q = self.critic(x).mean(dim=0)[0]
        return int(torch.where(tied, q, torch.full_like(q, -torch.inf)).argmax())

    def log_policies(self, obs, next_obs, x, next_x) -> tuple[torch.Tensor, torch.Tensor]:
        # Two passes, s' without autograd: one joint pass would backpropagate through all five denoising
        # steps for the s' half too, whose gradient is zero.
        logp = torch.log_softmax(self.logits(obs, x), dim=1)
        with torch.no_grad():
            next_logp = torch.log_softmax(self.logits(next_obs, next_x), dim=1)
        return logp, next_logp


def prepare(context: PolicyContext) -> PreparedPolicy:
    """The registry's factory: train, resume or load a D2SAC agent as ``learning.prepare`` does for SAC."""
    return learning.prepare(context, agent_cls=D2SAC)
