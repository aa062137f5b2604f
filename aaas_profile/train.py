"""Train a small unconditional DDPM on a folder of images and save it as a diffusers pipeline folder.

Why one module of some 490 lines: it is one training run, top to bottom (data and augmentation, the model, the
loop with EMA and resumable checkpoints, the model folder and its card), in the order it happens; each part
is short and used only here.

The model is diffusers' ``UNet2DModel`` trained with the DDPM objective of Ho et al. (2020), eq. 14:

    x_t = sqrt(ᾱ_t)·x_0 + sqrt(1 − ᾱ_t)·ε,   ε ~ N(0, I),   t ~ U{0, …, 999}
    L   = ‖ε − ε_θ(x_t, t)‖²   (mean over pixels)

with the linear β schedule 1e-4 … 0.02 over 1000 steps (``DDPMScheduler``), the schedule RePaint's sampler in
``aaas_profile/samplers/`` expects. Images are scaled from [0, 1] to [−1, 1].

* **Augmentation** (``augment``): each example is a random square crop of a random training image, its side
  drawn uniformly between ``min_crop`` and 1 × the image's shorter side, resized to ``resolution`` px
  (bilinear with antialiasing), and mirrored left-right with probability 1/2. Nothing else (no colour jitter).
* **EMA**: an exponential moving average of the weights, decay ``min(ema_decay, (1 + n) / (10 + n))`` at
  update n (diffusers' ``EMAModel`` warm-up), so a short run is not dominated by its random initial weights.
  The saved model holds the EMA weights.
* **Precision**: fp32 on the CPU; on CUDA, autocast to bf16 where supported, else fp16 with a gradient
  scaler (``precision="auto"``).
* **Checkpoints**: ``<out>/checkpoint/state.pt`` every ``checkpoint_every`` steps and at the end: weights,
  EMA, optimizer, scaler, step, the data/noise generator's state and the loss history. A run started again
  with ``resume=True`` continues from it, and gives the same weights as an uninterrupted run (the learning
  rate schedule, linear warm-up then constant, does not depend on the total step count, so ``steps`` may be
  raised to train further). ``<out>/.gitignore`` keeps the checkpoint out of git.
* **Output**: ``<out>/model_index.json``, ``unet/`` (EMA weights, fp16 safetensors), ``scheduler/`` and a
  ``README.md`` model card (licence of the data, data, steps, time, device, the command), the layout
  ``aaas_profile.models.load`` reads.
"""

from __future__ import annotations

import json
import math
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from aaas_profile import models, stored
from aaas_profile import precision as precision_mod
from aaas_profile.atomic import atomic_path, write_atomic
from aaas_profile.datasets import data_licence
from aaas_profile.errors import UserError, check_writable, not_found
from aaas_profile.images import ImageError, list_images, min_side, open_image, pil_to_rgb

SCHEDULE = {  # Ho et al. (2020); equal to aaas_profile.models.DEFAULT_SCHEDULE
    "num_train_timesteps": 1000,
    "beta_start": 0.0001,
    "beta_end": 0.02,
    "beta_schedule": "linear",
    "clip_sample": True,
    "prediction_type": "epsilon",
}
CHECKPOINT = "checkpoint/state.pt"
# What a checkpoint must agree on to be resumed: everything that changes the trajectory, except the length.
TRAJECTORY_KEYS = (
    "resolution", "batch_size", "lr", "warmup_steps", "ema_decay", "seed", "min_crop", "flip",
    "channels", "layers_per_block", "attention", "weight_decay", "grad_clip",
)


class TrainError(UserError, ValueError):
    """Training input or state that cannot be used; the message is one line."""


@dataclass
class TrainConfig:
    """Hyper-parameters of a run; defaults are the bundled models' (fast on a CPU, see models/*/README.md)."""

    resolution: int = 64
    steps: int = 2000
    batch_size: int = 8  # Ho et al. use 128; on a CPU more, smaller steps learn faster per second
    lr: float = 1e-3  # Ho et al. use 2e-4; a 1 M-parameter UNet and a short CPU budget take a larger one
    warmup_steps: int = 50
    ema_decay: float = 0.995  # Ho et al. use 0.9999 over 800k steps; this averages the last ~200 of a few 1000
    seed: int = 0
    min_crop: float = 0.7  # crop side as a fraction of the image's shorter side, drawn in [min_crop, 1]
    flip: bool = True
    channels: tuple[int, ...] = (16, 32, 64, 64)  # one UNet level per entry; resolution halves between them
    layers_per_block: int = 1
    attention: bool = True  # self-attention at the lowest resolution only (8 px at 64 px input)
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    checkpoint_every: int = 200
    device: str = "auto"
    precision: str = "auto"  # auto, fp32, bf16, fp16
    time_limit_s: float | None = None  # stop (checkpointed and saved) once this much wall time is spent

    def validate(self) -> None:
        if self.resolution < 16 or self.resolution % 2 ** (len(self.channels) - 1):
            raise TrainError(
                f"resolution must be ≥ 16 and divisible by {2 ** (len(self.channels) - 1)}, got {self.resolution}"
            )
        for name in ("steps", "batch_size", "checkpoint_every", "layers_per_block"):
            if getattr(self, name) < 1:
                raise TrainError(f"{name.replace('_', '-')} must be ≥ 1, got {getattr(self, name)}")
        if self.warmup_steps < 0:
            raise TrainError(f"warmup-steps must be ≥ 0 (0: no warm-up), got {self.warmup_steps}")
        if self.time_limit_s is not None and not self.time_limit_s >= 0:  # 0: stop after the first step
            raise TrainError(f"time-limit must be ≥ 0 minutes, got {self.time_limit_s / 60:g}")
        if not 0 < self.lr < 1:
            raise TrainError(f"lr must be in (0, 1), got {self.lr}")
        if not 0 <= self.ema_decay < 1:
            raise TrainError(f"ema-decay must be in [0, 1), got {self.ema_decay}")
        if not 0 < self.min_crop <= 1:
            raise TrainError(f"min-crop must be in (0, 1], got {self.min_crop}")
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            raise TrainError(f"unknown precision '{self.precision}': choose auto, fp32, bf16 or fp16")
        if not self.channels or any(c < 8 or c % 8 for c in self.channels):
            raise TrainError(f"channels must be multiples of 8, got {self.channels}")

    def trajectory(self) -> dict:
        raw = asdict(self)
        return {k: (list(raw[k]) if isinstance(raw[k], tuple) else raw[k]) for k in TRAJECTORY_KEYS}


@dataclass
class TrainResult:
    out: Path
    steps: int  # optimisation steps done in total (over all resumed runs)
    loss: float  # mean loss over the last min(100, steps) steps
    seconds: float  # wall time over all runs
    device: str
    precision: str
    parameters: int
    stopped_early: bool  # the time limit ended the run before `steps`
    resumed_from: int = 0  # the checkpoint's step this run continued from (0: a fresh start)


def build_unet(config: TrainConfig):
    """The UNet2DModel of a run: ``channels`` levels, ResNet blocks, attention at the lowest level."""
    from diffusers import UNet2DModel

    n = len(config.channels)
    down = ["DownBlock2D"] * n
    up = ["UpBlock2D"] * n
    if config.attention:
        down[-1], up[0] = "AttnDownBlock2D", "AttnUpBlock2D"
    return UNet2DModel(
        sample_size=config.resolution,
        in_channels=3,
        out_channels=3,
        layers_per_block=config.layers_per_block,
        block_out_channels=tuple(config.channels),
        down_block_types=tuple(down),
        up_block_types=tuple(up),
        norm_num_groups=8,
    )


def load_training_images(folder: Path | str, resolution: int) -> list[torch.Tensor]:
    """Every image directly in `folder` (subfolders such as eval/ are skipped) as float (3, H, W) in [0, 1]
    at its own size. TrainError for a missing or empty folder or an image under ``min_side(resolution)``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise TrainError(not_found(folder, "image folder", folder=True))
    paths = list_images(folder)
    if not paths:
        raise TrainError(f"{folder}: no images (expected .png, .jpg, .jpeg or .bmp files directly in it)")
    tensors = []
    for path in paths:
        try:
            rgb = pil_to_rgb(open_image(path))
        except ImageError as err:
            raise TrainError(str(err)) from None
        if min(rgb.shape[:2]) < min_side(resolution):
            raise TrainError(
                f"{path}: {rgb.shape[1]}x{rgb.shape[0]} px is too small for resolution {resolution} "
                f"(shorter side must be at least {min_side(resolution)} px)"
            )
        tensors.append(torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).float())
    return tensors


def augment(
    images: list[torch.Tensor], batch_size: int, resolution: int, generator: torch.Generator,
    min_crop: float = 0.7, flip: bool = True,
) -> torch.Tensor:
    """A batch of random square crops (side uniform in [min_crop, 1] × the shorter side, position uniform),
    resized to `resolution` (bilinear, antialiased) and mirrored with probability 1/2: (B, 3, R, R) in [0, 1].
    All randomness comes from `generator` (a CPU generator), so a batch is reproducible from its state."""
    draws = torch.rand(batch_size, 5, generator=generator)
    batch = []
    for d in draws:
        image = images[min(int(d[0] * len(images)), len(images) - 1)]
        height, width = image.shape[1:]
        short = min(height, width)
        side = max(1, round(short * (min_crop + (1 - min_crop) * d[1].item())))
        top = int(d[2] * (height - side + 1))
        left = int(d[3] * (width - side + 1))
        crop = image[:, top:top + side, left:left + side].unsqueeze(0)
        crop = F.interpolate(crop, size=(resolution, resolution), mode="bilinear", align_corners=False,
                             antialias=side > resolution)
        if flip and d[4] < 0.5:
            crop = crop.flip(-1)
        batch.append(crop.clamp(0, 1))
    return torch.cat(batch)


def ema_decay_at(update: int, ema_decay: float) -> float:
    """EMA decay at the `update`-th update (0-based): min(ema_decay, (1 + n) / (10 + n))."""
    return min(ema_decay, (1 + update) / (10 + update))


def _lr_at(step: int, config: TrainConfig) -> float:
    return config.lr * min(1.0, (step + 1) / max(1, config.warmup_steps))


def _load_checkpoint(path: Path, device) -> dict:
    """The training state in ``path``, read as tensors and plain Python values only (``weights_only=True``):
    a checkpoint is a pickle, and unpickling an arbitrary object runs code, so a file from elsewhere must not
    get that far. Raises TrainError (one line) on a file that is not a state this module wrote."""
    import pickle

    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise TrainError(f"{path}: not a training checkpoint this tool can load safely ({reason[:160]}); "
                         "delete it or train with --no-resume") from None
    if not isinstance(state, dict):
        raise TrainError(f"{path}: holds a {type(state).__name__}, not a training checkpoint; delete it or train "
                         "with --no-resume")
    try:
        stored.check(state, stored.TrainState, path, "delete it or train with --no-resume")
    except stored.StoredFileError as err:
        raise TrainError(str(err)) from None
    return state




def _atomic_save(obj, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temp:
        torch.save(obj, temp)


def train(
    data_dir: Path | str,
    out: Path | str,
    config: TrainConfig | None = None,
    resume: bool = True,
    command: str | None = None,
    on_step: Callable[[int, int, float], None] | None = None,
    on_resume: Callable[[int], None] | None = None,
    **overrides,
) -> TrainResult:
    """Train (or continue training) a DDPM on the images in `data_dir`; save a diffusers folder in `out`.

    Args:
        data_dir: folder of images (files directly in it; see ``load_training_images``).
        out: output folder; a checkpoint in it is resumed when `resume` (and refused if it was made with a
            different trajectory: resolution, batch size, learning rate, seed, architecture, ...).
        config: hyper-parameters; keyword `overrides` (``resolution=64, steps=500, ...``) replace its fields.
        command: recorded in the model card (default: this Python call).
        on_step: called after every step with (step done, total steps, loss).
        on_resume: called with the checkpoint's step when training continues from one.

    Returns a TrainResult. Raises TrainError (one line) on bad input.
    """
    from diffusers import DDPMPipeline, DDPMScheduler

    unknown = sorted(set(overrides) - set(TrainConfig.__dataclass_fields__))
    if unknown:
        raise TypeError(f"unknown training option(s): {', '.join(unknown)}")
    changes = {k: (tuple(v) if k == "channels" else v) for k, v in overrides.items() if v is not None}
    config = replace(config or TrainConfig(), **changes)
    config.validate()
    if command is None:
        given = ", ".join(f"{k}={v!r}" for k, v in asdict(config).items() if v != getattr(TrainConfig(), k))
        command = f"aaas_profile.train.train({str(data_dir)!r}, {str(out)!r}{', ' if given else ''}{given})"
    data_dir, out = Path(data_dir), Path(out)
    if out.exists() and not out.is_dir():
        raise TrainError(f"--out {out} is a file; give a folder for the model, e.g. models/NAME")
    if any((out / name).exists() for name in ("config.toml", "scores", "fit.json")):
        raise TrainError(f"--out {out} is a sweep's run folder; give a folder of its own for the model, e.g. "
                         "models/NAME")
    check_writable(out, "--out")  # before loading anything, not after training
    device = precision_mod.pick_device(config.device, TrainError)
    precision = precision_mod.choose_for_training(config.precision, device, TrainError)
    images = load_training_images(data_dir, config.resolution)

    torch.manual_seed(config.seed)
    unet = build_unet(config).to(device).train()
    ema = build_unet(config).to(device).eval().requires_grad_(False)
    ema.load_state_dict(unet.state_dict())
    optimizer = torch.optim.AdamW(unet.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scaler = torch.amp.GradScaler("cuda", enabled=precision == "fp16")
    scheduler = DDPMScheduler(**SCHEDULE)
    alphas_cumprod = scheduler.alphas_cumprod.to(device)
    generator = torch.Generator().manual_seed(config.seed)  # crops, flips, timesteps and noise

    state_path = out / CHECKPOINT
    if resume and not state_path.is_file() and _holds_model(out):
        raise TrainError(f"--out {out} holds a trained model and no checkpoint to resume; give a new folder, or "
                         "--no-resume to train it again from scratch and replace it")
    start, losses, seconds_before = 0, [], 0.0
    if resume and state_path.is_file():
        state = _load_checkpoint(state_path, device)
        if state["trajectory"] != config.trajectory():
            changed = sorted(k for k in config.trajectory() if state["trajectory"].get(k) != config.trajectory()[k])
            raise TrainError(
                f"{state_path}: checkpoint was trained with other settings ({', '.join(changed)}); use the same "
                "settings, another --out, or --no-resume to start over"
            )
        try:  # the tensors' names, shapes and dtypes: torch checks them against this architecture
            unet.load_state_dict(state["unet"])
            ema.load_state_dict(state["ema"])
            optimizer.load_state_dict(state["optimizer"])
            scaler.load_state_dict(state["scaler"])
            generator.set_state(state["generator"])
        except (RuntimeError, KeyError, ValueError, TypeError) as err:
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise TrainError(f"{state_path}: its weights or optimiser state do not fit this model ({reason[:160]}); "
                             "delete it or train with --no-resume") from None
        start, losses, seconds_before = state["step"], list(state["losses"]), state["seconds"]
    if start > config.steps:
        raise TrainError(f"{state_path}: checkpoint is at step {start}, beyond --steps {config.steps}")
    if start and on_resume is not None:  # said only once the resume is known to go ahead
        on_resume(start)

    autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    ema_params = list(ema.parameters())
    unet_params = list(unet.parameters())

    def save_checkpoint(step: int, seconds: float) -> None:
        _atomic_save({
            "step": step, "unet": unet.state_dict(), "ema": ema.state_dict(), "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict(), "generator": generator.get_state(), "losses": losses,
            "seconds": seconds, "trajectory": config.trajectory(),
        }, state_path)

    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / ".gitignore", "checkpoint/\n")
    t0 = time.perf_counter()
    step, stopped_early = start, False
    while step < config.steps:
        clean = augment(images, config.batch_size, config.resolution, generator, config.min_crop, config.flip)
        x0 = (clean * 2 - 1).to(device)
        t = torch.randint(0, SCHEDULE["num_train_timesteps"], (config.batch_size,), generator=generator)
        noise = torch.randn(x0.shape, generator=generator).to(device)
        t = t.to(device)
        a = alphas_cumprod[t].view(-1, 1, 1, 1)
        noisy = a.sqrt() * x0 + (1 - a).sqrt() * noise  # q(x_t | x_0), Ho et al. eq. 4
        for group in optimizer.param_groups:
            group["lr"] = _lr_at(step, config)
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            eps = unet(noisy, t).sample
        loss = F.mse_loss(eps.float(), noise)  # Ho et al. eq. 14
        if not torch.isfinite(loss):
            raise TrainError(f"loss became {loss.item()} at step {step + 1}; lower --lr")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(unet_params, config.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        with torch.no_grad():
            torch._foreach_lerp_(ema_params, unet_params, 1 - ema_decay_at(step, config.ema_decay))
        step += 1
        losses.append(loss.item())
        if on_step is not None:
            on_step(step, config.steps, losses[-1])
        elapsed = seconds_before + time.perf_counter() - t0
        out_of_time = config.time_limit_s is not None and time.perf_counter() - t0 >= config.time_limit_s
        if step % config.checkpoint_every == 0 or step == config.steps or out_of_time:
            save_checkpoint(step, elapsed)
        if out_of_time and step < config.steps:
            stopped_early = True
            break
    seconds = seconds_before + time.perf_counter() - t0
    if step == start and start > 0:  # nothing left to do: refresh the saved model from the checkpoint
        seconds = seconds_before

    # The pipeline folder: EMA weights in fp16 safetensors, the training schedule, model_index.json.
    saved = models.cast(build_unet(config), torch.float16)  # built in fp32, cast before any weights are in it
    saved.load_state_dict({k: v.detach().to("cpu", torch.float16) for k, v in ema.state_dict().items()})
    pipeline = DDPMPipeline(unet=saved, scheduler=scheduler)
    result = TrainResult(
        out=out, steps=step, loss=float(np.mean(losses[-100:])) if losses else math.nan, seconds=seconds,
        device=_device_name(device), precision=precision, parameters=sum(p.numel() for p in saved.parameters()),
        stopped_early=stopped_early, resumed_from=start,
    )
    _replace_model(out, pipeline, model_card(result, config, data_dir, images, losses, command))
    return result


# What a saved model consists of (the pipeline's files and its card); checkpoint/ and .gitignore are not.
_MODEL_ENTRIES = ("model_index.json", "unet", "scheduler", "README.md")


def _holds_model(out: Path) -> bool:
    return any((out / name).exists() for name in ("model_index.json", "unet", "config.json"))


def _replace_model(out: Path, pipeline, card: str) -> None:
    """Write the model as one set: the whole pipeline and its card go to a hidden folder beside the old model
    first, and only then replace the old model's entries, so a failure while saving leaves the previous model
    whole, and no file of an earlier model stays beside the new one."""
    import shutil
    import tempfile

    staging = Path(tempfile.mkdtemp(prefix=".model-", dir=out))
    try:
        pipeline.save_pretrained(staging, safe_serialization=True)
        (staging / "README.md").write_text(card, encoding="utf-8")
        for name in _MODEL_ENTRIES:
            old = out / name
            if old.is_dir():
                shutil.rmtree(old)
            elif old.exists():
                old.unlink()
            if (staging / name).exists():
                (staging / name).rename(old)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads)"


def model_card(
    result: TrainResult, config: TrainConfig, data_dir: Path, images: list[torch.Tensor], losses: list[float],
    command: str,
) -> str:
    """README.md of a trained model: front matter with the data's licence, then what was trained and how."""
    licence = data_licence(data_dir) or f"unknown (no licence line in {data_dir}/PROVENANCE.md)"
    sizes = sorted({(int(im.shape[2]), int(im.shape[1])) for im in images})
    size_text = ", ".join(f"{w}x{h}" for w, h in sizes[:4]) + (" ..." if len(sizes) > 4 else "")
    windows = [(i, float(np.mean(losses[max(0, i - 100):i]))) for i in (100, 250, 500, 1000, 2000, 5000, 10000)
               if i <= len(losses)]
    curve = ", ".join(f"step {i}: {v:.4f}" for i, v in windows)
    hyper = json.dumps(asdict(config), default=list)
    lines = [
        "---",
        f"license: {licence}",
        "library_name: diffusers",
        "pipeline_tag: unconditional-image-generation",
        "tags: [ddpm, aaas-profile]",
        "---",
        "",
        f"# {result.out.name}: a small DDPM trained by `aaas-profile train`",
        "",
        f"Unconditional DDPM (Ho et al. 2020), diffusers `UNet2DModel` with {result.parameters:,} parameters, "
        f"{config.resolution} x {config.resolution} px RGB, epsilon prediction, linear β schedule 1e-4…0.02 over "
        "1000 steps. `unet/` holds the EMA weights in fp16 safetensors.",
        "",
        f"- Data: `{data_dir.as_posix()}`, {len(images)} images ({size_text} px); licence: {licence}; see its "
        "PROVENANCE.md",
        f"- Augmentation: random square crops ({config.min_crop:g}–1 × the shorter side), resized to "
        f"{config.resolution} px (bilinear, antialiased), {'random left-right flips' if config.flip else 'no flips'}",
        f"- Steps: {result.steps} of batch {config.batch_size} ({result.steps * config.batch_size:,} examples)"
        + (" — stopped by the time limit" if result.stopped_early else ""),
        f"- Loss (mean of the previous 100 steps): {curve or 'n/a'}; final {result.loss:.4f}",
        f"- Optimiser: AdamW, lr {config.lr:g} (linear warm-up over {config.warmup_steps} steps, then constant), "
        f"gradient clipping {config.grad_clip:g}; EMA decay {config.ema_decay:g} (with warm-up)",
        f"- Time: {result.seconds / 60:.1f} min on {result.device}, {result.precision}",
        f"- Trained: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}, torch {torch.__version__}, "
        f"Python {platform.python_version()}",
        f"- Command: `{command}`",
        f"- Hyper-parameters: `{hyper}`",
        "",
        "Load it with `aaas_profile.models.load(PATH)` or `aaas-profile sweep --model PATH`.",
        "",
    ]
    return "\n".join(lines)
