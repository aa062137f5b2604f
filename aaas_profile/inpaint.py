"""RePaint inpainting (Lugmayr et al., CVPR 2022) with diffusers' ``RePaintScheduler`` and a ``UNet2DModel``.

The project owns the sampling loop rather than calling diffusers' ``RePaintPipeline``: that pipeline sits in
diffusers' deprecated folder, warns on every call, and feeds one generator to the whole batch, so a cell's
output would depend on what else shares its batch. Here every cell has its own generator, seeded from the
cell, so a batched sweep gives the same images as one cell at a time (up to float rounding).

Mask convention (RePaint's): 1 = keep the known pixel, 0 = generate. At the last step the scheduler sets the
known region to the original exactly (its ᾱ is 1 there), so known pixels come out unchanged.

Models with learned variance (guided-diffusion's ``learn_sigma``, 6 output channels: epsilon, then the
interpolation v between log β and log β̃) are sampled with their epsilon half only. RePaintScheduler's update
draws its noise from ``eta`` and the fixed posterior variance β̃ (eta = 1: DDPM with σ² = β̃), so v is not used;
RePaint's own code instead samples with σ² = exp(v·log β + (1 − v)·log β̃) where v = (output + 1) / 2.

Cost: with resampling, ``steps`` denoising steps cost more UNet calls than ``steps``. After every
``jump_length`` steps (except the last stretch) the chain is pushed ``jump_length`` steps back up and walked
down again, ``jump_n_sample − 1`` times. T = 250 with 10/10 costs 2,410 UNet calls; 1/1 turns it off.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

import torch
from diffusers import RePaintScheduler


@dataclass(frozen=True)
class RePaintConfig:
    """Sampler settings. Defaults are RePaint's (j = r = 10) and diffusers' pipeline's (eta = 0)."""

    jump_length: int = 10
    jump_n_sample: int = 10
    # 0 is diffusers' RePaintPipeline default (a DDIM-style update of the unknown part), which is what a
    # reproduction through diffusers measured; 1 is the DDPM posterior noise of RePaint's own code.
    eta: float = 0.0

    def __post_init__(self):
        if self.jump_length < 1 or self.jump_n_sample < 1:
            raise ValueError(f"jump_length and jump_n_sample must be ≥ 1, got {self.jump_length}/{self.jump_n_sample}")
        if not 0.0 <= self.eta <= 1.0:
            raise ValueError(f"eta must lie in [0, 1], got {self.eta}")


def make_scheduler(schedule: dict, steps: int, config: RePaintConfig, device=None) -> RePaintScheduler:
    """A ``RePaintScheduler`` with the model's training noise schedule, set to ``steps`` inference steps."""
    accepted = inspect.signature(RePaintScheduler.__init__).parameters
    params = {k: v for k, v in schedule.items() if k in accepted}
    scheduler = RePaintScheduler(**{**params, "eta": config.eta})
    train_steps = scheduler.config.num_train_timesteps
    if not 1 <= steps <= train_steps:
        raise ValueError(f"steps must lie in 1..{train_steps}, got {steps}")
    scheduler.set_timesteps(steps, config.jump_length, config.jump_n_sample, device=device)
    return scheduler


def unet_calls(steps: int, config: RePaintConfig, schedule: dict | None = None) -> int:
    """UNet forward passes one image costs at ``steps`` with ``config``'s resampling (counted from the
    scheduler's own timestep sequence: a call wherever t goes down)."""
    timesteps = make_scheduler(schedule or {}, steps, config).timesteps.tolist()
    return sum(1 for prev, t in zip([timesteps[0] + 1, *timesteps], timesteps, strict=False) if t < prev)


@dataclass
class InpaintResult:
    images: torch.Tensor  # (N, 3, H, W) float32 in [0, 1], on the CPU
    unet_calls: list[int]  # UNet forward passes each image received


class _Chain:
    """The RePaint timestep walk of the images that share one step count: which UNet calls and which
    resampling jumps ("undo" steps, no UNet) come next."""

    def __init__(self, scheduler: RePaintScheduler, rows: torch.Tensor):
        self.scheduler, self.rows = scheduler, rows
        self.timesteps = scheduler.timesteps.tolist()
        self.position, self.t_last, self.calls = 0, self.timesteps[0] + 1, 0

    @property
    def done(self) -> bool:
        return self.position >= len(self.timesteps)

    def undo_until_call(self, sample: torch.Tensor, generators: list[torch.Generator]) -> None:
        """Apply resampling jumps (noise up from t_last) until the next event is a UNet call."""
        while not self.done and self.timesteps[self.position] >= self.t_last:
            t = self.timesteps[self.position]
            sample[self.rows] = self.scheduler.undo_step(sample[self.rows], self.t_last, generator=generators)
            self.t_last, self.position = t, self.position + 1

    def denoise(self, sample, eps, known, keep, generators) -> None:
        """One denoising step x_t → x_(t−1) with the UNet's epsilon for these rows."""
        t, rows = self.timesteps[self.position], self.rows
        step = self.scheduler.step(eps, t, sample[rows], known[rows], keep[rows], generator=generators)
        sample[rows] = step.prev_sample
        self.t_last, self.position, self.calls = t, self.position + 1, self.calls + 1


def inpaint(
    unet: torch.nn.Module,
    schedule: dict,
    originals: torch.Tensor,
    masks: torch.Tensor,
    seeds: list[int],
    steps: int | list[int],
    config: RePaintConfig = RePaintConfig(),
    on_call: Callable[[int], None] | None = None,
) -> InpaintResult:
    """Inpaint a batch with RePaint; images may ask for different step counts and still share UNet calls.

    Images with the same step count form one chain (one scheduler); all chains advance together, and every
    UNet call takes, with a per-image timestep, each chain's images whose next event is a denoising step.
    Resampling jumps need no UNet and happen per chain in between. So a batch of 10-, 50- and 250-step
    images costs max(calls) UNet invocations instead of their sum, and each image's output is the one it
    would get alone (same generator, same draws in the same order), up to float rounding.

    Args:
        unet: an epsilon-predicting ``UNet2DModel`` (any device and dtype; sampling runs on its device,
            the chain's state stays in float32 and only the UNet's input is cast to its dtype). A model
            with twice as many output channels (learned variance) contributes its first half, epsilon.
        schedule: the model's training noise schedule (``LoadedModel.scheduler_config``).
        originals: (N, 3, H, W) in [0, 1], the uncorrupted images.
        masks: (N, 1, H, W) of 0/1, 1 = keep.
        seeds: one seed per image; image i's noise comes only from ``seeds[i]``.
        steps: denoising steps T, one for all or one per image.
        on_call: called after every UNet forward with the number of images it took (progress bars).
    """
    n = originals.shape[0]
    if originals.ndim != 4 or originals.shape[1] != 3:
        raise ValueError(f"originals must be (N, 3, H, W), got {tuple(originals.shape)}")
    if masks.shape != (n, 1, *originals.shape[2:]):
        raise ValueError(f"masks must be (N, 1, H, W) matching originals, got {tuple(masks.shape)}")
    if len(seeds) != n:
        raise ValueError(f"need one seed per image: {len(seeds)} seeds for {n} images")
    per_image = [steps] * n if isinstance(steps, int) else list(steps)
    if len(per_image) != n:
        raise ValueError(f"need one step count per image: {len(per_image)} for {n} images")
    parameter = next(unet.parameters())
    device, dtype = parameter.device, parameter.dtype

    channels = originals.shape[1]
    known = originals.to(device, torch.float32) * 2 - 1
    keep = masks.to(device, torch.float32)
    generators = [torch.Generator(device).manual_seed(int(s)) for s in seeds]
    sample = torch.cat([torch.randn((1, *known.shape[1:]), generator=g, device=device) for g in generators])
    chains = [
        _Chain(make_scheduler(schedule, t, config, device=device),
               torch.tensor([i for i, s in enumerate(per_image) if s == t], device=device))
        for t in sorted(set(per_image))
    ]
    chain_generators = [[generators[i] for i in chain.rows.tolist()] for chain in chains]

    with torch.inference_mode():
        while True:
            for chain, gens in zip(chains, chain_generators, strict=True):
                chain.undo_until_call(sample, gens)
            active = [(chain, gens) for chain, gens in zip(chains, chain_generators, strict=True) if not chain.done]
            if not active:
                break
            rows = torch.cat([chain.rows for chain, _ in active])
            t = torch.cat([torch.full((len(chain.rows),), chain.timesteps[chain.position], device=device)
                           for chain, _ in active])
            eps = unet(sample[rows].to(dtype), t).sample[:, :channels].float()
            offset = 0
            for chain, gens in active:
                chain.denoise(sample, eps[offset:offset + len(chain.rows)], known, keep, gens)
                offset += len(chain.rows)
            if on_call is not None:
                on_call(len(rows))
    images = (sample / 2 + 0.5).clamp(0, 1).cpu()
    calls = [0] * n
    for chain in chains:
        for i in chain.rows.tolist():
            calls[i] = chain.calls
    return InpaintResult(images=images, unet_calls=calls)
