"""The samplers on diffusers' schedulers: RePaint on ``RePaintScheduler`` (``repaint-diffusers``), and DDIM and
DPM-Solver++ with the replacement method (``ddim``, ``dpm-solver``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, RePaintScheduler

from aaas_profile.samplers.base import Sampler, SamplerError, _Chain, _draw, _scheduler, _SchedulerChain


@dataclass(frozen=True)
class DiffusersRePaintSampler(Sampler):
    """RePaint on diffusers' ``RePaintScheduler`` (what ``RePaintPipeline`` runs). Defaults are RePaint's
    (j = r = 10) and diffusers' pipeline's (eta = 0). Its parameters are the jump columns and the run-level eta,
    so ``params()`` is {}. The "steps" walk only (respacing None)."""

    name: ClassVar[str] = "repaint-diffusers"
    jump_length: int = 10
    jump_n_sample: int = 10
    # 0 is diffusers' RePaintPipeline default (a DDIM-style update of the unknown part), which is what a
    # reproduction through diffusers measured; 1 is DDPM noise with the fixed posterior variance β̃.
    eta: float = 0.0

    def __post_init__(self):
        if self.jump_length < 1 or self.jump_n_sample < 1:
            raise SamplerError(f"jump_length and jump_n_sample must be ≥ 1, got {self.jump_length}/"
                               f"{self.jump_n_sample}")
        if not 0.0 <= self.eta <= 1.0:
            raise SamplerError(f"eta must lie in [0, 1], got {self.eta}")

    def scheduler(self, schedule: dict, steps: int, device=None) -> RePaintScheduler:
        """A ``RePaintScheduler`` with the model's training noise schedule, set to ``steps`` inference steps."""
        scheduler = _scheduler(RePaintScheduler, schedule, steps, eta=self.eta)
        scheduler.set_timesteps(steps, self.jump_length, self.jump_n_sample, device=device)
        return scheduler

    def _chain(self, schedule, steps, rows, generators, device) -> _Chain:
        return _DiffusersRePaintChain(self.scheduler(schedule, steps, device=device), rows, generators)


class _DiffusersRePaintChain(_SchedulerChain):
    """The RePaintScheduler's timestep walk: UNet calls where t goes down, resampling jumps ("undo" steps, no
    UNet) where it goes up."""

    def __init__(self, scheduler: RePaintScheduler, rows, generators):
        super().__init__(scheduler, rows, generators)
        self.t_last = self.timesteps[0] + 1

    @property
    def planned_calls(self) -> int:
        return sum(1 for prev, t in zip([self.timesteps[0] + 1, *self.timesteps], self.timesteps, strict=False)
                   if t < prev)

    def before_call(self, sample, known, keep):
        """Apply resampling jumps (noise up from t_last) until the next event is a UNet call."""
        while not self.done and self.timesteps[self.position] >= self.t_last:
            t = self.timesteps[self.position]
            sample[self.rows] = self.scheduler.undo_step(sample[self.rows], self.t_last, generator=self.generators)
            self.t_last, self.position = t, self.position + 1

    def denoise(self, sample, output, known, keep):
        """x_t → x_(t−1): the scheduler updates the unknown part and noises the known part to t − 1 itself."""
        t, rows = self.timesteps[self.position], self.rows
        eps = output[:, :sample.shape[1]]
        step = self.scheduler.step(eps, t, sample[rows], known[rows], keep[rows], generator=self.generators)
        sample[rows] = step.prev_sample
        self.t_last, self.position = t, self.position + 1


# ---- DDIM and DPM-Solver++ with the replacement method -----------------------------------------------------------

class _ReplacementChain(_SchedulerChain):
    """An unconditional scheduler's walk (one UNet call per timestep) with the known region replaced after
    every step by the original forward-noised to the step's target level (``scheduler.add_noise``, fresh noise
    from each image's generator), and by the original itself after the last step (the clean level)."""

    @property
    def planned_calls(self) -> int:
        return len(self.timesteps)

    def before_call(self, sample, known, keep):
        """Nothing: every step of these schedulers is a UNet call."""

    def denoise(self, sample, output, known, keep):
        rows, eps = self.rows, output[:, :sample.shape[1]]
        # DPM-Solver++ keeps its model outputs (x0 predictions) of earlier steps. They were computed from the
        # samples the UNet saw, i.e. after replacement, which is what they predict from; and the solver's update
        # is elementwise (a per-pixel combination of the sample and the stored predictions), so the generated
        # pixels' update reads only generated pixels, which replacement never touches. The known pixels'
        # update, which would mix in predictions of the replaced region, is thrown away by the replacement
        # below. So the stored history needs no correction.
        unknown = self.scheduler.step(eps, self.timesteps[self.position], sample[rows]).prev_sample
        self.position += 1
        if self.done:
            target = known[rows]
        else:
            noise = _draw(self.generators, tuple(known.shape[1:]), known.device)
            level = torch.full((len(rows),), self.timesteps[self.position], device=known.device)
            target = self.scheduler.add_noise(known[rows], noise, level)
        sample[rows] = keep[rows] * target + (1 - keep[rows]) * unknown


@dataclass(frozen=True)
class DDIMSampler(Sampler):
    """DDIM (Song, Meng & Ermon, ICLR 2021) on diffusers' ``DDIMScheduler`` with eta = 0 (deterministic: the
    only noise is the starting sample and the known region's), inpainting by replacement.

    Timesteps are the scheduler's "leading" spacing, the same as RePaint's: T − T/steps … 0 (950 … 0 at 20 of
    1000). ``set_alpha_to_one`` is pinned: the last step goes to ᾱ = 1, the clean image, whatever the
    schedule says."""

    name: ClassVar[str] = "ddim"

    def scheduler(self, schedule: dict, steps: int, device=None) -> DDIMScheduler:
        scheduler = _scheduler(DDIMScheduler, schedule, steps, set_alpha_to_one=True)
        scheduler.set_timesteps(steps, device=device)
        return scheduler

    def _chain(self, schedule, steps, rows, generators, device) -> _Chain:
        return _ReplacementChain(self.scheduler(schedule, steps, device=device), rows, generators)


@dataclass(frozen=True)
class DPMSolverSampler(Sampler):
    """DPM-Solver++ (Lu et al. 2022, "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion Probabilistic
    Models", arXiv:2211.01095), second-order multistep, on diffusers' ``DPMSolverMultistepScheduler``,
    inpainting by replacement.

    Timesteps are the scheduler's default "linspace" spacing: 999 … about T/steps (999, 899, …, 100 at 10 of
    1000), then a last step to σ = 0. ``final_sigmas_type="zero"`` and ``lower_order_final=True`` (diffusers'
    defaults, pinned here) make that last step first order and land on the clean image (the x0 prediction)."""

    name: ClassVar[str] = "dpm-solver"
    algorithm_type: ClassVar[str] = "dpmsolver++"
    solver_order: ClassVar[int] = 2

    def params(self) -> dict:
        return {"algorithm_type": self.algorithm_type, "solver_order": self.solver_order}

    def scheduler(self, schedule: dict, steps: int, device=None) -> DPMSolverMultistepScheduler:
        scheduler = _scheduler(DPMSolverMultistepScheduler, schedule, steps, algorithm_type=self.algorithm_type,
                               solver_order=self.solver_order, final_sigmas_type="zero", lower_order_final=True)
        scheduler.set_timesteps(steps, device=device)
        timesteps = scheduler.timesteps.tolist()
        if len(set(timesteps)) < len(timesteps):  # linspace rounding at steps = T: a step of length 0, h = 0
            raise SamplerError(f"dpm-solver cannot take {steps} steps: its timesteps would repeat one (a step of "
                               f"length 0, which the solver divides by); use at most {len(timesteps) - 1}")
        return scheduler

    def _chain(self, schedule, steps, rows, generators, device) -> _Chain:
        return _ReplacementChain(self.scheduler(schedule, steps, device=device), rows, generators)
