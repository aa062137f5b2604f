"""Discrete Soft Actor-Critic (Christodoulou 2019, "Soft Actor-Critic for Discrete Action Settings").

Why one module of some 520 lines: it is the algorithm on one page, as CleanRL writes its single-file
algorithms (networks, replay, update, checkpoint, training loop), so that it reads top to bottom; its
registry adapter is ``sim/learning.py`` and its tuning history docs/policies.md.

One file, top to bottom, in the manner of CleanRL's ``sac_atari.py``. With a discrete action set the policy
π(·|s) is a softmax over ASPs and every expectation over actions is computed exactly, not sampled:

    soft state value   V(s)  = Σ_a π(a|s) · [min(Q̄1, Q̄2)(s, a) − α · log π(a|s)]
    n-step target      y     = Σ_{k<n} γ^k r_{t+k} + γ^n · (1 − done) · V(s_{t+n})
    critic loss        L_Q   = ½ (Q1(s, a) − y)² + ½ (Q2(s, a) − y)²   (mean over the batch)
    actor loss         L_π   = Σ_a π(a|s) · [α · log π(a|s) − mean(Q1, Q2)(s, a)]   (``actor_q``; below)
    temperature loss   L_α   = Σ_a π(a|s) · [−log α · (log π(a|s) + H̄)]   (only with ``auto_alpha``)

Q̄ are target critics, updated by Polyak averaging. Defaults follow the authors' code and paper (Du et al.
2023): hidden layers 128×128, critic lr 1e-3, fixed α = 0.05, 3-step returns, a 20,000-transition buffer,
τ = 0.005 and weight decay 1e-4; the departures (AdamW, actor lr 3e-4, the twin critics' mean for the actor,
1,000 random steps first, greedy evaluation of the best-validated actor, the fit features, the crash mask,
γ 0.5, 0.5 updates per step on batches of 128, SiLU) and the measurements behind each are in
docs/policies.md. Speed, with the same equations: both critics are one module with stacked weights
(``EnsembleMLP``), the actor runs once over s and s' together, the actor's loss reuses the critic step's values,
AdamW is fused, Polyak averaging is one ``_foreach_lerp_``, the replay buffer is one preallocated tensor, and
``train`` runs torch on one thread.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from aaas_profile import stored
from aaas_profile.atomic import atomic_path
from aaas_profile.sim.env import ObsLayout
from aaas_profile.sim.policies import Policy


@dataclass
class SacConfig:
    """Hyper-parameters; the defaults are the authors' (docs/policies.md for the departures)."""

    hidden: tuple[int, ...] = (128, 128)
    actor_lr: float = 3e-4  # the authors' 1e-4 lags the critics (docs/policies.md)
    critic_lr: float = 1e-3
    alpha: float = 0.05  # entropy temperature (initial value when auto_alpha)
    auto_alpha: bool = False  # learn α towards target entropy 0.98·log|A| (Christodoulou 2019)
    alpha_lr: float = 3e-4
    gamma: float = 0.5  # the authors' 0.95 makes Q ≈ 12 and hides the 0.05-sized gain gaps (docs/policies.md)
    n_step: int = 3
    tau: float = 0.005
    buffer_size: int = 20_000
    batch_size: int = 128  # with updates_per_step 0.5: chosen by measurement (docs/policies.md)
    weight_decay: float = 1e-4
    learning_starts: int = 1_000
    actor_q: str = "mean"  # what the actor maximises: "mean" or "min" of the twin critics (docs/policies.md)
    fit_features: bool = True  # per-ASP free steps, margin and fits-flag inputs (docs/policies.md)
    updates_per_step: float = 0.5  # gradient updates per environment step (a fraction: one every 1/x steps)
    mask_crashes: bool = True  # the actor's logits skip ASPs the task does not fit (docs/policies.md)
    activation: str = "silu"  # "silu" (3× cheaper than the authors' "mish" on a CPU; docs/policies.md)
    device: str = "cpu"


ACTIVATIONS = {"mish": F.mish, "silu": F.silu}
CRASH_MASK = 30.0  # logit penalty of an ASP the task does not fit: π(a) ≈ e^-30 there, and log π stays finite


def mlp(n_in: int, hidden: tuple[int, ...], n_out: int, activation: str = "mish") -> nn.Sequential:
    layers, width = [], n_in
    for h in hidden:
        layers += [nn.Linear(width, h), nn.Mish() if activation == "mish" else nn.SiLU()]
        width = h
    layers.append(nn.Linear(width, n_out))
    return nn.Sequential(*layers)


class Features(nn.Module):
    """The network input: the observation, plus per ASP free steps, margin and fits-flag when enabled.

    The environment's observation (``env.ObsLayout``) holds capacities, free fractions and the task's t/250;
    ``steps_ratio`` converts t/250 into the capacity units of the observation (250/1500 in the paper preset).
    """

    def __init__(self, n_actions: int, enabled: bool, steps_ratio: float):
        super().__init__()
        self.n, self.enabled, self.steps_ratio = n_actions, enabled, steps_ratio

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return obs
        free, margin = free_and_margin(obs, self.n, self.steps_ratio)
        return torch.cat([obs, free, margin, (margin >= -FITS_TOLERANCE).float()], dim=1)


FITS_TOLERANCE = 1e-6  # float32 rounding of capacity × free fraction: a task that exactly fills an ASP fits


def free_and_margin(obs: torch.Tensor, n_actions: int, steps_ratio: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per ASP, from the observation alone: its free capacity (capacity × free fraction) and what would be left
    if the waiting task went there, in the observation's capacity units (``steps_ratio`` = t_max / capacity
    scale). Each (batch, n_actions)."""
    at = ObsLayout(n_actions)
    free = obs[:, at.capacity] * obs[:, at.free]
    return free, free - obs[:, at.task_steps] * steps_ratio


def fits(obs: torch.Tensor, n_actions: int, steps_ratio: float) -> torch.Tensor:
    """Whether the waiting task fits each ASP (its margin ≥ 0). Shape (batch, n_actions), bool."""
    return free_and_margin(obs, n_actions, steps_ratio)[1] >= -FITS_TOLERANCE


class EnsembleMLP(nn.Module):
    """``k`` MLPs of one shape as one module: each layer's weights stacked on a leading axis of ``k``.

    ``forward(x)`` takes (batch, n_in), shared by all members, and returns (k, batch, n_out): one batched
    matrix product (``torch.baddbmm``) per layer for all ``k`` members, instead of ``k`` separate networks.
    Member ``i`` starts as ``nn.Linear``'s default initialisation would start it (uniform ±1/√fan_in).
    """

    def __init__(self, k: int, n_in: int, hidden: tuple[int, ...], n_out: int, activation: str = "mish"):
        super().__init__()
        sizes = [n_in, *hidden, n_out]
        self.k, self.activation = k, ACTIVATIONS[activation]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
            bound = 1.0 / math.sqrt(fan_in)
            self.weights.append(nn.Parameter(torch.empty(k, fan_in, fan_out).uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(torch.empty(k, 1, fan_out).uniform_(-bound, bound)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.unsqueeze(0).expand(self.k, *x.shape)
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = torch.baddbmm(b, h, w)
            if i < last:
                h = self.activation(h)
        return h


class ReplayBuffer:
    """A ring buffer of n-step transitions (s, a, R, s', done, γ^k), preallocated as one float32 tensor.

    One row per transition: obs, next_obs, action, R, done, discount. ``sample`` draws one index array and
    gathers all columns with a single indexing operation.
    """

    def __init__(self, size: int, obs_dim: int):
        self.size, self.obs_dim, self.pos, self.full = size, obs_dim, 0, False
        self.data = torch.zeros(size, 2 * obs_dim + 4)
        self._rows = self.data.numpy()  # a view: add() writes through numpy, without torch's per-call overhead

    def __len__(self) -> int:
        return self.size if self.full else self.pos

    def add(self, obs, action, ret, next_obs, done, discount) -> None:
        row, d = self._rows[self.pos], self.obs_dim
        row[:d], row[d:2 * d] = obs, next_obs
        row[2 * d:] = (action, ret, done, discount)
        self.pos = (self.pos + 1) % self.size
        self.full = self.full or self.pos == 0

    def sample(self, batch: int, rng: np.random.Generator):
        """(obs, action, R, next_obs, done, discount) of ``batch`` transitions drawn uniformly with replacement."""
        rows = self.data[torch.from_numpy(rng.integers(len(self), size=batch))]
        d = self.obs_dim
        return (rows[:, :d], rows[:, 2 * d].long(), rows[:, 2 * d + 1], rows[:, d:2 * d], rows[:, 2 * d + 2],
                rows[:, 2 * d + 3])

    def state_dict(self) -> dict:
        return {"pos": self.pos, "full": self.full, "data": self.data[: len(self)].clone()}

    def load_state_dict(self, state: dict) -> None:
        self.data[: len(state["data"])] = state["data"]
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
    """Actor, twin critics (one batched module) and their targets, optimisers, α and the replay buffer.

    ``update`` is one gradient step. ``critic(x)`` returns both critics' Q-values, shape (2, batch, n_actions).
    """

    def __init__(
        self,
        obs_dim: int,
        n_actions: int,
        config: SacConfig | None = None,
        seed: int = 0,
        steps_ratio: float = 250 / 1500,
    ):
        self.config = cfg = config or self.config_class()
        self.obs_dim, self.n_actions, self.steps_ratio = obs_dim, n_actions, steps_ratio
        torch.manual_seed(seed)
        self.rng = np.random.default_rng(seed)
        self.device = torch.device(cfg.device)
        if (cfg.fit_features or cfg.mask_crashes) and obs_dim != ObsLayout(n_actions).size:
            raise ValueError("fit_features and mask_crashes need the environment's observation layout "
                             "(2·n_asps + 2)")
        self.features = Features(n_actions, cfg.fit_features, steps_ratio)
        self.n_features = obs_dim + (3 * n_actions if cfg.fit_features else 0)
        if cfg.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}")
        self.actor = self.new_actor().to(self.device)
        self.critic, self.critic_target = (
            EnsembleMLP(2, self.n_features, tuple(cfg.hidden), n_actions, cfg.activation).to(self.device)
            for _ in range(2)
        )
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.critic_target.requires_grad_(False)
        # fused: one kernel for all of a network's parameters, 3× faster than the per-tensor loop on a CPU
        self.actor_opt = torch.optim.AdamW(
            self.actor.parameters(), lr=cfg.actor_lr, weight_decay=cfg.weight_decay, fused=True
        )
        self.q_opt = torch.optim.AdamW(
            self.critic.parameters(), lr=cfg.critic_lr, weight_decay=cfg.weight_decay, fused=True
        )
        self.log_alpha = torch.tensor(
            np.log(cfg.alpha), dtype=torch.float32, device=self.device, requires_grad=cfg.auto_alpha
        )
        self.alpha_opt = torch.optim.Adam([self.log_alpha], lr=cfg.alpha_lr) if cfg.auto_alpha else None
        self.target_entropy = 0.98 * np.log(n_actions)
        self.buffer = ReplayBuffer(cfg.buffer_size, obs_dim)
        self.env_steps = 0
        self.updates = 0
        self.update_credit = 0.0  # updates owed to the environment steps taken (updates_per_step)
        self.episodes = 0
        self.wall_s = 0.0  # training wall time so far, validation included (seconds)
        # One row per episode trained so far, over every resumed run: saved in the checkpoint, so the learning
        # curve of a run resumed after a Ctrl-C is whole (training.parquet is written only at the end).
        self.history: list[dict] = []
        # The actor that scored best on the validation episodes so far (see ``train``): what is evaluated.
        self.best: dict | None = None

    config_class = SacConfig  # what ``load`` rebuilds the saved config as (a subclass's own dataclass)
    name, label = "sac", "SAC"  # its registry name (the evaluation tables' ``policy``) and its name in messages

    def new_actor(self) -> nn.Module:
        """A freshly initialised actor: features (batch, n_features) → logits (batch, n_actions)."""
        return mlp(self.n_features, tuple(self.config.hidden), self.n_actions, self.config.activation)

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
        actor = self.new_actor().to(self.device)
        actor.load_state_dict(self.best["actor"])
        return actor

    def logits(self, obs: torch.Tensor, x: torch.Tensor, actor: nn.Module | None = None) -> torch.Tensor:
        """The policy's logits for observations ``obs`` (features ``x``), the crash mask applied if enabled.

        The mask subtracts ``CRASH_MASK`` from the ASPs the task does not fit. When it fits none, every logit
        drops by the same amount and π is the actor's own (every choice crashes; the actor picks which)."""
        logits = (self.actor if actor is None else actor)(x)
        if self.config.mask_crashes:
            logits = logits - CRASH_MASK * ~fits(obs, self.n_actions, self.steps_ratio)
        return logits

    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool = False, actor: nn.Module | None = None) -> int:
        obs = torch.as_tensor(obs, device=self.device).unsqueeze(0)
        logits = self.logits(obs, self.features(obs), actor)[0]
        if deterministic:
            return int(logits.argmax())
        return int(torch.distributions.Categorical(logits=logits).sample())

    def log_policies(self, obs, next_obs, x, next_x) -> tuple[torch.Tensor, torch.Tensor]:
        """log π(·|s) (carrying the actor's gradient) and log π(·|s') (detached)."""
        # One actor pass over s and s' together (cheaper than two for a small MLP); only the s half is used
        # with its gradient.
        logp_all = F.log_softmax(self.logits(torch.cat([obs, next_obs]), torch.cat([x, next_x])), dim=1)
        return logp_all[: len(x)], logp_all[len(x):].detach()

    def update(self, batch: tuple | None = None) -> dict:
        """One gradient step on critics, actor and (optionally) α, on ``batch`` or a uniform sample of the buffer.

        ``batch`` is (obs, action, R, next_obs, done, discount) as :meth:`ReplayBuffer.sample` returns it.
        Returns the losses as tensors, computed before the step (reading them as floats here would cost
        every update a synchronisation; callers convert).
        """
        cfg = self.config
        if batch is None:
            batch = self.buffer.sample(cfg.batch_size, self.rng)
        obs, action, ret, next_obs, done, discount = (torch.as_tensor(x).to(self.device) for x in batch)
        action = action.long()
        alpha = self.log_alpha.exp().detach()
        x, next_x = self.features(obs), self.features(next_obs)
        logp, next_logp = self.log_policies(obs, next_obs, x, next_x)
        with torch.no_grad():
            # soft state value V(s') = Σ_a π(a|s')·[min(Q̄1, Q̄2)(s', a) − α·log π(a|s')]
            next_q = self.critic_target(next_x).min(dim=0).values
            next_v = (next_logp.exp() * (next_q - alpha * next_logp)).sum(dim=1)
            target = ret + discount * (1.0 - done) * next_v  # discount = γ^k of the k-step return
        q_all = self.critic(x)  # (2, batch, n_actions)
        q = q_all.gather(2, action.view(1, -1, 1).expand(2, -1, 1)).squeeze(2)
        q_loss = 0.5 * ((q - target) ** 2).mean(dim=1).sum()
        self.q_opt.zero_grad()
        q_loss.backward()
        self.q_opt.step()

        probs = logp.exp()
        # The critics as they were before this step's update (detached): one critic pass fewer per update.
        q_all = q_all.detach()
        q_actor = q_all.mean(dim=0) if cfg.actor_q == "mean" else q_all.min(dim=0).values
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

        with torch.no_grad():  # Polyak averaging of the target critics: θ̄ ← (1 − τ)·θ̄ + τ·θ
            torch._foreach_lerp_(list(self.critic_target.parameters()), list(self.critic.parameters()), cfg.tau)
        self.updates += 1
        return {"q_loss": q_loss.detach(), "actor_loss": actor_loss.detach(), "target": target}

    # -- checkpoints -------------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        return {
            "format": 2,  # 2: the twin critics as one batched module and the buffer as one tensor
            "config": asdict(self.config),
            "obs_dim": self.obs_dim,
            "n_actions": self.n_actions,
            "steps_ratio": self.steps_ratio,
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "critic_target": self.critic_target.state_dict(),
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
            "update_credit": self.update_credit,
            "wall_s": self.wall_s,
            "best": self.best,
            "history": self.history,
        }

    def save(self, path: Path) -> None:
        """Write a checkpoint atomically (temp file, then rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as temp:
            torch.save(self.state_dict(), temp)

    @classmethod
    def load(cls, path: Path, restore_rng: bool = True) -> DiscreteSAC:
        """A checkpoint written by :meth:`save`, ready to evaluate or to resume training (``restore_rng``:
        torch's global random state set to the saved one, as resuming needs)."""
        # tensors and plain values only: unpickling arbitrary objects from a file handed to the tool runs code
        state = torch.load(Path(path), map_location="cpu", weights_only=True)
        if isinstance(state, dict) and state.get("format") != 2:
            raise ValueError("it was written by an older aaas-profile (separate critics); train it again")
        # plain values checked before anything is built from them (or torch's RNG state is set)
        stored.check(state, stored.SacState, Path(path), "train it again (simulate without --resume)")
        config = cls.config_class(**{**state["config"], "hidden": tuple(state["config"]["hidden"])})
        before = torch.get_rng_state()  # __init__ seeds torch for fresh networks, whose weights are replaced below
        agent = cls(state["obs_dim"], state["n_actions"], config, steps_ratio=state["steps_ratio"])
        for name in ("actor", "critic", "critic_target", "actor_opt", "q_opt"):
            getattr(agent, name).load_state_dict(state[name])
        with torch.no_grad():
            agent.log_alpha.copy_(state["log_alpha"])
        if agent.alpha_opt is not None and state["alpha_opt"] is not None:
            agent.alpha_opt.load_state_dict(state["alpha_opt"])
        agent.buffer.load_state_dict(state["buffer"])
        agent.rng.bit_generator.state = state["rng"]
        # resuming continues the saved random stream; loading only to evaluate or check leaves the caller's as it was
        torch.set_rng_state(state["torch_rng"] if restore_rng else before)
        agent.env_steps, agent.updates, agent.episodes = (
            state["env_steps"],
            state["updates"],
            state["episodes"],
        )
        agent.update_credit, agent.wall_s = state["update_credit"], state["wall_s"]
        agent.best = state.get("best")
        agent.history = list(state.get("history") or [])  # absent in checkpoints written before it was kept
        return agent


class SacPolicy(Policy):
    """A trained agent as a policy: greedy over π, with the current actor or (``best=True``) the best-validated."""

    name = "sac"

    def __init__(self, agent: DiscreteSAC, deterministic: bool = True, best: bool = False):
        self.agent, self.deterministic, self.name = agent, deterministic, agent.name
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
    threads: int | None = 1,
) -> list[dict]:
    """Train ``agent`` until it has seen ``episodes`` episodes in total (so a loaded checkpoint resumes).

    Episode ``e`` uses the task stream ``reset(seed=seed + e)``. After each episode the checkpoint is saved
    and ``on_episode(row)`` called; every ``eval_every`` episodes (and at the last) ``eval_fn(agent)`` gives
    the greedy policy's reward on held-out validation streams, recorded as ``eval_reward``, and the agent
    keeps a copy of the best actor so far (``DiscreteSAC.best``; tianshou's ``save_best_fn`` does the same).
    Torch runs on ``threads`` threads meanwhile (1 by default: the networks are small, and one thread is
    fastest; ``None`` leaves torch's setting alone); the previous setting is restored at the end.
    Returns one row per episode trained now; ``seconds`` is the episode's wall time, validation included,
    and ``wall_s`` the training's total so far (resumed runs continue from the checkpoint's total).
    """
    cfg = agent.config
    rows = []
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
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
                    # updates_per_step may be a fraction (say 0.5: one update every second step)
                    agent.update_credit += cfg.updates_per_step
                    while agent.update_credit >= 1.0:
                        losses = agent.update()
                        agent.update_credit -= 1.0
            agent.episodes += 1
            stats = info.get("episode_stats", {})
            row = {
                "episode": agent.episodes,
                "env_steps": agent.env_steps,
                "updates": agent.updates,
                "train_reward": stats.get("reward", np.nan),
                "crashes": stats.get("crashes", np.nan),
                "seconds": np.nan,
                "wall_s": np.nan,
                "alpha": agent.alpha,
                **{k: float(losses[k]) for k in ("q_loss", "actor_loss") if k in losses},
                "eval_reward": np.nan,
            }
            if eval_fn is not None and (agent.episodes % eval_every == 0 or agent.episodes == episodes):
                row["eval_reward"] = float(eval_fn(agent))
                agent.remember_if_best(row["eval_reward"])
            row["seconds"] = time.perf_counter() - start
            agent.wall_s += row["seconds"]
            row["wall_s"] = agent.wall_s
            # plain numbers (not numpy's), so the checkpoint loads with weights_only=True
            agent.history.append({k: int(v) if isinstance(v, int | np.integer) else float(v) for k, v in row.items()})
            if checkpoint is not None:
                agent.save(checkpoint)
            rows.append(row)
            if on_episode is not None:
                on_episode(row)
    finally:
        torch.set_num_threads(previous_threads)
    return rows
