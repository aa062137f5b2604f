"""The ``train`` command: parses, calls ``aaas_profile.train``, prints."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from aaas_profile.cli.common import console, emit, key_value_table, progress_bar
from aaas_profile.errors import Interrupted, UserError


def _channels(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(c) for c in text.split(",") if c.strip())
    except ValueError:
        raise UserError(f"--channels: expected integers like 16,32,64,64, got '{text}'") from None


def train(
    data: Annotated[Path, typer.Option(help="Folder of training images (files directly in it; subfolders such as "
                                            "eval/ are not used).")],
    out: Annotated[Path, typer.Option(help="Output diffusers folder, e.g. models/NAME; its checkpoint/ is resumed.")],
    resolution: Annotated[int, typer.Option(help="Side of the generated images, px.")] = 64,
    steps: Annotated[int, typer.Option(help="Total optimisation steps (a resumed run continues up to it).")] = 2000,
    batch_size: Annotated[int, typer.Option(help="Images per step.")] = 8,
    lr: Annotated[float, typer.Option(help="AdamW learning rate after the warm-up.")] = 1e-3,
    warmup_steps: Annotated[int, typer.Option(help="Linear learning-rate warm-up, steps.")] = 50,
    ema_decay: Annotated[float, typer.Option(help="EMA decay of the saved weights (with warm-up).")] = 0.995,
    seed: Annotated[int, typer.Option(help="Seed of the weights, crops, flips, timesteps and noise.")] = 0,
    min_crop: Annotated[float, typer.Option(help="Smallest random crop, as a fraction of the shorter side.")] = 0.7,
    flip: Annotated[bool, typer.Option("--flip/--no-flip", help="Random left-right flips.")] = True,
    channels: Annotated[str, typer.Option(help="UNet channels per level, comma list.")] = "16,32,64,64",
    layers_per_block: Annotated[int, typer.Option(help="ResNet layers per UNet level.")] = 1,
    checkpoint_every: Annotated[int, typer.Option(help="Write checkpoint/state.pt every N steps.")] = 200,
    resume: Annotated[bool, typer.Option("--resume/--no-resume", help="Continue from <out>/checkpoint.")] = True,
    device: Annotated[str, typer.Option(help="auto (CUDA when present), cpu, cuda or cuda:N.")] = "auto",
    precision: Annotated[str, typer.Option(help="auto (bf16, else fp16 on CUDA; fp32 on CPU), fp32, bf16, fp16.")]
    = "auto",
    time_limit: Annotated[float | None, typer.Option(help="Stop after this many minutes (saved and resumable).")]
    = None,
    threads: Annotated[int | None, typer.Option(help="torch CPU threads. \\[default: torch's choice]")] = None,
) -> None:
    """Train a small unconditional DDPM (diffusers UNet2DModel, linear 1000-step schedule, EMA weights) on an
    image folder and save it as a diffusers folder with a model card that `--model PATH` loads.

    Examples:

      aaas-profile train --data datasets/faces --out models/faces --steps 2000

      aaas-profile train --data datasets/scenes --out models/scenes --time-limit 30 --threads 2

      aaas-profile train --data my_images --out models/mine --resolution 128 --channels 32,64,128,128

    Run the same command again to continue an interrupted run, or with a larger --steps to train further.
    """
    import torch

    from aaas_profile import train as train_mod

    if threads is not None:
        if threads < 1:
            raise UserError(f"--threads must be ≥ 1, got {threads}")
        torch.set_num_threads(threads)
    command = "aaas-profile train " + shlex.join(sys.argv[2:] if sys.argv[1:2] == ["train"] else sys.argv[1:])
    config = train_mod.TrainConfig(
        resolution=resolution, steps=steps, batch_size=batch_size, lr=lr, warmup_steps=warmup_steps,
        ema_decay=ema_decay, seed=seed, min_crop=min_crop, flip=flip, channels=_channels(channels),
        layers_per_block=layers_per_block, checkpoint_every=checkpoint_every, device=device, precision=precision,
        time_limit_s=None if time_limit is None else time_limit * 60,
    )
    progress = progress_bar("training", "loss {task.fields[loss]}")
    task = progress.add_task("train", total=steps, loss="…")
    recent: list[float] = []

    def on_step(done: int, total: int, loss: float) -> None:
        if not progress.live.is_started:  # shown from the first step, so bad input prints only its error
            progress.start()
        recent.append(loss)
        del recent[:-50]
        progress.update(task, completed=done, loss=f"{sum(recent) / len(recent):.4f}")

    try:
        result = train_mod.train(data, out, config, resume=resume, command=command, on_step=on_step,
                                 on_resume=lambda step: console.print(f"resuming from the checkpoint at step {step} "
                                                                      f"of {steps}", highlight=False))
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted: training state is saved every {checkpoint_every} steps in {out}/checkpoint; "
                          "run the same command again to resume from the last one") from None
    finally:
        progress.stop()
    console.print(key_value_table(f"trained {result.out}", [
        ("steps", f"{result.steps}" + (" (time limit)" if result.stopped_early else "")
         + (f", resumed from step {result.resumed_from}" if result.resumed_from else "")),
        ("loss (last 100 steps)", f"{result.loss:.4f}"),
        ("parameters", f"{result.parameters:,}"),
        ("time", f"{result.seconds / 60:.1f} min"),
        ("device", f"{result.device}, {result.precision}"),
        ("model", f"{result.out} (load with --model {result.out})"),
    ]))
    emit({"model": result.out, "steps": result.steps, "stopped_early": result.stopped_early,
          "resumed_from": result.resumed_from, "loss": result.loss, "parameters": result.parameters,
          "seconds": result.seconds, "device": result.device, "precision": result.precision})
