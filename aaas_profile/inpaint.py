"""diffusers' RePaint inpainting by seeds: the earlier interface of the sampler, kept for its callers; the sampling
itself lives in :mod:`aaas_profile.samplers` (``DiffusersRePaintSampler``, sampler ``repaint-diffusers``), which
this module only delegates to.

The project owns the sampling loop rather than calling diffusers' ``RePaintPipeline``: that pipeline sits in
diffusers' deprecated folder, warns on every call, and feeds one generator to the whole batch, so a cell's
output would depend on what else shares its batch. Here every cell has its own generator, seeded from the
cell, so a batched sweep gives the same images as one cell at a time (up to float rounding).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from diffusers import RePaintScheduler

from aaas_profile.samplers import DiffusersRePaintSampler, InpaintResult, make_generators

# The RePaint sampler is its settings (jump_length, jump_n_sample, eta; RePaint's and diffusers' defaults).
RePaintConfig = DiffusersRePaintSampler
DEFAULT = RePaintConfig()

__all__ = ["InpaintResult", "RePaintConfig", "inpaint", "make_scheduler", "unet_calls"]


def make_scheduler(schedule: dict, steps: int, config: RePaintConfig, device=None) -> RePaintScheduler:
    """A ``RePaintScheduler`` with the model's training noise schedule, set to ``steps`` inference steps."""
    return config.scheduler(schedule, steps, device=device)


def unet_calls(steps: int, config: RePaintConfig, schedule: dict | None = None) -> int:
    """UNet forward passes one image costs at ``steps`` with ``config``'s resampling (counted from the
    scheduler's own timestep sequence: a call wherever t goes down)."""
    return config.unet_calls(steps, schedule or {})


def inpaint(
    unet: torch.nn.Module,
    schedule: dict,
    originals: torch.Tensor,
    masks: torch.Tensor,
    seeds: list[int],
    steps: int | list[int],
    config: RePaintConfig = DEFAULT,
    on_call: Callable[[int], None] | None = None,
) -> InpaintResult:
    """Inpaint a batch with RePaint, image i's noise from a generator seeded with ``seeds[i]`` on the UNet's
    device; see ``samplers.Sampler.inpaint`` for the arguments and the batching."""
    generators = make_generators(seeds, next(unet.parameters()).device)
    return config.inpaint(unet, schedule, originals, masks, generators, steps, on_call=on_call)
