"""Run policies on the simulator and write the run folder's ``sim/<policy>/`` outputs.

Every policy is evaluated on the same task streams (the evaluation seeds), so the comparison is paired and
the hindsight optimum of each stream is solved once. Outputs per policy: ``episodes.parquet`` (one row per
evaluation episode); for the requested policy also ``summary.json``, ``figure6.png`` and, for a learning
policy (SAC; see ``registry``), ``training.parquet``, ``figure5.png`` and its checkpoint. Every run also
writes the ASP table it used to ``sim/asps.csv`` (the columns ``--asps`` reads), so it can be repeated on exactly
those ASPs.

Columns of ``episodes.parquet``: policy, episode, stream_seed, reward (episode sum), crashes (crash events),
interrupted (running tasks lost in crashes), dropped (tasks that arrived at a full ASP), finished (tasks
served, never lost and done by the episode's end, as the authors count them), running (served tasks still
running at the end; finished + running is every task served and never lost), finished_gain (Σ f(t) − Ay
over finished tasks), mean_reward_per_finished (finished_gain / finished), optimum (hindsight optimum of the
stream, or its upper bound), optimum_exact, fraction_of_optimum (reward / optimum), steps (tasks in the episode).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from aaas_profile.atomic import atomic_path, write_atomic
from aaas_profile.errors import Interrupted, check_writable
from aaas_profile.sim import registry
from aaas_profile.sim.asps import AspSet, SimError, write_asps_csv
from aaas_profile.sim.env import AspSelectionEnv, SimConfig
from aaas_profile.sim.episodes import eval_seeds, run_episode, train_seed, validation_seeds  # noqa: F401 (re-exported)
from aaas_profile.sim.figures import figure5_learning_curve, figure6_bars
from aaas_profile.sim.optimum import Optimum, hindsight_optimum
from aaas_profile.sim.policies import Policy, PolicyContext, make_baseline

SUMMARY_COLUMNS = ("reward", "crashes", "interrupted", "finished", "mean_reward_per_finished",
                   "fraction_of_optimum")


class Progress:
    """Progress hooks (no-ops); the CLI passes a rich implementation."""

    def start(self, label: str, total: int) -> None: ...

    def advance(self, n: int = 1, **fields) -> None: ...

    def stop(self) -> None: ...


def first_reaching(training: pd.DataFrame, level: float) -> dict | None:
    """The first validation point whose greedy reward reaches ``level``: its episode, env steps and wall
    seconds of training (validation included); ``None`` when none does. ``training`` is :func:`sac.train`'s
    rows (``eval_reward`` is NaN between validation points)."""
    reached = training[training["eval_reward"] >= level]
    if reached.empty:
        return None
    row = reached.iloc[0]
    return {"episode": int(row["episode"]), "env_steps": int(row["env_steps"]), "wall_s": float(row["wall_s"])}


def episode_optimum(env: AspSelectionEnv, stream_seed: int, time_limit_s: float) -> Optimum:
    """The hindsight optimum of the stream ``reset(seed=stream_seed)``."""
    env.reset(seed=stream_seed)
    t = env.tasks
    return hindsight_optimum(t.arrival_s, t.runtime_s, t.steps, t.gains, env.capacity, time_limit_s)


def evaluate(env: AspSelectionEnv, policy: Policy, seeds: list[int], optima: dict[int, Optimum] | None = None,
             progress: Progress | None = None) -> pd.DataFrame:
    """One row per evaluation episode (the columns of the module docstring)."""
    rows = []
    for i, s in enumerate(seeds):
        stats = run_episode(env, policy, s)
        opt = (optima or {}).get(s)
        finished = stats["finished"]
        rows.append({
            "policy": policy.name, "episode": i, "stream_seed": s, "reward": stats["reward"],
            "crashes": stats["crashes"], "interrupted": stats["interrupted"], "dropped": stats["dropped"],
            "finished": finished, "running": stats["running"], "finished_gain": stats["finished_gain"],
            "mean_reward_per_finished": stats["finished_gain"] / finished if finished else 0.0,
            "optimum": opt.bound if opt else np.nan, "optimum_exact": bool(opt.exact) if opt else False,
            "fraction_of_optimum": stats["reward"] / opt.bound if opt and opt.bound > 0 else np.nan,
            "steps": stats["steps"],
        })
        if progress:
            progress.advance(1)
    return pd.DataFrame(rows)


def summarise(episodes: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation (over evaluation episodes) of each summary column, one row per policy."""
    grouped = episodes.groupby("policy", sort=False)
    out = pd.concat({"mean": grouped[list(SUMMARY_COLUMNS)].mean(),
                     "std": grouped[list(SUMMARY_COLUMNS)].std(ddof=0)}, axis=1)
    out[("episodes", "")] = grouped.size()
    return out


@dataclass
class SimOptions:
    """What ``simulate`` does; the CLI fills it from its flags."""

    policy: str = "sac"
    episodes: int = 10  # evaluation episodes per policy
    train_episodes: int = 30  # SAC training episodes (≈ 1,000 env steps each)
    seed: int = 0
    baselines: bool = True  # evaluate every baseline beside the policy, as reference levels
    optimum: bool = True
    # HiGHS rarely finishes the paper preset's integer program (one stream: 3.5 % gap after 120 s), and longer
    # limits tighten the upper bound little (0.5-0.6 % from 1 s to 10 s on three streams): a bound in about 2 s
    # a stream instead of 11, and the output says it is a bound (docs/simulate.md).
    optimum_time_limit_s: float = 1.0
    resume: bool = False  # continue a learning policy's training from its checkpoint in sim/<policy>/
    checkpoint: Path | None = None  # evaluate this saved checkpoint of a learning policy instead of training
    auto_alpha: bool = False
    eval_every: int = 2  # validate every 2 training episodes (3 greedy episodes: about a second)
    torch_threads: int = 1  # SAC's networks are small: one thread is fastest and leaves other cores alone


def check_options(options: SimOptions) -> None:
    """Refuse options that are out of range or would be ignored, each with one line (SimError). What applies to
    which policy comes from its registry entry (``registry.PolicySpec``)."""
    spec = registry.get(options.policy)
    if options.episodes < 1:
        raise SimError(f"--episodes must be at least 1, got {options.episodes}")
    if not options.optimum_time_limit_s > 0:
        raise SimError(f"--optimum-time-limit must be positive, got {options.optimum_time_limit_s:g}")
    flags = _policy_flags(options)
    given = [flag for flag, _ in flags]
    refused = [flag for flag, accepts in flags if not accepts(spec)]
    if refused:
        takers = [s.name for s in registry.REGISTRY.values() if all(accepts(s) for _, accepts in flags)]
        to = " or ".join(f"--policy {name}" for name in takers) or "another policy"
        one = len(refused) == 1
        raise SimError(f"{', '.join(refused)} only {'applies' if one else 'apply'} to {to}, not {options.policy}; "
                       f"drop {'it' if one else 'them'}" + (f" or use --policy {takers[0]}" if takers else ""))
    if "--checkpoint" in given and "--resume" in given:
        raise SimError("--checkpoint evaluates a trained agent and --resume trains one further: give one of them")
    if spec.learns and options.checkpoint is None and options.train_episodes < 1:
        raise SimError(f"--train-episodes {options.train_episodes} would evaluate an untrained {spec.title} agent: "
                       "give at least 1" + (", or evaluate a trained one with --checkpoint FILE"
                                            if spec.checkpoint else ""))


def _policy_flags(options: SimOptions) -> list[tuple[str, Callable[[registry.PolicySpec], bool]]]:
    """(flag, accepts(spec)) for each policy-specific option that is set: --checkpoint and --resume need a
    checkpoint file, the rest (e.g. --auto-alpha) are the ``SimOptions`` fields some policy lists as its own."""
    defaults = SimOptions()
    flags = []
    if options.checkpoint is not None:
        flags.append(("--checkpoint", lambda s: s.checkpoint is not None))
    if options.resume:
        flags.append(("--resume", lambda s: s.checkpoint is not None))
    own = sorted({name for s in registry.REGISTRY.values() for name in s.options})
    for name in own:
        if getattr(options, name) != getattr(defaults, name):
            flags.append((f"--{name.replace('_', '-')}", lambda s, name=name: name in s.options))
    return flags


def asp_digest(asps: AspSet) -> str:
    """A short digest of an ASP set (its table and runtime model): what a checkpoint was trained on."""
    import hashlib

    text = asps.table().to_csv(index=False) + repr(asps.runtime_coef)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _check_resumable(spec: registry.PolicySpec, folder: Path, asps: AspSet, options: SimOptions) -> None:
    """--resume needs a checkpoint, trained with this seed on this ASP set (checkpoint.json records both)."""
    checkpoint = folder / spec.checkpoint
    if not checkpoint.is_file():
        raise SimError(f"--resume: no {spec.title} checkpoint at {checkpoint}; drop --resume to train from "
                       "scratch, or give the --out of the run to continue")
    meta_path = folder / "checkpoint.json"
    if not meta_path.is_file():
        return  # a checkpoint from before checkpoint.json: nothing to compare with
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as err:
        raise SimError(f"--resume: {meta_path} is damaged ({err}); use another --out to train afresh") from None
    if meta.get("seed") != options.seed or meta.get("asps_digest") != asp_digest(asps):
        raise SimError(f"--resume: {checkpoint} was trained with --seed {meta.get('seed')} on "
                       f"{meta.get('asps_source')}, not --seed {options.seed} on {asps.source}; resume with "
                       "those, or use another --out to train afresh")


@dataclass
class SimResult:
    folder: Path
    episodes: pd.DataFrame
    summary: pd.DataFrame
    training: pd.DataFrame | None = None
    train_seconds: float = 0.0
    env_steps: int = 0
    optimum_exact: int = 0
    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class SimInterrupted(SimError, Interrupted):
    """Ctrl-C during ``simulate``: says where a learning policy's checkpoint is, to ``--resume`` from."""


def simulate(asps: AspSet, out: Path, options: SimOptions, config: SimConfig | None = None,
             progress: Progress | None = None) -> SimResult:
    """Evaluate ``options.policy`` (training it first when it learns) and the baselines; write
    ``out/sim/<policy>/``. A Ctrl-C becomes a one-line ``SimInterrupted``."""
    check_options(options)
    spec = registry.get(options.policy)
    folder = Path(out) / "sim" / options.policy
    try:
        return _simulate(spec, asps, Path(out), folder, options, config, progress or Progress())
    except KeyboardInterrupt:
        saved = spec.checkpoint is not None and options.checkpoint is None and (folder / spec.checkpoint).exists()
        raise SimInterrupted(f"interrupted; {spec.title}'s last checkpoint is in {folder} (use --resume)" if saved
                             else "interrupted before the results were written; run the command again") from None


def _simulate(spec: registry.PolicySpec, asps: AspSet, out: Path, folder: Path, options: SimOptions,
              config: SimConfig | None, progress: Progress) -> SimResult:
    env = AspSelectionEnv(asps, config)
    check_writable(folder, "--out")  # before hours of training, not after
    if spec.checkpoint is not None and options.resume:
        _check_resumable(spec, folder, asps, options)
    folder.mkdir(parents=True, exist_ok=True)
    asps_csv = write_asps_csv(asps, Path(out) / "sim" / "asps.csv")  # so the run can be repeated on its ASPs
    seeds = eval_seeds(options.seed, options.episodes)
    result_notes = list(asps.notes)

    optima: dict[int, Optimum] = {}
    if options.optimum:
        progress.start(f"hindsight optimum (an upper bound unless solved within {options.optimum_time_limit_s:g} s)",
                       len(seeds))
        for s in seeds:
            optima[s] = episode_optimum(env, s, options.optimum_time_limit_s)
            progress.advance(1)
        progress.stop()
    names = [options.policy]
    if options.baselines:
        names = [*[b for b in registry.baseline_names() if b != options.policy], options.policy]

    tables, training, train_seconds, env_steps, selected = {}, None, 0.0, 0, None
    for name in names:
        entry = registry.get(name)
        if entry.learns and entry.checkpoint is not None and options.checkpoint is None:
            _start_checkpoint(entry, folder, asps, options)
        prepared = entry.make(PolicyContext(env, Path(out) / "sim" / name, options, progress,
                                            levels={k: v["reward"].mean() for k, v in tables.items()}))
        if entry.learns:
            training, train_seconds, env_steps = prepared.training, prepared.train_seconds, prepared.env_steps
            selected = prepared.selected
        result_notes.extend(prepared.notes)
        progress.start(f"evaluate {name}", len(seeds))
        tables[name] = _evaluate_on_threads(env, prepared.policy, seeds, optima, progress,
                                            options.torch_threads if entry.torch_threads else None)
        progress.stop()

    episodes = pd.concat(tables.values(), ignore_index=True)
    learning = None
    if training is not None and len(training):
        # The learning curve on both axes, and when the validated greedy reward first reached 97 % of the greedy
        # oracle's on the same validation streams.
        oracle = float(np.mean([run_episode(env, make_baseline("greedy-oracle"), s)["reward"]
                                for s in validation_seeds(options.seed)]))
        points = training.dropna(subset=["eval_reward"])
        learning = {
            "greedy_oracle_validation_reward": oracle,
            "first_97pct_of_oracle": first_reaching(training, 0.97 * oracle),
            "curve": [{"episode": int(r.episode), "env_steps": int(r.env_steps), "wall_s": float(r.wall_s),
                       "validation_reward": float(r.eval_reward)} for r in points.itertuples()],
        }
    files = [asps_csv]
    for name, table in tables.items():
        sub = Path(out) / "sim" / name
        sub.mkdir(parents=True, exist_ok=True)
        files.append(_write_parquet(table, sub / "episodes.parquet"))
    summary = summarise(episodes)
    files.append(figure6_bars(episodes, folder / "figure6.png"))
    if training is not None and len(training):
        files.append(_write_parquet(training, folder / "training.parquet"))
        levels = {k: float(v["reward"].mean()) for k, v in tables.items() if not registry.get(k).learns}
        opt_mean = float(np.mean([o.bound for o in optima.values()])) if optima else None
        files.append(figure5_learning_curve(training, levels, folder / "figure5.png", opt_mean,
                                            selected["episode"] if selected else None, name=spec.name,
                                            label=spec.title))
    n_exact = sum(o.exact for o in optima.values())
    if optima and n_exact < len(optima):
        result_notes.append(f"hindsight optimum: {n_exact}/{len(optima)} episodes solved exactly; the others "
                            f"report an upper bound (LP relaxation / HiGHS dual bound after "
                            f"{options.optimum_time_limit_s:g} s)")
    summary_json = {
        "policy": options.policy,
        "asps": asps.source,
        "seed": options.seed,
        "episodes": options.episodes,
        "eval_stream_seeds": seeds,
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(options).items()},
        "env": asdict(env.config),
        "train_seconds": train_seconds,
        "train_env_steps": env_steps,
        # the learning policy's (SAC's in the paper; these keys keep the names the report and older files use)
        "sac_selected_actor": selected,
        "sac_learning": learning,
        "optimum": {
            "mean": float(np.mean([o.bound for o in optima.values()])) if optima else None,
            "exact_episodes": n_exact,
            "seconds": float(sum(o.seconds for o in optima.values())),
        },
        "policies": {
            p: {
                c: {"mean": _num(summary.loc[p, ("mean", c)]), "std": _num(summary.loc[p, ("std", c)])}
                for c in SUMMARY_COLUMNS
            }
            for p in summary.index
        },
        "notes": result_notes,
    }
    write_atomic(folder / "summary.json", json.dumps(summary_json, indent=2))
    files.append(folder / "summary.json")
    return SimResult(
        folder, episodes, summary, training, train_seconds, env_steps, n_exact, files, result_notes
    )


def _num(value) -> float | None:
    value = float(value)
    return None if math.isnan(value) else value


def _write_parquet(frame: pd.DataFrame, path: Path) -> Path:
    with atomic_path(path) as temp:
        frame.to_parquet(temp, index=False)
    return path


def _evaluate_on_threads(env, policy, seeds, optima, progress, threads: int | None) -> pd.DataFrame:
    """``evaluate`` with torch on ``threads`` threads (SAC's actor runs in evaluation too; ``train`` sets its own),
    restoring the previous count after; ``None`` leaves torch alone (the baselines need no torch)."""
    if threads is None:
        return evaluate(env, policy, seeds, optima, progress)
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return evaluate(env, policy, seeds, optima, progress)
    finally:
        torch.set_num_threads(previous)


def _start_checkpoint(spec: registry.PolicySpec, folder: Path, asps: AspSet, options: SimOptions) -> None:
    """Before a learning policy trains: record what it trains on (checkpoint.json, read by --resume), and when
    training afresh remove an older checkpoint, which must not sit beside the new checkpoint.json until the first
    save replaces it, or a --resume after an early kill would take it for this run's."""
    folder.mkdir(parents=True, exist_ok=True)
    if not options.resume:
        (folder / spec.checkpoint).unlink(missing_ok=True)
    meta = {"seed": options.seed, "asps_source": asps.source, "asps_digest": asp_digest(asps)}
    write_atomic(folder / "checkpoint.json", json.dumps(meta, indent=2) + "\n")
