"""Inpainting samplers over a ``UNet2DModel`` and the model's training noise schedule: RePaint, DDIM and
DPM-Solver++, each on diffusers' own scheduler, behind one interface (:class:`Sampler`).

* ``repaint``: RePaint (Lugmayr et al., CVPR 2022) with diffusers' ``RePaintScheduler``, resampling jumps
  included (``jump_length`` j, ``jump_n_sample`` r).
* ``ddim``: DDIM (Song, Meng & Ermon, ICLR 2021) with diffusers' ``DDIMScheduler``, eta = 0 (deterministic).
* ``dpm-solver``: DPM-Solver++ (Lu et al. 2022, arXiv:2211.01095), second-order multistep, with diffusers'
  ``DPMSolverMultistepScheduler``.

DDIM and DPM-Solver++ are unconditional samplers; they inpaint by the replacement method (the "imputation" of
Song et al., ICLR 2021, score-based SDEs, appendix): after every step the known region of the sample is replaced
by the original, forward-noised to the noise level that step reached, with fresh noise from the image's
generator (as RePaint does for its known part), so the UNet always sees the known pixels at its timestep's
noise level. The last step reaches the clean level, where the known region is the original exactly.

Mask convention (RePaint's): 1 = keep the known pixel, 0 = generate.

Batching: images with the same step count form one chain (one scheduler); all chains advance together, and
every UNet call takes, with a per-image timestep, each chain's images whose next event is a UNet call. A batch
of 10-, 50- and 250-step images costs max(calls) UNet invocations instead of their sum. Image i's noise comes
only from ``generators[i]`` (drawn in the same order as alone), so its output is the one it gets alone, up to
float rounding.

Models with learned variance (guided-diffusion's ``learn_sigma``, 6 output channels: epsilon, then the
interpolation v between log β and log β̃) are sampled with their epsilon half only. RePaintScheduler's update
draws its noise from ``eta`` and the fixed posterior variance β̃ (eta = 1: DDPM with σ² = β̃), so v is not used;
RePaint's own code instead samples with σ² = exp(v·log β + (1 − v)·log β̃) where v = (output + 1) / 2. DDIM
(eta = 0) and DPM-Solver++ need the mean only.

Cost: with resampling, RePaint's ``steps`` denoising steps cost more UNet calls than ``steps``. After every
``jump_length`` steps (except the last stretch) the chain is pushed ``jump_length`` steps back up and walked
down again, ``jump_n_sample − 1`` times. T = 250 with 10/10 costs 2,410 UNet calls; 1/1 turns it off. DDIM and
DPM-Solver++ cost one call a step.
"""

from __future__ import annotations

import inspect
import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, RePaintScheduler

from aaas_profile.errors import UserError


class SamplerError(UserError, ValueError):
    """An unknown sampler or sampler parameters that cannot run; the message is one line."""


@dataclass
class InpaintResult:
    images: torch.Tensor  # (N, 3, H, W) float32 in [0, 1], on the CPU
    unet_calls: list[int]  # UNet forward passes each image received


def make_generators(seeds: list[int], device) -> list[torch.Generator]:
    """One ``torch.Generator`` per image on ``device``, seeded with that image's seed."""
    return [torch.Generator(device).manual_seed(int(s)) for s in seeds]


def _scheduler(kind: type, schedule: dict, steps: int, **fixed):
    """A ``kind`` scheduler with the model's training noise schedule (the keys of ``schedule`` its constructor
    accepts) and ``fixed`` settings on top; raises SamplerError unless 1 ≤ steps ≤ its training steps."""
    accepted = inspect.signature(kind.__init__).parameters
    scheduler = kind(**{**{k: v for k, v in schedule.items() if k in accepted}, **fixed})
    train_steps = scheduler.config.num_train_timesteps
    if not 1 <= steps <= train_steps:
        raise SamplerError(f"steps must lie in 1..{train_steps}, got {steps}")
    return scheduler


class _Chain(ABC):
    """The images of one batch that share a step count, and their scheduler's walk through its timesteps."""

    def __init__(self, rows: torch.Tensor, generators: list[torch.Generator]):
        self.rows, self.generators, self.calls = rows, generators, 0

    @property
    @abstractmethod
    def done(self) -> bool: ...

    @property
    @abstractmethod
    def planned_calls(self) -> int:
        """UNet calls the whole walk takes, from the scheduler's timesteps."""

    @property
    @abstractmethod
    def timestep(self) -> int:
        """The timestep of the next UNet call."""

    @abstractmethod
    def before_call(self, sample: torch.Tensor) -> None:
        """Whatever the walk does without the UNet before its next call (RePaint: resampling jumps)."""

    @abstractmethod
    def denoise(self, sample: torch.Tensor, eps: torch.Tensor, known: torch.Tensor, keep: torch.Tensor) -> None:
        """One denoising step of these rows of ``sample`` (in place) with the UNet's epsilon for them."""


class Sampler(ABC):
    """An inpainting sampler: a scheduler's walk from noise to an image, the known region held to the original.

    ``jump_length`` and ``jump_n_sample`` are RePaint's j and r, 0 for the other samplers (their rows are no
    RePaint rows); ``params()`` holds any further parameters, recorded per row as canonical JSON
    (:func:`sampler_params_json`)."""

    name: ClassVar[str]
    jump_length: int = 0
    jump_n_sample: int = 0

    def params(self) -> dict:
        """Parameters beyond RePaint's jumps that change the output (JSON-able); {} when none."""
        return {}

    @abstractmethod
    def _chain(self, schedule: dict, steps: int, rows: torch.Tensor, generators: list[torch.Generator],
               device) -> _Chain: ...

    def unet_calls(self, steps: int, schedule: dict) -> int:
        """UNet forward passes one image costs at ``steps``, counted from the scheduler's own timesteps."""
        return self._chain(schedule, steps, torch.zeros(0, dtype=torch.long), [], "cpu").planned_calls

    def inpaint(
        self,
        unet: torch.nn.Module,
        schedule: dict,
        originals: torch.Tensor,
        masks: torch.Tensor,
        generators: list[torch.Generator],
        steps: int | list[int],
        on_call: Callable[[int], None] | None = None,
    ) -> InpaintResult:
        """Inpaint a batch; images may ask for different step counts and still share UNet calls.

        Args:
            unet: an epsilon-predicting ``UNet2DModel`` (any device and dtype; sampling runs on its device,
                the chains' state stays in float32 and only the UNet's input is cast to its dtype). A model
                with twice as many output channels (learned variance) contributes its first half, epsilon.
            schedule: the model's training noise schedule (``LoadedModel.scheduler_config``).
            originals: (N, 3, H, W) in [0, 1], the uncorrupted images.
            masks: (N, 1, H, W) of 0/1, 1 = keep.
            generators: one per image, on the UNet's device; image i's noise comes only from ``generators[i]``.
            steps: denoising steps T, one for all or one per image.
            on_call: called after every UNet forward with the number of images it took (progress bars).
        """
        n = originals.shape[0]
        if originals.ndim != 4 or originals.shape[1] != 3:
            raise ValueError(f"originals must be (N, 3, H, W), got {tuple(originals.shape)}")
        if masks.shape != (n, 1, *originals.shape[2:]):
            raise ValueError(f"masks must be (N, 1, H, W) matching originals, got {tuple(masks.shape)}")
        if len(generators) != n:
            raise ValueError(f"need one generator per image: {len(generators)} for {n} images")
        per_image = [steps] * n if isinstance(steps, int) else list(steps)
        if len(per_image) != n:
            raise ValueError(f"need one step count per image: {len(per_image)} for {n} images")
        parameter = next(unet.parameters())
        device, dtype = parameter.device, parameter.dtype

        channels = originals.shape[1]
        known = originals.to(device, torch.float32) * 2 - 1
        keep = masks.to(device, torch.float32)
        sample = torch.cat([torch.randn((1, *known.shape[1:]), generator=g, device=device) for g in generators])
        chains = []
        for t in sorted(set(per_image)):
            rows = [i for i, s in enumerate(per_image) if s == t]
            chains.append(self._chain(schedule, t, torch.tensor(rows, device=device),
                                      [generators[i] for i in rows], device))

        with torch.inference_mode():
            while True:
                for chain in chains:
                    chain.before_call(sample)
                active = [chain for chain in chains if not chain.done]
                if not active:
                    break
                rows = torch.cat([chain.rows for chain in active])
                t = torch.cat([torch.full((len(chain.rows),), chain.timestep, device=device) for chain in active])
                eps = unet(sample[rows].to(dtype), t).sample[:, :channels].float()
                offset = 0
                for chain in active:
                    chain.denoise(sample, eps[offset:offset + len(chain.rows)], known, keep)
                    chain.calls += 1
                    offset += len(chain.rows)
                if on_call is not None:
                    on_call(len(rows))
        images = (sample / 2 + 0.5).clamp(0, 1).cpu()
        calls = [0] * n
        for chain in chains:
            for i in chain.rows.tolist():
                calls[i] = chain.calls
        return InpaintResult(images=images, unet_calls=calls)


# ---- RePaint ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RePaintSampler(Sampler):
    """RePaint (Lugmayr et al., CVPR 2022) on diffusers' ``RePaintScheduler``. Defaults are RePaint's
    (j = r = 10) and diffusers' pipeline's (eta = 0). Its parameters are the jump columns and the run-level eta,
    so ``params()`` is {}."""

    name: ClassVar[str] = "repaint"
    jump_length: int = 10
    jump_n_sample: int = 10
    # 0 is diffusers' RePaintPipeline default (a DDIM-style update of the unknown part), which is what a
    # reproduction through diffusers measured; 1 is the DDPM posterior noise of RePaint's own code.
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
        return _RePaintChain(self.scheduler(schedule, steps, device=device), rows, generators)


class _RePaintChain(_Chain):
    """The RePaint timestep walk: UNet calls where t goes down, resampling jumps ("undo" steps, no UNet) where
    it goes up."""

    def __init__(self, scheduler: RePaintScheduler, rows, generators):
        super().__init__(rows, generators)
        self.scheduler = scheduler
        self.timesteps = scheduler.timesteps.tolist()
        self.position, self.t_last = 0, self.timesteps[0] + 1

    @property
    def done(self) -> bool:
        return self.position >= len(self.timesteps)

    @property
    def planned_calls(self) -> int:
        return sum(1 for prev, t in zip([self.timesteps[0] + 1, *self.timesteps], self.timesteps, strict=False)
                   if t < prev)

    @property
    def timestep(self) -> int:
        return self.timesteps[self.position]

    def before_call(self, sample):
        """Apply resampling jumps (noise up from t_last) until the next event is a UNet call."""
        while not self.done and self.timesteps[self.position] >= self.t_last:
            t = self.timesteps[self.position]
            sample[self.rows] = self.scheduler.undo_step(sample[self.rows], self.t_last, generator=self.generators)
            self.t_last, self.position = t, self.position + 1

    def denoise(self, sample, eps, known, keep):
        """x_t → x_(t−1): the scheduler updates the unknown part and noises the known part to t − 1 itself."""
        t, rows = self.timesteps[self.position], self.rows
        step = self.scheduler.step(eps, t, sample[rows], known[rows], keep[rows], generator=self.generators)
        sample[rows] = step.prev_sample
        self.t_last, self.position = t, self.position + 1


# ---- DDIM and DPM-Solver++ with the replacement method -----------------------------------------------------------

class _ReplacementChain(_Chain):
    """An unconditional scheduler's walk (one UNet call per timestep) with the known region replaced after
    every step by the original forward-noised to the step's target level (``scheduler.add_noise``, fresh noise
    from each image's generator), and by the original itself after the last step (the clean level)."""

    def __init__(self, scheduler, rows, generators):
        super().__init__(rows, generators)
        self.scheduler = scheduler
        self.timesteps = scheduler.timesteps.tolist()
        self.position = 0

    @property
    def done(self) -> bool:
        return self.position >= len(self.timesteps)

    @property
    def planned_calls(self) -> int:
        return len(self.timesteps)

    @property
    def timestep(self) -> int:
        return self.timesteps[self.position]

    def before_call(self, sample):
        """Nothing: every step of these schedulers is a UNet call."""

    def denoise(self, sample, eps, known, keep):
        rows = self.rows
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
            noise = torch.cat([torch.randn((1, *known.shape[1:]), generator=g, device=known.device)
                               for g in self.generators])
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


SAMPLERS: dict[str, type[Sampler]] = {s.name: s for s in (RePaintSampler, DDIMSampler, DPMSolverSampler)}


def make_sampler(name: str, *, jump_length: int = 10, jump_n_sample: int = 10, eta: float = 0.0) -> Sampler:
    """The sampler ``name`` (a key of SAMPLERS). RePaint takes the jumps and eta; DDIM (eta = 0 fixed) and
    DPM-Solver++ (deterministic) have no use for them and ignore them."""
    if name == RePaintSampler.name:
        return RePaintSampler(jump_length, jump_n_sample, eta)
    if name not in SAMPLERS:
        raise SamplerError(f"unknown sampler '{name}': choose from {', '.join(SAMPLERS)}")
    return SAMPLERS[name]()


def sampler_params_json(sampler: Sampler) -> str:
    """``sampler.params()`` as canonical JSON (sorted keys, no spaces); "{}" when it has none."""
    return json.dumps(sampler.params(), sort_keys=True, separators=(",", ":"))
