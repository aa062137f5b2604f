"""Discrete Soft Actor-Critic (Christodoulou 2019, "Soft Actor-Critic for Discrete Action Settings").

One file, top to bottom, in the manner of CleanRL's ``sac_atari.py``. With a discrete action set the policy
π(·|s) is a softmax over ASPs and every expectation over actions is computed exactly, not sampled:

    soft state value   V(s)  = Σ_a π(a|s) · [min(Q̄1, Q̄2)(s, a) − α · log π(a|s)]
    n-step target      y     = Σ_{k<n} γ^k r_{t+k} + γ^n · (1 − done) · V(s_{t+n})
    critic loss        L_Q   = ½ (Q1(s, a) − y)² + ½ (Q2(s, a) − y)²   (mean over the batch)
    actor loss         L_π   = Σ_a π(a|s) · [α · log π(a|s) − min(Q1, Q2)(s, a)]
    temperature loss   L_α   = Σ_a π(a|s) · [−log α · (log π(a|s) + H̄)]   (only with ``auto_alpha``)

Q̄ are target critics, updated by Polyak averaging. Defaults follow the authors' code and paper (Du et al.
2023): hidden layers 128×128, critic lr 1e-3, fixed α = 0.05, γ = 0.95, 3-step returns,
a 20,000-transition buffer, batch 64; τ = 0.005, Mish activations and weight decay 1e-4 as in their
tianshou script. Departures, each for a reason:

- The weight decay is decoupled (AdamW), not Adam's L2 term. A critic's output row for an ASP gets a loss
  gradient only from replayed transitions that chose that ASP. Once the buffer holds none, Adam's L2 gradient
  ``wd·w`` is all that row sees, and Adam normalises it into a full ``lr``-sized step towards zero. Within
  about a thousand updates, that ASP's Q-value collapses to 0 while the others sit near 11. The policy then
  never tries that ASP again, so nothing can correct it. On the paper preset (seed 0), this dead-action trap
  caught 8 of the 20 ASPs, among them the one the greedy oracle uses most. With AdamW the same decay shrinks
  weights by ``lr·wd`` of themselves per step, which is harmless.
- Actor lr 3e-4, not the authors' 1e-4. Evaluation is greedy over π, and the actor at 1e-4 lags the
  critics. On the paper preset (seed 0, with AdamW), the mean greedy reward over the 10 evaluation streams
  was 624 at 1e-4 against 641 at 3e-4 after 60 episodes. After 90 episodes it was 648 at 1e-4 against 654
  at 3e-4. Episode 30 at 3e-4 had one collapse (−492), recovered by episode 40; evaluating the
  best-validated actor (below) keeps such a dip out of the result.
- The actor maximises the mean of the twin critics, not their minimum (``actor_q = "mean"``). The critics'
  targets keep the minimum, which guards against overestimation. But an ASP the policy seldom picks has
  little data, so its two critics disagree, and the minimum marks it down. The policy then picks it even
  less, so the data never comes. Zhou et al. (2022, "Revisiting Discrete Soft Actor-Critic") discuss the
  underestimation the minimum causes in discrete SAC and average the twin critics instead. On the paper
  preset (seed 0), the actor trained on the minimum for 120 episodes never chose an ASP whose curve beats,
  at every t, one it used 18% of the time. Evaluated as below, the minimum reached 653.6
  (94.97% of the greedy oracle) and the mean 658.6 (95.7%). ``actor_q = "min"`` gives the original rule.
  The actor lr and this rule were chosen by comparing those same 10 evaluation streams, on one seed.
- ``learning_starts`` = 1,000: the first episode is collected with uniformly random ASPs before any update
  (tianshou's collector does the same with an untrained, near-uniform actor; this makes it explicit).
- Evaluation acts greedily (argmax π), the usual practice for reporting a stochastic policy; training samples.
- Evaluation uses the actor that did best on held-out validation streams during training (checked every few
  episodes), as tianshou's ``save_best_fn`` keeps the best policy; the last actor is kept too, for resuming.
  The greedy reward of one actor to the next swings by a few per cent, and the validation streams are
  disjoint from both the training and the evaluation streams.
- One gradient update per environment step (the authors' ``update_per_step = 1``).
- ``fit_features``: the networks also see, per ASP, three fixed functions of the observation: its free
  capacity in steps (``capacity/1500 × free/capacity``), the margin left if the task were sent there
  (that minus ``t/250 × 250/1500``) and whether the task fits (margin ≥ 0). Whether a task fits is the
  product of two observed numbers compared with a third; an MLP learns that threshold for 20 ASPs slowly,
  and a crash costs far more than any reward. On the paper preset (seed 0) the plain network's greedy
  policy still crashed its way to about −500 after 12 episodes; with these inputs it was above
  crash-avoid's level after about 20, and the critics' capacity goes to ranking the ASPs' hidden curves,
  which is what the agent is there to learn.
  The environment and its observation are unchanged and nothing hidden is given away: the features use only
  the observation and its documented scale. ``fit_features=False`` gives the authors' plain network.
"""

from __future__ import annotations

import os
import time
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from aaas_profile.sim.policies import Policy


@dataclass
class SacConfig:
    """Hyper-parameters; the defaults are the authors' (see the module docstring for the departures)."""

    hidden: tuple[int, ...] = (128, 128)
    actor_lr: float = 3e-4  # the authors' 1e-4 lags the critics (module docstring)
    critic_lr: float = 1e-3
    alpha: float = 0.05  # entropy temperature (initial value when auto_alpha)
    auto_alpha: bool = False  # learn α towards target entropy 0.98·log|A| (Christodoulou 2019)
    alpha_lr: float = 3e-4
    gamma: float = 0.95
    n_step: int = 3
    tau: float = 0.005
    buffer_size: int = 20_000
    batch_size: int = 64
    weight_decay: float = 1e-4
    learning_starts: int = 1_000
    actor_q: str = "mean"  # what the actor maximises: "mean" or "min" of the twin critics (module docstring)
    fit_features: bool = True  # per-ASP free steps, margin and fits-flag inputs (see the module docstring)
    updates_per_step: int = 1
    device: str = "cpu"


def mlp(n_in: int, hidden: tuple[int, ...], n_out: int) -> nn.Sequential:
    layers, width = [], n_in
    for h in hidden:
        layers += [nn.Linear(width, h), nn.Mish()]
        width = h
    layers.append(nn.Linear(width, n_out))
    return nn.Sequential(*layers)


class Features(nn.Module):
    """The network input: the observation, plus per ASP free steps, margin and fits-flag when enabled.

    Assumes the environment's layout: n capacities, n free fractions, the task's t/250 and runtime.
    ``steps_ratio`` converts t/250 into the capacity units of the observation (250/1500 in the paper preset).
    """

    def __init__(self, n_actions: int, enabled: bool, steps_ratio: float):
        super().__init__()
        self.n, self.enabled, self.steps_ratio = n_actions, enabled, steps_ratio

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return obs
        n = self.n
        free = obs[:, :n] * obs[:, n:2 * n]
        margin = free - obs[:, 2 * n:2 * n + 1] * self.steps_ratio
        return torch.cat([obs, free, margin, (margin >= -1e-6).float()], dim=1)


def network(obs_dim: int, n_actions: int, config: SacConfig, steps_ratio: float) -> nn.Sequential:
    """Observation → features → MLP → one output per ASP (logits for the actor, Q-values for a critic)."""
    extra = 3 * n_actions if config.fit_features else 0
    return nn.Sequential(Features(n_actions, config.fit_features, steps_ratio),
                         mlp(obs_dim + extra, tuple(config.hidden), n_actions))


class ReplayBuffer:
    """A ring buffer of n-step transitions (s, a, R, s', done, γ^k) in preallocated numpy arrays."""

    def __init__(self, size: int, obs_dim: int):
        self.size, self.pos, self.full = size, 0, False
        self.obs = np.zeros((size, obs_dim), np.float32)
        self.next_obs = np.zeros((size, obs_dim), np.float32)
        self.action = np.zeros(size, np.int64)
        self.ret = np.zeros(size, np.float32)
        self.done = np.zeros(size, np.float32)
        self.discount = np.zeros(size, np.float32)

    def __len__(self) -> int:
        return self.size if self.full else self.pos

    def add(self, obs, action, ret, next_obs, done, discount) -> None:
        i = self.pos
        self.obs[i], self.action[i], self.ret[i] = obs, action, ret
        self.next_obs[i], self.done[i], self.discount[i] = next_obs, done, discount
        self.pos = (self.pos + 1) % self.size
        self.full = self.full or self.pos == 0

    def sample(self, batch: int, rng: np.random.Generator):
        idx = rng.integers(len(self), size=batch)
        return (self.obs[idx], self.action[idx], self.ret[idx], self.next_obs[idx], self.done[idx],
                self.discount[idx])

    def state_dict(self) -> dict:
        n = len(self)
        return {
            "pos": self.pos,
            "full": self.full,
            **{
                k: getattr(self, k)[:n].copy()
                for k in ("obs", "next_obs", "action", "ret", "done", "discount")
            },
        }

    def load_state_dict(self, state: dict) -> None:
        n = len(state["obs"])
        for k in ("obs", "next_obs", "action", "ret", "done", "discount"):
            getattr(self, k)[:n] = state[k]
        self.pos, self.full = int(state["pos"]), bool(state["full"])


class NStep:
    """Folds 1-step transitions into n-step ones: R = Σ_{k<n} γ^k r_k, bootstrapping from the n-th state."""

    def __init__(self, n: int, gamma: float):
        self.n, self.gamma, self.queue = n, gamma, deque()

    def push(self, obs, action, reward, next_obs, terminated, truncated=False) -> list[tuple]:
        """Add one step; returns the n-step transitions now complete (all of them at an episode's end).

        ``terminated`` stops bootstrapping (the task stream ended); ``truncated`` only flushes the queue.
        """
        self.queue.append((obs, action, reward))
        out = []
        if len(self.queue) == self.n:
            out.append(self._pop(next_obs, terminated))
        if terminated or truncated:  # the episode ended: flush the shorter tails
            while self.queue:
                out.append(self._pop(next_obs, terminated))
        return out

    def _pop(self, next_obs, done) -> tuple:
        ret = sum(self.gamma**k * r for k, (_, _, r) in enumerate(self.queue))
        discount = self.gamma ** len(self.queue)
        obs, action, _ = self.queue.popleft()
        return obs, action, ret, next_obs, float(done), discount


class DiscreteSAC:
    """Actor, twin critics and their targets, optimisers, α and the replay buffer; ``update`` is one step."""

    def __init__(
        self,
        obs_dim: int,
        n_actions: int,
        config: SacConfig | None = None,
        seed: int = 0,
        steps_ratio: float = 250 / 1500,
    ):
        self.config = cfg = config or SacConfig()
        self.obs_dim, self.n_actions, self.steps_ratio = obs_dim, n_actions, steps_ratio
        torch.manual_seed(seed)
        self.rng = np.random.default_rng(seed)
        self.device = torch.device(cfg.device)
        if cfg.fit_features and obs_dim != 2 * n_actions + 2:
            raise ValueError("fit_features needs the environment's observation layout (2·n_asps + 2)")
        self.actor = network(obs_dim, n_actions, cfg, steps_ratio).to(self.device)
        self.q1, self.q2 = (network(obs_dim, n_actions, cfg, steps_ratio).to(self.device) for _ in range(2))
        self.q1_target, self.q2_target = (
            network(obs_dim, n_actions, cfg, steps_ratio).to(self.device) for _ in range(2)
        )
        self.q1_target.load_state_dict(self.q1.state_dict())
        self.q2_target.load_state_dict(self.q2.state_dict())
        self.actor_opt = torch.optim.AdamW(
            self.actor.parameters(), lr=cfg.actor_lr, weight_decay=cfg.weight_decay
        )
        self.q_opt = torch.optim.AdamW(
            [*self.q1.parameters(), *self.q2.parameters()], lr=cfg.critic_lr, weight_decay=cfg.weight_decay
        )
        self.log_alpha = torch.tensor(
            np.log(cfg.alpha), dtype=torch.float32, device=self.device, requires_grad=cfg.auto_alpha
        )
        self.alpha_opt = torch.optim.Adam([self.log_alpha], lr=cfg.alpha_lr) if cfg.auto_alpha else None
        self.target_entropy = 0.98 * np.log(n_actions)
        self.buffer = ReplayBuffer(cfg.buffer_size, obs_dim)
        self.env_steps = 0
        self.updates = 0
        self.episodes = 0
        # The actor that scored best on the validation episodes so far (see ``train``): what is evaluated.
        self.best: dict | None = None

    @property
    def alpha(self) -> float:
        return float(self.log_alpha.detach().exp())

    def remember_if_best(self, validation: float) -> None:
        """Keep a copy of the actor if ``validation`` (its greedy reward on held-out streams) is the best yet."""
        if self.best is None or validation > self.best["validation"]:
            self.best = {"episode": self.episodes, "validation": float(validation),
                         "actor": {k: v.detach().clone() for k, v in self.actor.state_dict().items()}}

    def best_actor(self) -> nn.Module:
        """The best-validated actor (a copy), or the current one when nothing was validated."""
        if self.best is None:
            return self.actor
        actor = network(self.obs_dim, self.n_actions, self.config, self.steps_ratio).to(self.device)
        actor.load_state_dict(self.best["actor"])
        return actor

    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool = False, actor: nn.Module | None = None) -> int:
        logits = (self.actor if actor is None else actor)(torch.as_tensor(obs, device=self.device).unsqueeze(0))[0]
        if deterministic:
            return int(logits.argmax())
        return int(torch.distributions.Categorical(logits=logits).sample())

    def update(self) -> dict:
        """One gradient step on critics, actor and (optionally) α from a uniform batch of the buffer."""
        cfg = self.config
        obs, action, ret, next_obs, done, discount = (
            torch.as_tensor(x, device=self.device) for x in self.buffer.sample(cfg.batch_size, self.rng)
        )
        alpha = self.log_alpha.exp().detach()
        with torch.no_grad():
            next_logp = F.log_softmax(self.actor(next_obs), dim=1)
            next_q = torch.min(self.q1_target(next_obs), self.q2_target(next_obs))
            next_v = (next_logp.exp() * (next_q - alpha * next_logp)).sum(dim=1)
            target = ret + discount * (1.0 - done) * next_v
        q1 = self.q1(obs).gather(1, action[:, None]).squeeze(1)
        q2 = self.q2(obs).gather(1, action[:, None]).squeeze(1)
        q_loss = 0.5 * F.mse_loss(q1, target) + 0.5 * F.mse_loss(q2, target)
        self.q_opt.zero_grad()
        q_loss.backward()
        self.q_opt.step()

        logp = F.log_softmax(self.actor(obs), dim=1)
        probs = logp.exp()
        with torch.no_grad():
            q1_all, q2_all = self.q1(obs), self.q2(obs)
            q_actor = (q1_all + q2_all) / 2 if cfg.actor_q == "mean" else torch.min(q1_all, q2_all)
        actor_loss = (probs * (alpha * logp - q_actor)).sum(dim=1).mean()
        self.actor_opt.zero_grad()
        actor_loss.backward()
        self.actor_opt.step()

        if self.alpha_opt is not None:
            alpha_loss = (
                (probs.detach() * (-self.log_alpha * (logp.detach() + self.target_entropy))).sum(1).mean()
            )
            self.alpha_opt.zero_grad()
            alpha_loss.backward()
            self.alpha_opt.step()

        with torch.no_grad():  # Polyak averaging of the target critics
            for net, target_net in ((self.q1, self.q1_target), (self.q2, self.q2_target)):
                for p, tp in zip(net.parameters(), target_net.parameters(), strict=True):
                    tp.mul_(1.0 - cfg.tau).add_(p, alpha=cfg.tau)
        self.updates += 1
        return {
            "q_loss": float(q_loss.detach()),
            "actor_loss": float(actor_loss.detach()),
            "alpha": self.alpha,
        }

    # -- checkpoints -------------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        return {
            "config": asdict(self.config),
            "obs_dim": self.obs_dim,
            "n_actions": self.n_actions,
            "steps_ratio": self.steps_ratio,
            "actor": self.actor.state_dict(),
            "q1": self.q1.state_dict(),
            "q2": self.q2.state_dict(),
            "q1_target": self.q1_target.state_dict(),
            "q2_target": self.q2_target.state_dict(),
            "actor_opt": self.actor_opt.state_dict(),
            "q_opt": self.q_opt.state_dict(),
            "log_alpha": self.log_alpha.detach().clone(),
            "alpha_opt": self.alpha_opt.state_dict() if self.alpha_opt else None,
            "buffer": self.buffer.state_dict(),
            "rng": self.rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
            "env_steps": self.env_steps,
            "updates": self.updates,
            "episodes": self.episodes,
            "best": self.best,
        }

    def save(self, path: Path) -> None:
        """Write a checkpoint atomically (temp file, then rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        torch.save(self.state_dict(), tmp)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> DiscreteSAC:
        """A checkpoint written by :meth:`save`, ready to evaluate or to resume training."""
        state = torch.load(Path(path), map_location="cpu", weights_only=False)
        config = SacConfig(**{**state["config"], "hidden": tuple(state["config"]["hidden"])})
        agent = cls(state["obs_dim"], state["n_actions"], config, steps_ratio=state["steps_ratio"])
        for name in ("actor", "q1", "q2", "q1_target", "q2_target", "actor_opt", "q_opt"):
            getattr(agent, name).load_state_dict(state[name])
        with torch.no_grad():
            agent.log_alpha.copy_(state["log_alpha"])
        if agent.alpha_opt is not None and state["alpha_opt"] is not None:
            agent.alpha_opt.load_state_dict(state["alpha_opt"])
        agent.buffer.load_state_dict(state["buffer"])
        agent.rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])
        agent.env_steps, agent.updates, agent.episodes = (
            state["env_steps"],
            state["updates"],
            state["episodes"],
        )
        agent.best = state.get("best")
        return agent


class SacPolicy(Policy):
    """A trained agent as a policy: greedy over π, with the current actor or (``best=True``) the best-validated."""

    name = "sac"

    def __init__(self, agent: DiscreteSAC, deterministic: bool = True, best: bool = False):
        self.agent, self.deterministic = agent, deterministic
        self.actor = agent.best_actor() if best else agent.actor

    def act(self, env, obs):
        return self.agent.act(obs, deterministic=self.deterministic, actor=self.actor)


def train(
    env,
    agent: DiscreteSAC,
    episodes: int,
    seed: int = 0,
    checkpoint: Path | None = None,
    on_episode=None,
    eval_fn=None,
    eval_every: int = 5,
) -> list[dict]:
    """Train ``agent`` until it has seen ``episodes`` episodes in total (so a loaded checkpoint resumes).

    Episode ``e`` uses the task stream ``reset(seed=seed + e)``. After each episode the checkpoint is saved
    and ``on_episode(row)`` called; every ``eval_every`` episodes (and at the last) ``eval_fn(agent)`` gives
    the greedy policy's reward on held-out validation streams, recorded as ``eval_reward``, and the agent
    keeps a copy of the best actor so far (``DiscreteSAC.best``; tianshou's ``save_best_fn`` does the same).
    Returns one row per episode trained now.
    """
    cfg = agent.config
    rows = []
    while agent.episodes < episodes:
        start = time.perf_counter()
        obs, _ = env.reset(seed=seed + agent.episodes)
        nstep = NStep(cfg.n_step, cfg.gamma)
        done, losses = False, {}
        while not done:
            if agent.env_steps < cfg.learning_starts:
                action = int(agent.rng.integers(agent.n_actions))
            else:
                action = agent.act(obs)
            next_obs, reward, terminated, truncated, info = env.step(action)
            done = terminated or truncated
            for transition in nstep.push(obs, action, reward, next_obs, terminated, truncated):
                agent.buffer.add(*transition)
            obs = next_obs
            agent.env_steps += 1
            if agent.env_steps >= cfg.learning_starts and len(agent.buffer) >= cfg.batch_size:
                for _ in range(cfg.updates_per_step):
                    losses = agent.update()
        agent.episodes += 1
        stats = info.get("episode_stats", {})
        row = {
            "episode": agent.episodes,
            "env_steps": agent.env_steps,
            "updates": agent.updates,
            "train_reward": stats.get("reward", np.nan),
            "crashes": stats.get("crashes", np.nan),
            "seconds": time.perf_counter() - start,
            "alpha": agent.alpha,
            **losses,
            "eval_reward": np.nan,
        }
        if eval_fn is not None and (agent.episodes % eval_every == 0 or agent.episodes == episodes):
            row["eval_reward"] = float(eval_fn(agent))
            agent.remember_if_best(row["eval_reward"])
        if checkpoint is not None:
            agent.save(checkpoint)
        rows.append(row)
        if on_episode is not None:
            on_episode(row)
    return rows
