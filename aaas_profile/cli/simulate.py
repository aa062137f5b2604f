"""The ``simulate`` command: the ASP-selection simulator from the command line. Parses, calls ``aaas_profile.sim``,
prints."""

from __future__ import annotations

from pathlib import Path

from rich import box
from rich.table import Table

from aaas_profile.cli.common import console, emit, progress_bar, warn
from aaas_profile.options import SimulateOptions
from aaas_profile.sim.registry import get as get_policy

# The runner (torch, the solver) is imported inside the command, so `--help` starts at once.


class RichProgress:
    """One rich bar per stage (optimum, training, each evaluation), with elapsed time: the
    ``aaas_profile.sim.runner.Progress`` interface."""

    def start(self, label, total):
        self.bar = progress_bar(label, "{task.fields[info]}", eta=False)
        self.bar.start()
        self.task = self.bar.add_task(label, total=total, info="")

    def advance(self, n=1, **fields):
        info = f"reward {fields['reward']:.1f}" if "reward" in fields else ""
        self.bar.update(self.task, advance=n, info=info)

    def stop(self):  # also called once more after the run (in a finally), and before any start
        if getattr(self, "bar", None) is not None:
            self.bar.stop()


def simulate(o: SimulateOptions) -> None:
    """Simulate AIGC service-provider selection (Du et al. 2023): policies, SAC, hindsight optimum.

    Writes per-episode tables (Parquet), Figure 5 (SAC learning curve) and Figure 6 (crashes and reward per
    finished task) as PNG, and summary.json, under <out>/sim/<policy>/.

    Examples:

        aaas-profile simulate --policy sac

        aaas-profile simulate --policy greedy-oracle --episodes 20 --seed 1

        aaas-profile simulate --policy sac --preset agod --episodes 20

        aaas-profile simulate --policy crash-avoid --asps my_asps.csv --out results/mine

        aaas-profile simulate --profile results/run1/fit.json --metric haarpsi --policy sac

        aaas-profile simulate --policy sac --resume --train-episodes 200

        aaas-profile simulate --policy sac --seeds 0-9 --ray local
    """
    from aaas_profile.sim import runner
    from aaas_profile.sim.seeds import check_seeds, simulate_seeds
    from aaas_profile.sim.sources import AspSource, sim_config

    policy, seed, episodes, ray = o.policy, o.seed, o.episodes, o.ray
    source = AspSource(preset=o.preset, asps=o.asps, profile=o.profile, metric=o.metric, sampler=o.sampler,
                       runtime=o.runtime, allow_flagged=o.allow_flagged_profile)
    config = sim_config(o.horizon)
    seed_list = check_seeds(o.seeds, ray)
    asp_set = source.load(seed)
    for note in asp_set.notes:  # a profile that cannot reach the tasks' steps: say so before a long run
        if note.startswith("warning: "):
            warn(note.removeprefix("warning: "))
    out = source.default_out() if o.out is None else o.out
    if policy == "all" or "," in policy:  # several policies: one leaderboard (docs/leaderboard.md)
        _leaderboard(source, asp_set, Path(out), policy, seed_list or [seed], ray, config,
                     runner.SimOptions(episodes=episodes, train_episodes=o.train_episodes, seed=seed,
                                       optimum=o.optimum, optimum_time_limit_s=o.optimum_time_limit,
                                       auto_alpha=o.auto_alpha))
        return
    options = runner.SimOptions(policy=policy, episodes=episodes, train_episodes=o.train_episodes, seed=seed,
                                baselines=o.baselines, optimum=o.optimum, optimum_time_limit_s=o.optimum_time_limit,
                                resume=o.resume, checkpoint=o.checkpoint, auto_alpha=o.auto_alpha)
    if seed_list is not None:
        _, summary = simulate_seeds(source.per_seed(asp_set), Path(out), options, config, seed_list, ray_address=ray)
        _print_seeds(summary, seed_list, options, out)
        return
    progress = RichProgress()
    try:
        result = runner.simulate(asp_set, out, options, config=config, progress=progress)
    finally:
        progress.stop()
    _print_summary(result, asp_set.source, seed, episodes, policy)
    _print_mapping(asp_set)


def _leaderboard(source, asp_set, out: Path, policy: str, seed_list: list[int], ray, config, options) -> None:
    from aaas_profile.sim import leaderboard

    table = leaderboard.run(source.per_seed(asp_set), out, options, config, leaderboard.parse_policies(policy),
                            seed_list, ray_address=ray)
    grid = Table(title=f"leaderboard · {len(seed_list)} seeds × {options.episodes} evaluation episodes",
                 box=box.SIMPLE_HEAD)
    for column in ("policy", "reward", "best", "% oracle", "% bound", "crash", "97 %", "steps", "s"):
        grid.add_column(column, justify="left" if column == "policy" else "right", no_wrap=True)

    def num(value, fmt):
        return "no" if value != value else f"{value:{fmt}}"  # "no": not reached on any seed

    for r in table.itertuples():
        learns = bool(r.reached_97)
        grid.add_row(r.policy, f"{r.reward_mean:.0f}±{r.reward_std:.0f}", f"{r.best_episode:.0f}",
                     f"{r.pct_oracle_mean:.1f}±{r.pct_oracle_std:.1f}", f"{r.pct_bound:.1f}", f"{r.crashes:.1f}",
                     r.reached_97, num(r.steps_to_97, ".0f") if learns else "",
                     num(r.seconds_to_97, ".0f") if learns else "")
    console.print(grid)
    console.print(f"wrote {out / 'sim' / 'leaderboard.csv'} and leaderboard.png", highlight=False)
    emit({"folder": out / "sim", "seeds": seed_list,
          "leaderboard": table.to_dict(orient="records")})


def _print_mapping(asp_set) -> None:
    """Which curve each ASP got (also in sim/asps.csv, column source)."""
    mapping = asp_set.mapping()
    if len(mapping) == 1:
        console.print(f"{len(asp_set)} ASPs from {mapping[0][0]}", highlight=False)
    else:
        console.print(f"{len(asp_set)} ASPs, each curve from:", highlight=False)
        for origin, sids in mapping:
            console.print(f"  {origin}: {', '.join(sids)}", highlight=False)


def _print_seeds(summary, seed_list: list[int], options, out: Path) -> None:
    from aaas_profile.sim.seeds import SUMMARY as SEEDS_SUMMARY

    table = Table(title=f"simulate · {len(seed_list)} seeds × {options.episodes} evaluation episodes "
                        "(mean, ± std over episodes, (± std of the seeds' means))", box=box.SIMPLE_HEAD)
    table.add_column("policy", no_wrap=True)
    for column in SEEDS_SUMMARY:
        table.add_column(_HEADERS.get(column, column), justify="right")
    for policy in summary.index:
        row = summary.loc[policy]
        table.add_row(policy, *(f"{row[('mean', c)]:.3g}\n± {row[('std_episodes', c)]:.2g}\n"
                                f"(± {row[('std_of_seed_means', c)]:.2g})" for c in SEEDS_SUMMARY))
    console.print(table)
    console.print(f"wrote {Path(out) / 'sim' / options.policy / 'seeds.parquet'} and seeds_summary.parquet",
                  highlight=False)
    emit({"folder": Path(out) / "sim" / options.policy, "seeds": seed_list,
          "summary": {policy: {"/".join(map(str, k)): v for k, v in summary.loc[policy].items()}
                      for policy in summary.index}})


# Short column headers, so the summary tables fit 80 columns (a log, CI, a pipe).
_HEADERS = {"mean_reward_per_finished": "reward /\nfinished", "fraction_of_optimum": "of\noptimum",
            "interrupted": "inter-\nrupted", "finished": "fin-\nished"}


def _print_summary(result, source: str, seed: int, episodes: int, policy: str) -> None:
    table = Table(title=f"simulate · {source} · seed {seed} · {episodes} evaluation episodes (mean ± std)",
                  box=box.SIMPLE_HEAD)
    for column in ("policy", "reward", "crashes", "interrupted", "finished", "mean_reward_per_finished",
                   "fraction_of_optimum"):
        table.add_column(_HEADERS.get(column, column), justify="left" if column == "policy" else "right",
                         no_wrap=True)
    s = result.summary

    def cell(p, c, fmt):  # the std on a second line: keeps the table within 80 columns
        mean, std = s.loc[p, ("mean", c)], s.loc[p, ("std", c)]
        return "–" if mean != mean else f"{mean:{fmt}}\n± {std:{fmt}}"

    for p in s.index:
        table.add_row(
            p,
            cell(p, "reward", ".1f"),
            cell(p, "crashes", ".1f"),
            cell(p, "interrupted", ".1f"),
            cell(p, "finished", ".0f"),
            cell(p, "mean_reward_per_finished", ".3f"),
            cell(p, "fraction_of_optimum", ".1%"),
        )
    console.print(table)
    optimum = result.episodes.groupby("stream_seed")["optimum"].first()
    if optimum.notna().any():
        console.print(
            f"hindsight optimum: {optimum.mean():.1f} ± {optimum.std(ddof=0):.1f} "
            f"({result.optimum_exact}/{len(optimum)} solved exactly, else an upper bound)"
        )
    if result.training is not None and len(result.training):
        console.print(
            f"{get_policy(policy).title} training: {int(result.training['episode'].max())} episodes, "
            f"{result.env_steps} env steps, {result.train_seconds:.0f} s"
        )
    for note in result.notes:
        if not note.startswith("warning: "):  # warnings were printed before the run
            console.print(f"note: {note}")
    console.print(f"wrote {result.folder}")
    emit({"folder": result.folder, "source": source, "seed": seed, "episodes": episodes,
          "optimum_exact": result.optimum_exact, "notes": result.notes,
          "summary": {p: {"/".join(map(str, k)): v for k, v in s.loc[p].items()} for p in s.index}})
