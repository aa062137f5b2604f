"""The ``sweep`` command: parses, calls ``aaas_profile.sweep`` (or ``distributed`` with --ray), prints."""

from __future__ import annotations

import os

from rich import box
from rich.table import Table

from aaas_profile.cli.common import console, emit, progress_bar, warn
from aaas_profile.errors import Interrupted
from aaas_profile.options import SweepRun

# The stage modules (torch, diffusers, piq) are imported inside the command, so `--help` starts at once.


class RichProgress:
    """A rich progress bar over UNet image-forwards (what the time goes into), with an ETA: the
    ``aaas_profile.sweep.Progress`` interface."""

    def __init__(self):
        self.bar = progress_bar("sweep", "UNet image-forwards", "· {task.fields[cells]} cells")
        self.task = None
        self.cells = 0

    def start(self, total_calls: int, total_cells: int) -> None:
        self.bar.start()
        self.total_cells = total_cells
        self.task = self.bar.add_task("sweep", total=total_calls, cells=f"0/{total_cells}")

    def unet_call(self, images: int) -> None:
        self.bar.advance(self.task, images)

    def batch_done(self, cells: int) -> None:
        self.cells += cells
        self.bar.update(self.task, cells=f"{self.cells}/{self.total_cells}")

    def waiting(self, message: str) -> None:
        warn(message)

    def stop(self) -> None:
        self.bar.stop()


def sweep(given: dict, run: SweepRun) -> None:
    """Corrupt images, inpaint them with RePaint (or other samplers, --sampler) at a sweep of step counts, and
    score every output.

    Examples:

      aaas-profile sweep --model models/my-ddpm --limit 2 --steps 10,25,50

      aaas-profile sweep --model celeba --data datasets/sample --masks thick,thin --steps 10,20,25,50,100,250 \\
          --seeds 0,1 --out results/celeba-thin

      torchrun --nproc-per-node 8 -m aaas_profile.cli sweep --model celeba --out results/celeba

      aaas-profile sweep --model celeba --out results/celeba --ray auto

      aaas-profile sweep --sampler repaint,ddim,dpm-solver --steps 5,10,25,50

    Writes results/<run>/ (config.toml, manifest.json, scores/part-*.parquet, images/). Running the same
    command again resumes: finished cells are skipped (without --out the folder's name is a digest of every
    setting that defines the cells, so it is the same folder again, and a different experiment gets its own).
    Any number of processes may share one --out (shards: --shard, torchrun, SLURM arrays, --ray; or the same
    command started twice): each cell is computed once.
    """
    from aaas_profile import sweep as sweep_mod

    shard, ray, shards = run.shard, run.ray, run.shards
    sweep_mod.check_parallel_options(shard, ray, shards)
    if ray is not None:
        from aaas_profile import distributed

        distributed.check_address(ray)  # before the run folder is made: a silent address fails at once
    cfg = sweep_mod.SweepConfig.from_sources(run.config, **given)
    part = sweep_mod.Shard()
    if ray is None:
        part = sweep_mod.Shard.parse(shard) if shard else sweep_mod.Shard.from_env(dict(os.environ))
    prepared = sweep_mod.prepare(cfg, part)
    for warning in prepared.warnings:
        warn(warning)
    console.print(
        f"model [bold]{prepared.model.name}[/] ({prepared.model.source}, {prepared.model.resolution} px) · "
        f"{len(prepared.images)} images × {len(prepared.masks)} masks × {len(cfg.seeds)} seeds × "
        + (f"{len(prepared.samplers)} samplers ({', '.join(prepared.samplers)}) × "
           if len(prepared.samplers) > 1 else "")
        + f"{len(cfg.steps)} step counts · {prepared.device} {prepared.config.dtype} · run folder {prepared.run_dir}"
        + (f" · shard {part}" if part.count > 1 else "") + (f" · on Ray ({ray})" if ray is not None else ""),
        highlight=False,
    )
    need = sweep_mod.conclusion_needs(prepared)
    (warn if need.short else console.print)(need.line)
    if run.dry_run:
        _print_plan(sweep_mod.dry_run(prepared), prepared)
        return
    interrupted = (f"interrupted: finished cells are saved in {prepared.run_dir}; run the same command again to "
                   "resume")
    if ray is not None:
        _sweep_on_ray(cfg, prepared, ray, shards, interrupted)
        return
    progress = RichProgress()
    try:
        result = sweep_mod.run(cfg, progress=progress, prepared=prepared)
    except KeyboardInterrupt:
        raise Interrupted(interrupted) from None
    finally:
        progress.stop()
    _print_summary(result)


def sampler_labels(summary):
    """The summary's sampler names, with their parameters where one name appears with two sets of them."""
    import pandas as pd

    if summary.empty:
        return pd.Series([], dtype=object, index=summary.index)
    ambiguous = summary.groupby("sampler")["sampler_params"].transform("nunique") > 1
    labels = summary["sampler"].where(~ambiguous, summary["sampler"] + " " + summary["sampler_params"])
    walks = summary.groupby("sampler")["respacing"].transform("nunique") > 1  # the walk, where it tells apart
    return labels.where(~walks, labels + " @" + summary["respacing"])


def _sweep_on_ray(cfg, prepared, address: str, shards: int | None,
                  interrupted: str) -> None:
    from aaas_profile import distributed

    bar = progress_bar("sweep on Ray", "cells")
    task = None

    def on_progress(done: int, total: int) -> None:
        nonlocal task
        if task is None:
            task = bar.add_task("ray", total=total)
        bar.update(task, completed=done)

    try:
        with bar:
            result, reports = distributed.run_on_ray(cfg, address, shards, on_progress=on_progress, prepared=prepared)
    except KeyboardInterrupt:
        raise Interrupted(interrupted) from None
    for report in reports:
        console.print(f"shard {report['shard']}: {report['cells_run']} cells in {report['wall_s']:.1f} s",
                      highlight=False)
    _print_summary(result)


def _print_plan(plan, prepared) -> None:
    console.print(f"dry run: {plan.cells} cells to run ({plan.cells_done} already done) · {plan.unet_calls:,} UNet "
                  f"image-forwards · {plan.seconds_per_forward * 1e3:.3g} ms each on {prepared.device} "
                  f"{prepared.config.dtype} · about {_duration(plan.estimated_s)} of UNet time (scoring adds a "
                  "little) · nothing written", highlight=False)
    emit({"dry_run": True, "run_dir": plan.run_dir, "cells": plan.cells, "cells_done": plan.cells_done,
          "unet_calls": plan.unet_calls, "seconds_per_forward": plan.seconds_per_forward,
          "estimated_s": plan.estimated_s, "images": plan.images})


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _print_summary(result) -> None:
    from aaas_profile import sweep as sweep_mod

    summary = result.summary
    # A column for every setting that varies in the folder (the summary never pools two of them), and a title
    # that says what each median pools.
    labels = sampler_labels(summary)
    shown = {"model": summary["model"], "mask": summary["mask"], "sampler": labels,
             "j/r": summary["resampling"]} if len(summary) else {}
    extra = [k for k in sweep_mod.SUMMARY_KEYS if k not in ("model", "mask", "sampler", "sampler_params",
                                                              "jump_length", "jump_n_sample")]
    shown.update({k: summary[k].astype(str) for k in extra if len(summary)})  # settings added to runs.CELL_KEY
    varying = [k for k, v in shown.items() if v.nunique() > 1]
    fixed = [f"{k} {v.iloc[0]}" for k, v in shown.items() if k not in varying and k in ("model", "mask", "sampler")]
    if len(summary):
        images, seeds = int(summary["images"].max()), int(summary["seeds"].max())
        pooled = f"medians over {images} images × {seeds} seed(s)"
    else:
        pooled = "no scores"
    table = Table(title=f"{result.run_dir} · {' · '.join(fixed)} · {pooled}", box=box.SIMPLE_HEAD,
                  title_justify="left", pad_edge=False)  # as the fit tables: readable at 80 columns
    for column in (*varying, "metric", "better", "low steps", "median", "high steps", "median"):
        table.add_column(column, justify="left" if column in (*varying, "metric", "better") else "right",
                         no_wrap=column in varying)  # names unshortened
    for i, row in enumerate(summary.itertuples()):
        table.add_row(*(str(shown[k].iloc[i]) for k in varying), row.metric, row.better, str(row.steps_low),
                      f"{row.median_low:.4g}", str(row.steps_high), f"{row.median_high:.4g}")
    console.print(table)
    rate = result.unet_calls / result.wall_s if result.wall_s > 0 else 0.0
    console.print(
        f"{result.cells_run} cells run, {result.cells_skipped} already done · {result.unet_calls} UNet "
        f"image-forwards in {result.wall_s:.1f} s ({rate:.1f}/s)", highlight=False,
    )
    emit({"run_dir": result.run_dir, "cells_run": result.cells_run, "cells_skipped": result.cells_skipped,
          "unet_calls": result.unet_calls, "wall_s": result.wall_s,
          "summary": result.summary.to_dict(orient="records")})
