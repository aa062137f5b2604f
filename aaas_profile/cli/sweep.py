"""The ``sweep`` command: parses, calls ``aaas_profile.sweep`` (or ``distributed`` with --ray), prints."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.table import Table

from aaas_profile.cli.common import console, emit, progress_bar, warn
from aaas_profile.errors import Interrupted

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

    def stop(self) -> None:
        self.bar.stop()


def sweep(
    model: Annotated[str | None, typer.Option(help="Model name (see `aaas-profile models`) or a diffusers folder. \\[default: faces, the bundled 64-px model]")] = None,  # noqa: E501
    data: Annotated[Path | None, typer.Option(help="Folder of PNG/JPEG/BMP images (any mode and size; resized and centre-cropped to the model's resolution). \\[default: datasets/faces/eval, faces the bundled model never saw]")] = None,  # noqa: E501
    masks: Annotated[str | None, typer.Option(help="Comma list of mask families (thick, thin, half, expand, line, box) and/or folders of mask images (white = keep). \\[default: thick]")] = None,  # noqa: E501
    steps: Annotated[str | None, typer.Option(help="Step counts: with a respacing N (repaint's default, N = 250) each is t_T, where the chain starts on the N-step grid (the paper's x axis, 10-250); on the steps walk the number of steps over the whole training range (use divisors of the 1000 training steps there: other counts start from a lower noise level). \\[default: 10,25,50,75,100,150,200,250: the paper's range in 8 starts, about 3 CPU minutes on the bundled model]")] = None,  # noqa: E501
    seeds: Annotated[str | None, typer.Option(help="Seeds per image × mask, e.g. 0,1 or 0-4. \\[default: 0]")] = None,  # noqa: E501
    sampler: Annotated[str | None, typer.Option(help="Comma list of samplers, each swept over the same cells and step counts (one curve each): repaint (RePaint, with --jump-length/--jump-n-sample), ddim (DDIM, eta 0), dpm-solver (DPM-Solver++ 2nd order); ddim and dpm-solver keep the known region by replacement and cost one UNet call a step. \\[default: repaint]")] = None,  # noqa: E501
    respacing: Annotated[str | None, typer.Option(help="Comma list of walks: an integer N walks the N-step respaced grid from t_T = steps (the paper's x axis: N = 250, steps ≤ N; repaint only), 'steps' a steps-step grid over the whole training range (diffusers' num_inference_steps), 'default' each sampler's own. Every sampler runs every walk it takes; a pair it refuses is skipped with a warning, e.g. --sampler repaint,ddim --respacing 250,steps. \\[default: 250 for repaint, steps for the others]")] = None,  # noqa: E501
    jump_length: Annotated[int | None, typer.Option("--jump-length", help="RePaint's resampling jump j (1 with --jump-n-sample 1 turns resampling off). \\[default: 10]")] = None,  # noqa: E501
    jump_n_sample: Annotated[int | None, typer.Option("--jump-n-sample", help="RePaint's resampling count r (1: no resampling). \\[default: 1, to fit the default sweep into 3 CPU minutes; the authors ran 10]")] = None,  # noqa: E501
    eta: Annotated[float | None, typer.Option(help="Noise weight of the unknown part's update: 0 = diffusers' RePaint default, 1 = DDPM. \\[default: 0]")] = None,  # noqa: E501
    metrics: Annotated[str | None, typer.Option(help="Comma list of tv, brisque, dss, haarpsi, mdsi, vif. \\[default: all]")] = None,  # noqa: E501
    limit: Annotated[int | None, typer.Option(help="Use only the first N images (sorted by name).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Cells per UNet call. \\[default: 8]")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda or cuda:N. \\[default: auto]")] = None,
    dtype: Annotated[str | None, typer.Option(help="auto (bf16 where the CPU has AVX512-BF16/AMX-BF16 or the GPU bf16 tensor cores, else fp32; a resumed run folder keeps its own), fp32, bf16, or fp16 on CUDA. \\[default: auto]")] = None,  # noqa: E501
    save_images: Annotated[int | None, typer.Option(help="Save PNGs (original, corrupted, each step count) of this many cells. \\[default: 4]")] = None,  # noqa: E501
    out: Annotated[Path | None, typer.Option(help="Run folder; an existing one is resumed, and new step counts, seeds, masks, samplers or images are added to it. \\[default: results/<model>-<data folder>-<digest of every setting that defines the cells>, so the same command resumes and another experiment gets its own folder]")] = None,  # noqa: E501
    config: Annotated[Path | None, typer.Option(help="TOML file with any of these options (flags override it).")] = None,  # noqa: E501
    shard: Annotated[str | None, typer.Option(help="Run shard INDEX/COUNT (e.g. 0/4) of the cells into the same --out; read from RANK/WORLD_SIZE (torchrun) or SLURM_ARRAY_TASK_ID/COUNT when not given.")] = None,  # noqa: E501
    ray: Annotated[str | None, typer.Option(help="Run the shards as Ray tasks (one GPU each): 'local' starts Ray here, 'auto' joins a running cluster, or ray://HOST:PORT. Needs aaas-profile\\[ray].")] = None,  # noqa: E501
    shards: Annotated[int | None, typer.Option(help="Number of shards with --ray. \\[default: the cluster's GPUs, else CPUs / 2]")] = None,  # noqa: E501
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the planned cells, UNet calls and an estimated time (one timed UNet forward), then stop; writes nothing.")] = False,  # noqa: E501
) -> None:
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

    sweep_mod.check_parallel_options(shard, ray, shards)
    if ray is not None:
        from aaas_profile import distributed

        distributed.check_address(ray)  # before the run folder is made: a silent address fails at once
    cfg = sweep_mod.SweepConfig.from_sources(
        config, model=model, data=None if data is None else str(data), masks=masks, steps=steps, seeds=seeds,
        sampler=sampler, respacing=respacing, jump_length=jump_length, jump_n_sample=jump_n_sample, eta=eta,
        metrics=metrics,
        limit=limit, batch_size=batch_size, device=device, dtype=dtype, save_images=save_images,
        out=None if out is None else str(out),
    )
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
    if dry_run:
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
