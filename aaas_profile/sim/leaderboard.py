"""Several policies over several seeds on identical task streams: one table and one figure (docs/leaderboard.md).

Each learning policy runs as ``simulate --policy P --seeds …`` would (``seeds.simulate_seeds``, on Ray when
asked) into ``<out>/seed-k/sim/P/``; seed k's ASP draw, training, validation and evaluation streams are the same
for every policy (``sim/episodes.py``). The baselines come from the first learning policy's runs (they are
evaluated beside it on the same streams), and so does the hindsight bound, computed once per seed.

Columns, one row per policy (all over the evaluation episodes of every seed):

- ``reward_mean``, ``reward_std``: mean and standard deviation of the episode reward;
- ``best_episode``: the highest episode reward (the follow-up's Table III quotes that, not a mean);
- ``pct_oracle_mean``, ``pct_oracle_std``: 100 × the seed's mean reward / the greedy oracle's on that seed,
  mean and standard deviation over seeds;
- ``pct_bound``: 100 × mean reward / mean hindsight bound (an upper bound where not solved exactly);
- ``crashes``: mean crashes per episode;
- ``reached_97``: on how many seeds the validated greedy reward reached 97 % of the greedy oracle's on the
  validation streams during training; ``steps_to_97``, ``seconds_to_97``: the mean over those seeds of the
  environment steps and wall seconds (validation included) until the first such validation point (NaN:
  "not reached" on any seed; baselines do not train).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from aaas_profile.atomic import atomic_path
from aaas_profile.sim import registry
from aaas_profile.sim.asps import AspSet, SimError
from aaas_profile.sim.env import SimConfig
from aaas_profile.sim.runner import SimOptions
from aaas_profile.sim.seeds import simulate_seeds

ORACLE = "greedy-oracle"
COLUMNS = ("policy", "seeds", "reward_mean", "reward_std", "best_episode", "pct_oracle_mean", "pct_oracle_std",
           "pct_bound", "crashes", "reached_97", "steps_to_97", "seconds_to_97")


def parse_policies(text: str) -> list[str]:
    """``--policy all`` or a comma list (``sac,d2sac,random``) as registry names, each known (one-line error)."""
    if text.strip() == "all":
        return list(registry.names())
    names = [p.strip() for p in text.split(",") if p.strip()]
    for name in names:
        registry.get(name)  # an unknown name: one line listing the known ones
    if not names:
        raise SimError(f"--policy {text!r} names no policy; give 'all' or e.g. sac,d2sac")
    return list(dict.fromkeys(names))


def run(make_asps: Callable[[int], AspSet], out: Path, options: SimOptions, config: SimConfig, policies: list[str],
        seeds: list[int], ray_address: str | None = None) -> pd.DataFrame:
    """Run ``policies`` on ``seeds``; write ``<out>/sim/leaderboard.{csv,parquet}`` and ``leaderboard.png``;
    return the table."""
    out = Path(out)
    learners = [p for p in policies if registry.get(p).learns]
    firsts = learners or [ORACLE]
    tables, crossings = [], []
    for i, name in enumerate(firsts):
        # the first run evaluates the baselines and the hindsight bound beside its policy; later ones need neither
        opts = replace(options, policy=name, baselines=i == 0, optimum=options.optimum and i == 0)
        episodes, _ = simulate_seeds(make_asps, out, opts, config, seeds, ray_address=ray_address)
        tables.append(episodes)
        if registry.get(name).learns:
            crossings += [_crossing(out / f"seed-{s}" / "sim" / name / "summary.json", name, s) for s in seeds]
    episodes = pd.concat(tables, ignore_index=True)
    bound = tables[0].groupby(["seed", "stream_seed"])["optimum"].first()
    episodes["optimum"] = [bound.get((s, k), np.nan) for s, k in zip(episodes["seed"], episodes["stream_seed"],
                                                                       strict=True)]
    episodes = episodes[episodes["policy"].isin(policies)]
    table = summarise(episodes, pd.DataFrame(crossings, columns=["policy", "seed", "env_steps", "wall_s"]))
    write(out / "sim", table, episodes)
    return table


# What one leaderboard writes into ``<out>/sim``; leaderboard.parquet, which ``report`` reads, is written last.
FILES = ("leaderboard_episodes.parquet", "leaderboard.csv", "leaderboard.png", "leaderboard.parquet")


def write(folder: Path, table: pd.DataFrame, episodes: pd.DataFrame) -> None:
    """The leaderboard's files as a set: an earlier leaderboard's are removed first, each file is written
    atomically, and ``leaderboard.parquet`` (the mark of a whole set) last, so the folder never shows one run's
    table beside another's episodes or figure."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in reversed(FILES):
        (folder / name).unlink(missing_ok=True)
    with atomic_path(folder / "leaderboard_episodes.parquet") as temp:
        episodes.to_parquet(temp, index=False)
    with atomic_path(folder / "leaderboard.csv") as temp:
        table.to_csv(temp, index=False)
    with atomic_path(folder / "leaderboard.png") as temp:
        figure(table, temp)
    with atomic_path(folder / "leaderboard.parquet") as temp:
        table.to_parquet(temp, index=False)


def _crossing(summary_json: Path, policy: str, seed: int) -> tuple:
    """(policy, seed, env steps, wall seconds) of the first validation at ≥ 97 % of the oracle; NaN when none."""
    learning = json.loads(summary_json.read_text()).get("sac_learning") or {}
    first = learning.get("first_97pct_of_oracle")
    return (policy, seed, first["env_steps"], first["wall_s"]) if first else (policy, seed, np.nan, np.nan)


def summarise(episodes: pd.DataFrame, crossings: pd.DataFrame) -> pd.DataFrame:
    """The leaderboard (module docstring) from per-episode rows (``policy``, ``seed``, ``reward``, ``crashes``,
    ``optimum``; the greedy oracle among the policies) and the learners' 97 % crossings per seed."""
    if ORACLE not in set(episodes["policy"]):
        raise SimError("the leaderboard needs the greedy oracle's episodes (its % column is relative to them)")
    per_seed = episodes.groupby(["policy", "seed"])["reward"].mean()
    oracle = per_seed.loc[ORACLE]
    rows = []
    for policy, group in episodes.groupby("policy", sort=False):
        pct = 100 * per_seed.loc[policy] / oracle.reindex(per_seed.loc[policy].index)
        mine = crossings[crossings["policy"] == policy]
        reached = mine.dropna(subset=["env_steps"])
        learns = registry.get(policy).learns if policy in registry.REGISTRY else not mine.empty
        rows.append({
            "policy": policy, "seeds": group["seed"].nunique(),
            "reward_mean": group["reward"].mean(), "reward_std": group["reward"].std(ddof=0),
            "best_episode": group["reward"].max(),
            "pct_oracle_mean": pct.mean(), "pct_oracle_std": pct.std(ddof=0),
            "pct_bound": 100 * group["reward"].mean() / group["optimum"].mean(),
            "crashes": group["crashes"].mean(),
            "reached_97": f"{len(reached)}/{len(mine)}" if learns else "",
            "steps_to_97": reached["env_steps"].mean() if len(reached) else np.nan,
            "seconds_to_97": reached["wall_s"].mean() if len(reached) else np.nan,
        })
    return pd.DataFrame(rows, columns=list(COLUMNS))


def figure(table: pd.DataFrame, path: Path) -> Path:
    """Bars of % of the greedy oracle (mean ± std over seeds), one per policy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    x = np.arange(len(table))
    ax.bar(x, table["pct_oracle_mean"], yerr=table["pct_oracle_std"], color="#4c72b0", capsize=3)
    ax.axhline(97, color="grey", linestyle="--", linewidth=1, label="97 % of the greedy oracle")
    ax.set_xticks(x, table["policy"], rotation=30, ha="right")
    ax.set_ylabel("% of greedy oracle's reward")
    ax.set_title(f"leaderboard · {int(table['seeds'].max())} seeds (mean ± std over seeds)")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120, format="png")
    plt.close(fig)
    return path
