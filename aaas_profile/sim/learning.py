"""What ``simulate`` asks of a learning agent built on :class:`~aaas_profile.sim.sac.DiscreteSAC` (SAC, D2SAC):
train it, resume it from its checkpoint or load a given one, and hand the runner the best-validated actor
(the registry's factory, ``registry.REGISTRY["sac"]`` and ``["d2sac"]``). Also the checks ``simulate --resume``
runs before it writes anything. The algorithm and its training loop stay in ``sim/sac.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from aaas_profile import stored
from aaas_profile.sim.asps import SimError
from aaas_profile.sim.episodes import run_episode, train_seed, validation_seeds
from aaas_profile.sim.policies import PolicyContext, PreparedPolicy
from aaas_profile.sim.sac import DiscreteSAC, SacConfig, SacPolicy, train


def prepare(context: PolicyContext, agent_cls: type[DiscreteSAC] | None = None,
            config: SacConfig | None = None) -> PreparedPolicy:
    """Train the SAC agent (or continue it with ``options.resume``, or load ``options.checkpoint``) for
    ``simulate``; evaluation uses the best-validated actor. ``agent_cls`` and ``config`` let an agent built on
    this one (D2SAC) use the same training, checkpoint and resume machinery. The runner has already checked the
    options and, when training, removed a stale checkpoint and written ``checkpoint.json``."""
    import pandas as pd

    agent_cls = agent_cls or DiscreteSAC
    env, folder, options, progress = context.env, context.folder, context.options, context.progress
    obs_dim = env.observation_space.shape[0]
    checkpoint = folder / "checkpoint.pt"
    if options.checkpoint is not None:
        agent = load_agent(options.checkpoint, obs_dim, env.n_asps, agent_cls)
        return _prepared(agent, None, options.seed)
    previous = None
    if options.resume and checkpoint.exists():
        agent = load_agent(checkpoint, obs_dim, env.n_asps, agent_cls)
        previous = _read_training(folder / "training.parquet")
    else:  # the agent seeds torch itself (DiscreteSAC.__init__)
        config = config or agent_cls.config_class(auto_alpha=options.auto_alpha)
        agent = agent_cls(obs_dim, env.n_asps, config, seed=options.seed, steps_ratio=env.steps_ratio)
    validation = validation_seeds(options.seed)

    def validate(a) -> float:
        return float(np.mean([run_episode(env, SacPolicy(a), s)["reward"] for s in validation]))

    progress.start(f"train {agent.label}", options.train_episodes)
    progress.advance(agent.episodes)
    rows = train(env, agent, options.train_episodes, seed=train_seed(options.seed), checkpoint=checkpoint,
                 eval_fn=validate, eval_every=options.eval_every,
                 on_episode=lambda row: progress.advance(1, reward=row["train_reward"]),
                 threads=options.torch_threads)
    progress.stop()
    if not checkpoint.exists():
        agent.save(checkpoint)
    if len(agent.history) == agent.episodes:  # every episode's row, from the checkpoint
        training = pd.DataFrame(agent.history)
    else:  # a checkpoint from before the history was kept: what the last finished run wrote, then this one's
        training = pd.DataFrame(rows)
        if previous is not None:
            training = pd.concat([previous, training], ignore_index=True)
    return _prepared(agent, training, options.seed)


def _read_training(path: Path):
    """SAC's learning curve so far (``stored.TRAINING_COLUMNS``), checked; None when there is none."""
    if not path.exists():
        return None
    try:
        return stored.read_parquet(path, stored.TRAINING_COLUMNS, "use another --out to train afresh")
    except stored.StoredFileError as err:
        raise SimError(f"--resume: {err}") from None


def _prepared(agent: DiscreteSAC, training, seed: int) -> PreparedPolicy:
    """The agent's best-validated actor as the policy to evaluate, with which one it is."""
    selected, notes, best = None, (), agent.best
    if best is not None:
        selected = {"episode": best["episode"], "validation_reward": best["validation"],
                    "validation_stream_seeds": validation_seeds(seed)}
        notes = (f"{agent.label} is evaluated with its actor after episode {best['episode']}, the best mean greedy "
                 f"reward ({best['validation']:.1f}) on {len(selected['validation_stream_seeds'])} held-out validation "
                 "streams",)
    return PreparedPolicy(SacPolicy(agent, best=True), training, agent.wall_s if training is not None else 0.0,
                    agent.env_steps, selected, notes)


def check_checkpoint(path: Path, agent_cls: type[DiscreteSAC] | None = None) -> None:
    """A checkpoint to resume from and the learning curve beside it (``training.parquet``), read and checked
    (one-line ``SimError``), nothing kept: ``simulate --resume`` calls it before it writes anything."""
    path, agent_cls = Path(path), agent_cls or DiscreteSAC
    _read_training(path.parent / "training.parquet")
    try:
        agent_cls.load(path, restore_rng=False)
    except stored.StoredFileError as err:
        raise SimError(f"{agent_cls.label} checkpoint {err}") from None
    except Exception as err:  # torch raises many kinds for a foreign or truncated file
        raise SimError(f"cannot load {agent_cls.label} checkpoint {path}: {str(err).splitlines()[0]}") from None


def load_agent(path: Path, obs_dim: int, n_actions: int,
               agent_cls: type[DiscreteSAC] | None = None) -> DiscreteSAC:
    """A saved agent (of ``agent_cls``, SAC by default) for an environment with ``obs_dim`` observations and
    ``n_actions`` ASPs; one-line ``SimError`` for a missing, foreign or mismatched file."""
    path, agent_cls = Path(path), agent_cls or DiscreteSAC
    label = agent_cls.label
    if not path.is_file():
        raise SimError(f"{label} checkpoint {path} does not exist")
    try:
        agent = agent_cls.load(path)
    except stored.StoredFileError as err:
        raise SimError(f"{label} checkpoint {err}") from None
    except Exception as err:  # torch raises many kinds for a foreign or truncated file
        raise SimError(f"cannot load {label} checkpoint {path}: {str(err).splitlines()[0]}") from None
    if (agent.obs_dim, agent.n_actions) != (obs_dim, n_actions):
        raise SimError(f"{label} checkpoint {path} was trained for {agent.n_actions} ASPs, this set has {n_actions}")
    return agent
