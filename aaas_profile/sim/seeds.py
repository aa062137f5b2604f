"""Many seeds of one simulation, one after the other or in parallel as Ray tasks, and their aggregate.

Seed k runs exactly as ``aaas-profile simulate --seed k`` would (its ASP draw for the paper preset, its task
streams, its agent) into ``<out>/seed-k/sim/<policy>/``. The aggregate, ``<out>/sim/<policy>/seeds.parquet``,
is every seed's per-episode table with a ``seed`` column, and ``seeds_summary.parquet`` gives per policy the
mean and standard deviation over all seeds' evaluation episodes and over the seeds' own means.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pandas as pd

from aaas_profile import limits
from aaas_profile.errors import UserError
from aaas_profile.sim.asps import AspSet, SimError
from aaas_profile.sim.env import SimConfig
from aaas_profile.sim.runner import SimInterrupted, SimOptions, check_options, clear_results, simulate

SUMMARY = ("reward", "crashes", "interrupted", "finished", "mean_reward_per_finished")


def _one_seed(make_asps: Callable[[int], AspSet], out: Path, options: SimOptions, config: SimConfig,
              seed: int) -> pd.DataFrame:
    result = simulate(make_asps(seed), out / f"seed-{seed}", replace(options, seed=seed), config=config)
    return result.episodes.assign(seed=seed)


def check_seeds(seeds: list[int] | None, ray_address: str | None) -> list[int] | None:
    """``--seeds`` (parsed and range-checked on entry: ``options.SimulateOptions``), or None for a single run;
    ``--ray`` needs ``--seeds``, and ``--seeds`` at least one seed."""
    if seeds is None:
        if ray_address is not None:
            raise SimError("--ray runs seeds in parallel: give --seeds too")
        return None
    if not seeds:
        raise SimError("--seeds names no seed; give e.g. 0-9 or 0,3,7")
    return seeds


def _connect(address: str):
    """Ray, joined or started at ``address``; anything that stops it (Ray not installed, a bad address, a
    cluster that does not answer) is one line."""
    from aaas_profile.distributed import connect

    try:
        return connect(address)
    except UserError:
        raise
    except Exception as err:  # Ray raises many kinds when it cannot start or connect
        line = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise SimError(f"--ray {address}: cannot start or reach Ray ({line})") from None


def simulate_seeds(make_asps: Callable[[int], AspSet], out: Path, options: SimOptions, config: SimConfig,
                   seeds: list[int], ray_address: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run every seed (on Ray when ``ray_address`` is given: "local", "auto" or ray://HOST:PORT) and return
    (all episodes with a seed column, per-policy summary). Both are also written under
    ``out/sim/<policy>/``."""
    if not seeds:
        raise SimError("give at least one seed")
    limits.no_repeats("seeds", seeds, SimError)
    check_options(options)  # here, once: on Ray a refusal would otherwise come back as a failed task
    out = Path(out)
    clear_results(out / "sim" / options.policy)  # the aggregate of another set of seeds must not stay beside
    if ray_address is None:
        tables = [_one_seed(make_asps, out, options, config, seed) for seed in seeds]
    else:
        ray = _connect(ray_address)
        task = ray.remote(num_cpus=1, max_retries=0)(_one_seed)
        refs = [task.remote(make_asps, out.resolve(), options, config, seed) for seed in seeds]
        try:
            tables = ray.get(refs)
        except ray.exceptions.RayTaskError as err:
            raise SimError(f"a seed failed: {str(err).strip().splitlines()[-1]}") from None
        except KeyboardInterrupt:
            for ref in refs:
                ray.cancel(ref, force=True)
            raise SimInterrupted(f"interrupted; each finished seed's results are in {out}/seed-K/sim/") from None
    episodes = pd.concat(tables, ignore_index=True)
    per_seed = episodes.groupby(["policy", "seed"])[list(SUMMARY)].mean()
    summary = pd.concat(
        {"mean": episodes.groupby("policy")[list(SUMMARY)].mean(),
         "std_episodes": episodes.groupby("policy")[list(SUMMARY)].std(),
         "std_of_seed_means": per_seed.groupby("policy").std()},
        axis=1,
    )
    folder = out / "sim" / options.policy
    folder.mkdir(parents=True, exist_ok=True)
    episodes.to_parquet(folder / "seeds.parquet", index=False)
    flat = summary.copy()
    flat.columns = [f"{stat}_{column}" for stat, column in flat.columns]
    flat.reset_index().to_parquet(folder / "seeds_summary.parquet", index=False)
    return episodes, summary
