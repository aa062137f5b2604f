"""TEMPORARY adapter (branch samplers-sweep only, removed before its final commit): the interface of
/work/notes/sampler-interface.md, so the sweep's plumbing can be tested before branch samplers-core is ready.
The real module is samplers-core's."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from typing import ClassVar

import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

from aaas_profile import inpaint as inpaint_mod
from aaas_profile.errors import UserError


class SamplerError(UserError, ValueError):
    """Unknown sampler or bad parameters."""


class Sampler(ABC):
    name: ClassVar[str]
    jump_length: int = 0
    jump_n_sample: int = 0

    def params(self) -> dict:
        return {}

    @abstractmethod
    def unet_calls(self, steps: int, schedule: dict) -> int: ...

    @abstractmethod
    def inpaint(self, unet, schedule, originals, masks, generators, steps, on_call=None): ...


class RePaintSampler(Sampler):
    name = "repaint"

    def __init__(self, jump_length=10, jump_n_sample=10, eta=0.0):
        self.config = inpaint_mod.RePaintConfig(jump_length, jump_n_sample, eta)
        self.jump_length, self.jump_n_sample = jump_length, jump_n_sample

    def unet_calls(self, steps, schedule):
        return inpaint_mod.unet_calls(steps, self.config, schedule)

    def inpaint(self, unet, schedule, originals, masks, generators, steps, on_call=None):
        seeds = [g.initial_seed() for g in generators]  # fresh generators only: enough for the adapter
        return inpaint_mod.inpaint(unet, schedule, originals, masks, seeds, steps, self.config, on_call=on_call)


class _Replacement(Sampler):
    scheduler_class: ClassVar[type]
    extra: ClassVar[dict] = {}

    def _scheduler(self, schedule, steps, device=None):
        accepted = self.scheduler_class.from_config({}).config.keys()
        params = {k: v for k, v in schedule.items() if k in accepted}
        scheduler = self.scheduler_class(**{**params, **self.extra})
        scheduler.set_timesteps(steps, device=device)
        return scheduler

    def unet_calls(self, steps, schedule):
        return len(self._scheduler(schedule, steps).timesteps)

    def inpaint(self, unet, schedule, originals, masks, generators, steps, on_call=None):
        n = originals.shape[0]
        per_image = [steps] * n if isinstance(steps, int) else list(steps)
        parameter = next(unet.parameters())
        device, dtype = parameter.device, parameter.dtype
        known = originals.to(device, torch.float32) * 2 - 1
        keep = masks.to(device, torch.float32)
        out = torch.empty_like(known)
        calls = [0] * n
        with torch.inference_mode():
            for t_count in sorted(set(per_image)):
                rows = [i for i, s in enumerate(per_image) if s == t_count]
                gens = [generators[i] for i in rows]
                scheduler = self._scheduler(schedule, t_count, device)
                shape = (1, *known.shape[1:])
                sample = torch.cat([torch.randn(shape, generator=g, device=device) for g in gens])
                timesteps = scheduler.timesteps.tolist()
                for position, t in enumerate(timesteps):
                    noise = torch.cat([torch.randn(shape, generator=g, device=device) for g in gens])
                    noised = scheduler.add_noise(known[rows], noise, torch.tensor([t] * len(rows), device=device))
                    sample = keep[rows] * noised + (1 - keep[rows]) * sample
                    eps = unet(sample.to(dtype), torch.full((len(rows),), t, device=device)).sample[:, :3].float()
                    sample = scheduler.step(eps, t, sample).prev_sample
                    if on_call is not None:
                        on_call(len(rows))
                    del position
                out[rows] = keep[rows] * known[rows] + (1 - keep[rows]) * sample
                for i in rows:
                    calls[i] = len(timesteps)
        return inpaint_mod.InpaintResult(images=(out / 2 + 0.5).clamp(0, 1).cpu(), unet_calls=calls)


class DDIMSampler(_Replacement):
    name = "ddim"
    scheduler_class = DDIMScheduler
    extra = {"clip_sample": False}


class DPMSolverSampler(_Replacement):
    name = "dpm-solver"
    scheduler_class = DPMSolverMultistepScheduler
    extra = {"algorithm_type": "dpmsolver++", "solver_order": 2}

    def params(self):
        return {"algorithm_type": "dpmsolver++", "solver_order": 2}


SAMPLERS: dict[str, type[Sampler]] = {"repaint": RePaintSampler, "ddim": DDIMSampler, "dpm-solver": DPMSolverSampler}


def make_sampler(name: str, *, jump_length=10, jump_n_sample=10, eta=0.0) -> Sampler:
    if name not in SAMPLERS:
        raise SamplerError(f"unknown sampler '{name}': choose from {', '.join(SAMPLERS)}")
    if name == "repaint":
        try:
            return RePaintSampler(jump_length, jump_n_sample, eta)
        except ValueError as err:
            raise SamplerError(str(err)) from None
    return SAMPLERS[name]()


def sampler_params_json(sampler: Sampler) -> str:
    return json.dumps(sampler.params(), sort_keys=True, separators=(",", ":"))
