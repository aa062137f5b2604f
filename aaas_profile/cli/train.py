"""The ``train`` command: parses, calls ``aaas_profile.train``, prints."""

from __future__ import annotations

import shlex
import sys

from aaas_profile.cli.common import console, emit, key_value_table, progress_bar
from aaas_profile.errors import Interrupted
from aaas_profile.options import TrainOptions


def train(o: TrainOptions) -> None:
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

    if o.threads is not None:
        torch.set_num_threads(o.threads)
    command = "aaas-profile train " + shlex.join(sys.argv[2:] if sys.argv[1:2] == ["train"] else sys.argv[1:])
    config = train_mod.TrainConfig(
        resolution=o.resolution, steps=o.steps, batch_size=o.batch_size, lr=o.lr, warmup_steps=o.warmup_steps,
        ema_decay=o.ema_decay, seed=o.seed, min_crop=o.min_crop, flip=o.flip, channels=tuple(o.channels),
        layers_per_block=o.layers_per_block, checkpoint_every=o.checkpoint_every, device=o.device,
        precision=o.precision, time_limit_s=None if o.time_limit is None else o.time_limit * 60,
    )
    data, out, steps, checkpoint_every = o.data, o.out, o.steps, o.checkpoint_every
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
        result = train_mod.train(data, out, config, resume=o.resume, command=command, on_step=on_step,
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
