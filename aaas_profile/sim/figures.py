"""The paper's simulator figures as PNG (matplotlib, Agg backend).

Figure 5: SAC's learning curve (reward per episode against environment steps, and against training wall
seconds on the top axis) with each baseline's mean evaluation reward as a level. Figure 6: bars of crash
events and of the mean reward per finished task, per policy, with the standard deviation over evaluation
episodes as error bars.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from aaas_profile.atomic import save_figure

COLORS = {"random": "tab:gray", "round-robin": "tab:brown", "crash-avoid": "tab:blue",
          "greedy-oracle": "tab:green", "sac": "tab:red", "optimum": "black"}


def figure5_learning_curve(training: pd.DataFrame, levels: dict[str, float], path: Path,
                           optimum: float | None = None, selected_episode: int | None = None,
                           name: str = "sac", label: str = "SAC") -> Path:
    """``training`` has episode, env_steps, wall_s, train_reward and eval_reward; ``levels`` maps policy → mean.

    ``selected_episode`` marks the validation point of the actor that was evaluated; ``name`` is the learning
    policy (its colour) and ``label`` its name in the legend.
    """
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    color = COLORS.get(name, "tab:red")
    ax.plot(training["env_steps"], training["train_reward"], color=color, alpha=0.35, lw=1,
            label=f"{label} (training episodes, sampled actions)")
    evals = training.dropna(subset=["eval_reward"])
    if len(evals):
        ax.plot(evals["env_steps"], evals["eval_reward"], "o-", color=color, lw=1.5, ms=3,
                label=f"{label} (greedy, mean of validation episodes)")
        chosen = evals[evals["episode"] == selected_episode]
        if len(chosen):
            ax.plot(chosen["env_steps"], chosen["eval_reward"], "*", color="gold", mec="black", ms=12,
                    label="actor evaluated (best validation)")
    for name, level in levels.items():
        ax.axhline(
            level, ls="--", lw=1.2, color=COLORS.get(name, "tab:purple"), label=f"{name} (evaluation mean)"
        )
    if optimum is not None:
        ax.axhline(optimum, ls=":", lw=1.2, color=COLORS["optimum"], label="hindsight optimum (bound)")
    ax.set_xlabel("environment steps (tasks assigned)")
    if "wall_s" in training and training["wall_s"].notna().all() and len(training) > 1:
        # A second x axis in training wall seconds; steps and seconds are both increasing, so interpolation
        # maps one onto the other.
        steps = np.concatenate([[0.0], training["env_steps"].to_numpy(float)])
        seconds = np.concatenate([[0.0], training["wall_s"].to_numpy(float)])
        top = ax.secondary_xaxis("top", functions=(lambda x: np.interp(x, steps, seconds),
                                                   lambda x: np.interp(x, seconds, steps)))
        ticks = MaxNLocator(6).tick_values(0.0, seconds[-1])
        top.set_xticks(ticks[ticks <= seconds[-1]])  # beyond the last episode the map is flat: no ticks there
        top.set_xlabel("training wall time (s, one CPU thread)", fontsize=8)
    ax.set_ylabel("episode reward")
    ax.set_title("Learning curve (cf. Du et al. 2023, Fig. 5)")
    low = min([*levels.values(), float(training["train_reward"].quantile(0.1))]) if len(training) else 0
    high = max([*levels.values(), optimum or 0.0, float(training["train_reward"].max()) if len(training) else 0])
    ax.set_ylim(bottom=min(low, 0) - 20, top=high + 0.05 * (high - min(low, 0)))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
    return Path(path)


def figure6_bars(episodes: pd.DataFrame, path: Path) -> Path:
    """Crash events and mean reward per finished task per policy (mean ± std over evaluation episodes)."""
    grouped = episodes.groupby("policy", sort=False)
    order = list(grouped.groups)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8), dpi=120)
    for ax, column, title in (
        (axes[0], "crashes", "crash events per episode"),
        (axes[1], "mean_reward_per_finished", "mean reward per finished task"),
    ):
        mean, std = grouped[column].mean().reindex(order), grouped[column].std(ddof=0).reindex(order)
        ax.bar(order, mean, yerr=std, capsize=3, color=[COLORS.get(p, "tab:purple") for p in order])
        ax.set_title(title)
        ax.tick_params(axis="x", rotation=30, labelsize=8)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("Policies compared (cf. Du et al. 2023, Fig. 6)")
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
    return Path(path)
