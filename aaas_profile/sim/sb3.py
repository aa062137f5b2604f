"""DQN and PPO from Stable-Baselines3, the follow-up's library baselines, on the project's environment.

Nothing here re-implements an algorithm: SB3 trains, saves and loads; this module only gives both the same
task streams and the same validation as ``sac`` and ``d2sac`` (``sim/episodes.py``):

- Training episode ``e`` runs the stream ``train_seed(seed) + e`` (a wrapper sets the seed SB3's vectorised env
  would otherwise leave to the environment's own generator), so every learning policy trains on the same
  streams and is evaluated on the same disjoint ones.
- The budget is in environment steps: ``--train-episodes`` episodes' worth, counted exactly from those
  streams' task counts (one step per task), so that DQN's ε schedule, which SB3 spreads over the total, knows
  the end.
- Every ``eval_every`` episodes a callback runs the greedy policy on the validation streams and keeps the best
  parameters (as tianshou's ``save_best_fn`` and ``sac``'s best-validated actor do); the evaluated policy is
  the best one, the checkpoint (``model.zip``, SB3's own format, with ``model.json`` for the episode count,
  environment steps, wall time and the best parameters' validation reward) is the last.
- A checkpoint is read as tensors only (``_load``): SB3's own ``load`` unpickles the zip's ``data`` entry with
  cloudpickle, which runs whatever code a crafted file carries, so the model is built here from ``TUNED`` and
  only its parameters and optimiser state are taken from the zip.

Hyper-parameters are SB3's defaults, except where they fail on this problem (``TUNED``; each with its reason).
"""

from __future__ import annotations

import copy
import io
import json
import time
import zipfile
from pathlib import Path

import gymnasium as gym
import numpy as np
import pandas as pd
import torch

from aaas_profile import stored
from aaas_profile.atomic import atomic_path
from aaas_profile.sim.asps import SimError
from aaas_profile.sim.episodes import run_episode, train_seed, validation_seeds
from aaas_profile.sim.policies import Policy, PolicyContext, PreparedPolicy

# Departures from SB3's defaults. DQN's defaults suit Atari's millions of frames: a 1e6 replay buffer, a
# target network copied every 10,000 steps and ε decayed over 10 % of the budget. With a budget of a few
# tens of thousands of steps the target would be copied a handful of times; tau and target interval are set
# to Polyak averaging at the rate ``sac`` uses, learning starts after one random episode, as for ``sac``.
# PPO's defaults (2048-step rollouts, 10 epochs of batches of 64) are kept.
TUNED: dict[str, dict] = {
    "dqn": {"learning_starts": 1_000, "buffer_size": 20_000, "target_update_interval": 1, "tau": 0.005,
            "exploration_fraction": 0.3, "batch_size": 128, "gamma": 0.5},
    "ppo": {"gamma": 0.5},
}
# γ 0.5 for both, as for ``sac`` (docs in sim/sac.py): at 0.99 a value is ~100 and the 0.05-sized reward gaps
# between ASPs drown in it.


class _TrainStreams(gym.Wrapper):
    """Reset ``k`` runs the stream ``first + k``, whatever seed SB3 passes."""

    def __init__(self, env, first: int, done_episodes: int = 0):
        super().__init__(env)
        self.first, self.resets = first, done_episodes

    def reset(self, *, seed=None, options=None):
        obs, info = self.env.reset(seed=self.first + self.resets, options=options)
        self.resets += 1
        return obs, info


class Sb3Policy(Policy):
    """A trained SB3 model as a policy: its greedy (deterministic) action."""

    def __init__(self, name: str, model):
        self.name, self.model = name, model

    def act(self, env, obs):
        action, _ = self.model.predict(obs, deterministic=True)
        return int(action)


def budget_steps(env, seed: int, episodes: int) -> int:
    """Environment steps of training episodes ``0 … episodes−1`` (one per task of each stream)."""
    probe, steps = copy.deepcopy(env), 0
    for e in range(episodes):
        probe.reset(seed=train_seed(seed) + e)
        steps += len(probe.tasks)
    return steps


def _algorithm(name: str):
    from stable_baselines3 import DQN, PPO  # here: importing SB3 costs a second the baselines never need

    return {"dqn": DQN, "ppo": PPO}[name]


def prepare(context: PolicyContext, name: str) -> PreparedPolicy:
    """Train (or resume, or load) SB3's ``name`` for ``simulate``; the registry's factory for dqn and ppo."""
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.logger import Logger

    env, folder, options, progress = context.env, context.folder, context.options, context.progress
    label = name.upper()
    if options.checkpoint is not None:
        return PreparedPolicy(Sb3Policy(name, _load(name, Path(options.checkpoint), copy.deepcopy(env), options.seed)))
    checkpoint, meta_path = folder / "model.zip", folder / "model.json"
    meta = {"episodes": 0, "env_steps": 0, "wall_s": 0.0, "best_validation": None}
    previous = None
    threads = torch.get_num_threads()
    torch.set_num_threads(options.torch_threads)
    try:
        resume = options.resume and checkpoint.exists()
        if resume:
            check_checkpoint(checkpoint, name)
            meta = stored.read_json(meta_path, stored.Sb3Meta, "use another --out to train afresh")
            if (folder / "training.parquet").exists():
                previous = _read_training(folder / "training.parquet")
        train_env = _TrainStreams(copy.deepcopy(env), train_seed(options.seed), meta["episodes"])
        if resume:
            model = _load(name, checkpoint, train_env, options.seed)
            model.num_timesteps = meta["env_steps"]  # where DQN's ε schedule and the budget stand
        else:
            model = _build(name, train_env, options.seed)
        total = budget_steps(env, options.seed, options.train_episodes)
        validation = validation_seeds(options.seed)
        rows, best = [], {"validation": meta["best_validation"], "params": None}
        start_wall = meta["wall_s"]
        clock = time.perf_counter()

        class Validate(BaseCallback):
            def _on_step(self) -> bool:
                for done, info in zip(self.locals["dones"], self.locals["infos"], strict=True):
                    if not done:
                        continue
                    meta["episodes"] += 1
                    stats = info.get("episode_stats", {})
                    row = {"episode": meta["episodes"], "env_steps": int(self.model.num_timesteps),
                           "train_reward": stats.get("reward", np.nan), "crashes": stats.get("crashes", np.nan),
                           "eval_reward": np.nan}
                    if meta["episodes"] % options.eval_every == 0 or meta["episodes"] == options.train_episodes:
                        policy = Sb3Policy(name, self.model)
                        score = float(np.mean([run_episode(env, policy, s)["reward"] for s in validation]))
                        row["eval_reward"] = score
                        if best["validation"] is None or score > best["validation"]:
                            best["validation"], meta["best_validation"] = score, score
                            best["params"] = copy.deepcopy(self.model.policy.state_dict())
                            best["episode"] = meta["episodes"]
                    row["wall_s"] = start_wall + time.perf_counter() - clock
                    rows.append(row)
                    progress.advance(1, reward=row["train_reward"])
                return meta["episodes"] < options.train_episodes

        progress.start(f"train {name}", options.train_episodes)
        progress.advance(meta["episodes"])
        remaining = max(total - model.num_timesteps, 0)
        # SB3's default logger makes a folder in the temp dir (SB3-<time>) on every learn() even when it logs
        # nothing; a logger with no outputs writes nothing anywhere
        model.set_logger(Logger(folder=None, output_formats=[]))
        if remaining:
            model.learn(remaining, callback=Validate(), reset_num_timesteps=False)
        progress.stop()
        meta["wall_s"] = start_wall + time.perf_counter() - clock
        meta["env_steps"] = int(model.num_timesteps)
        with atomic_path(checkpoint) as temp, open(temp, "wb") as file:
            model.save(file)  # a file object: SB3 would append ".zip" to the temp file's name
        with atomic_path(meta_path) as temp:
            Path(temp).write_text(json.dumps(meta))
    finally:
        torch.set_num_threads(threads)
    notes, selected = (), None
    if best["params"] is not None:
        model.policy.load_state_dict(best["params"])
        selected = {"episode": best["episode"], "validation_reward": best["validation"],
                    "validation_stream_seeds": validation}
        notes = (f"{label} is evaluated with its parameters after episode {best['episode']}, the best mean greedy "
                 f"reward ({best['validation']:.1f}) on {len(validation)} held-out validation streams",)
    training = pd.DataFrame(rows)
    if previous is not None:
        training = pd.concat([previous, training], ignore_index=True)
    return PreparedPolicy(Sb3Policy(name, model), training, meta["wall_s"], int(model.num_timesteps), selected, notes)


def _build(name: str, env, seed: int):
    """A fresh SB3 ``name`` on ``env`` with the project's settings (``TUNED``)."""
    return _algorithm(name)("MlpPolicy", env, seed=seed, device="cpu", verbose=0, **TUNED[name])


def _tensors(path: Path, label: str) -> dict:
    """The parameters (``policy``) and optimiser state (``policy.optimizer``) in SB3's ``model.zip``, read as
    tensors only (``weights_only=True``); a missing or foreign file is one line."""
    if not path.is_file():
        raise SimError(f"{label} checkpoint {path} does not exist")
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            if "policy.pth" not in names:
                raise ValueError("it holds no policy.pth, so it is not a Stable-Baselines3 model")
            return {entry[:-len(".pth")]: torch.load(io.BytesIO(archive.read(entry)), map_location="cpu",
                                                     weights_only=True)
                    for entry in ("policy.pth", "policy.optimizer.pth") if entry in names}
    except Exception as err:  # zipfile and torch raise many kinds for a foreign or truncated file
        raise SimError(f"cannot load {label} checkpoint {path}: {str(err).splitlines()[0]}") from None


def _load(name: str, path: Path, env, seed: int):
    """The model in SB3's ``model.zip`` at ``path``, for ``env``: built here from ``TUNED``, its parameters and
    optimiser state taken from the zip (``_tensors``; the module docstring says why SB3's own ``load`` is not
    used). A missing, foreign or mismatched file is one line."""
    label = name.upper()
    tensors = _tensors(path, label)
    model = _build(name, env, seed)
    try:
        model.policy.load_state_dict(tensors["policy"])
        if "policy.optimizer" in tensors:
            model.policy.optimizer.load_state_dict(tensors["policy.optimizer"])
    except Exception as err:  # torch raises RuntimeError or ValueError for other shapes or keys
        raise SimError(f"cannot load {label} checkpoint {path} for this set of ASPs: "
                       f"{str(err).splitlines()[0]}") from None
    return model


def check_checkpoint(path: Path, name: str) -> None:
    """``simulate --resume``'s check before it writes anything: the checkpoint's tensors, the episode record
    beside it (``model.json``) and the learning curve are read and checked (one-line ``SimError``)."""
    path = Path(path)
    _tensors(path, name.upper())
    try:
        stored.read_json(path.parent / "model.json", stored.Sb3Meta, "use another --out to train afresh")
    except stored.StoredFileError as err:
        raise SimError(str(err)) from None
    if (path.parent / "training.parquet").exists():
        _read_training(path.parent / "training.parquet")


def _read_training(path: Path):
    try:
        return stored.read_parquet(path, stored.SB3_TRAINING_COLUMNS, "use another --out to train afresh")
    except stored.StoredFileError as err:
        raise SimError(str(err)) from None
