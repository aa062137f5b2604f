"""The Python API: the commands as functions, with the command line's names for the same things.

    import aaas_profile.api as ap

    run = ap.sweep(masks="thick,half", steps=[1, 2, 5, 10, 20, 50], out="results/mine")
    fitted = ap.fit(run.run_dir, bootstrap=200)
    ap.report(run.run_dir)
    scores = ap.load_scores(run.run_dir)      # one row per image × mask × seed × sampler × steps × metric
    curves = ap.load_fit(run.run_dir)         # one row per curve: Ax, Ay, Bx, By, intervals, flags, stop
    sim = ap.simulate(policy="greedy-oracle", profile=fitted.path, metric="haarpsi", episodes=5)

Every keyword is the flag of the same name (``--jump-length`` is ``jump_length``); a comma list may be given as
a string or a list. Errors are ``aaas_profile.errors.UserError`` subclasses with a one-line message, the line
the command would print. The functions return the stage modules' result objects (``sweep.SweepResult``,
``fitrun.FitResult``, ``sim.runner.SimResult``, the report's path). docs/python-api.md has the reference.
"""

from __future__ import annotations

from pathlib import Path

from aaas_profile.core.acceptance import BOOTSTRAP_RESAMPLES, INTERVAL_LEVEL

__all__ = ["sweep", "fit", "simulate", "report", "load_scores", "load_fit", "recommendations"]


def _text(value) -> str | None:
    """A comma list as the command line takes it: a list or tuple of values, or the text itself."""
    if value is None or isinstance(value, str):
        return value
    return ",".join(str(v) for v in value)


def sweep(model: str | None = None, data: str | Path | None = None, masks=None, steps=None, seeds=None,
          sampler=None, jump_length: int | None = None, jump_n_sample: int | None = None, eta: float | None = None,
          metrics=None, limit: int | None = None, batch_size: int | None = None, device: str | None = None,
          dtype: str | None = None, save_images: int | None = None, out: str | Path | None = None,
          config: str | Path | None = None, shard: str | None = None, progress=None):
    """``aaas-profile sweep``: corrupt, inpaint at each step count, score; resumes an existing run folder.
    ``None`` means the command's default (or the ``config`` file's value). ``progress``: an object with the
    ``aaas_profile.sweep.Progress`` methods. Returns ``sweep.SweepResult`` (``run_dir``, ``summary``, counts)."""
    from aaas_profile import sweep as sweep_mod

    cfg = sweep_mod.SweepConfig.from_sources(
        None if config is None else Path(config), model=model, data=None if data is None else str(data),
        masks=_text(masks), steps=_text(steps), seeds=_text(seeds), sampler=_text(sampler), jump_length=jump_length,
        jump_n_sample=jump_n_sample, eta=eta, metrics=_text(metrics), limit=limit, batch_size=batch_size,
        device=device, dtype=dtype, save_images=save_images, out=None if out is None else str(out))
    part = sweep_mod.Shard.parse(shard) if shard else sweep_mod.Shard()
    return sweep_mod.run(cfg, progress=progress, shard=part)


def fit(run: str | Path, x: str = "steps", bootstrap: int = BOOTSTRAP_RESAMPLES, seed: int = 0,
        level: float = INTERVAL_LEVEL, metrics=None,
        drop_nan: bool = False, plots: bool = True, fit_model: str = "image_offsets", out: str | Path | None = None,
        replace: bool = False):
    """``aaas-profile fit``: the four-parameter model per curve of a run folder, ``bootstrap`` resamples over
    images. Writes ``<run>/fit.json`` (``fit-<x>.json`` for another axis, or ``out``) and plots; returns
    ``fitrun.FitResult`` (``curves``, ``path``, ``document``)."""
    from aaas_profile import fitrun

    names = _text(metrics)
    return fitrun.fit_run(Path(run), x=x, resamples=bootstrap, seed=seed, level=level,
                          metrics=[m.strip() for m in names.split(",") if m.strip()] if names else None,
                          drop_nan=drop_nan, plots=plots, model=fit_model,
                          out=None if out is None else Path(out), replace=replace)


def simulate(policy: str = "sac", preset: str = "paper", profile: str | Path | None = None,
             asps: str | Path | None = None, metric: str | None = None, sampler: str | None = None,
             allow_flagged_profile: bool = False, runtime: str = "profile", episodes: int = 10,
             train_episodes: int = 30, seed: int = 0, horizon: float = 1e6, out: str | Path | None = None,
             baselines: bool = True, optimum: bool = True, optimum_time_limit: float | None = None,
             resume: bool = False, checkpoint: str | Path | None = None, auto_alpha: bool = False, progress=None):
    """``aaas-profile simulate`` for one seed: the ASP-selection simulator. Returns ``sim.runner.SimResult``
    (``summary``, ``episodes``, ``folder``). ``optimum_time_limit``: seconds per integer program (``None``:
    the command's default)."""
    from aaas_profile.sim import runner
    from aaas_profile.sim.sources import AspSource, sim_config

    source = AspSource(preset=preset, asps=None if asps is None else Path(asps),
                       profile=None if profile is None else Path(profile), metric=metric, sampler=sampler,
                       runtime=runtime, allow_flagged=allow_flagged_profile)
    asp_set = source.load(seed)
    options = runner.SimOptions(policy=policy, episodes=episodes, train_episodes=train_episodes, seed=seed,
                                baselines=baselines, optimum=optimum, resume=resume,
                                checkpoint=None if checkpoint is None else Path(checkpoint), auto_alpha=auto_alpha)
    if optimum_time_limit is not None:
        options.optimum_time_limit_s = optimum_time_limit
    folder = source.default_out() if out is None else Path(out)
    return runner.simulate(asp_set, folder, options, config=sim_config(horizon), progress=progress)


def report(run: str | Path, out: str | Path | None = None) -> Path:
    """``aaas-profile report``: one self-contained HTML page of a run folder; returns its path."""
    from aaas_profile import report as report_mod

    return report_mod.write(Path(run), None if out is None else Path(out))


def load_scores(run: str | Path):
    """A run folder's scores as one pandas DataFrame, one row per image × mask × seed × sampler × steps ×
    metric (columns: docs/run-folder.md)."""
    from aaas_profile import runs

    return runs.read_scores(Path(run))


def load_fit(path: str | Path):
    """A fit.json (or the run folder holding it) as a DataFrame, one row per curve: the curve's key (model,
    mask, sampler, …, metric), ``ax, ay, bx, by`` and their interval bounds (``ax_low``, ``ax_high``, …), the
    flag codes, the p value of the step effect and the stop (steps and its interval). The document itself:
    ``aaas_profile.fitfile.load``."""
    import pandas as pd

    from aaas_profile import fitfile

    rows = []
    for curve in fitfile.load(Path(path)).get("curves", []):
        row = {k: v for k, v in curve.items() if not isinstance(v, dict | list)}
        for name in ("ax", "ay", "bx", "by"):
            param = curve.get(name)
            if isinstance(param, dict):
                ci = param.get("ci") or [None, None]
                row.update({name: param.get("value"), f"{name}_low": ci[0], f"{name}_high": ci[1]})
        row["flags"] = ",".join(f.get("code", "") for f in curve.get("flags") or [])
        effect, stop = curve.get("effect") or {}, curve.get("stop") or {}
        row["p_value"] = effect.get("p_value")
        stop_ci = stop.get("ci") or [None, None]
        row.update({"stop_steps": stop.get("steps"), "stop_low": stop_ci[0], "stop_high": stop_ci[1]})
        rows.append(row)
    return pd.DataFrame(rows)


def recommendations(path: str | Path) -> list[dict]:
    """A fit's recommendations, one per mask (and setting): ``{"group", "steps", "top_of_grid", "text"}``."""
    from aaas_profile import fit as fit_mod
    from aaas_profile import fitfile

    document = fitfile.load(Path(path))
    return document.get("recommendations") or fit_mod.recommendations(document.get("curves", []))
