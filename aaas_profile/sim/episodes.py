"""Episodes and their task-stream seeds: what the runner and every learning policy share.

Evaluation, validation and training use disjoint task streams, so a learning policy never trains or selects
its actor on the streams it is evaluated on.
"""

from __future__ import annotations


def eval_seeds(seed: int, episodes: int) -> list[int]:
    """Task-stream seeds of the evaluation episodes (disjoint from training's ``seed·100000 + e``)."""
    return [1_000_000_000 + seed * 100_000 + i for i in range(episodes)]


def validation_seeds(seed: int, episodes: int = 3) -> list[int]:
    """Task-stream seeds on which training validates a learning policy's greedy actor and picks its best."""
    return [2_000_000_000 + seed * 100_000 + i for i in range(episodes)]


def train_seed(seed: int) -> int:
    """Training episode ``e`` uses the task stream ``train_seed(seed) + e``."""
    return seed * 100_000


def run_episode(env, policy, stream_seed: int) -> dict:
    """One episode of ``policy`` on the stream ``env.reset(seed=stream_seed)``; returns the environment's
    episode totals (``info["episode_stats"]``)."""
    obs, _ = env.reset(seed=stream_seed)
    policy.reset(env, seed=stream_seed)
    done, info = False, {}
    while not done:
        obs, _, terminated, truncated, info = env.step(policy.act(env, obs))
        done = terminated or truncated
    return info["episode_stats"]
