"""Inpainting samplers over a ``UNet2DModel`` and the model's training noise schedule, behind one interface
(:class:`Sampler`).

* ``repaint``: RePaint (Lugmayr et al., CVPR 2022) as its authors' code runs it, written here from the paper's
  Algorithm 1 and the schedule described in ``docs/samplers.md``: guided-diffusion's respaced grid, the
  resampling walk over its indices (``jump_length`` j, ``jump_n_sample`` r), the DDPM posterior with the
  model's own variance (learned range for 6-channel models, the scheduler config's fixed variance otherwise),
  x0 clipped to [−1, 1], the exact undo β′ₖ on jumps, separate noise for the known and the unknown part.
* ``repaint-diffusers``: diffusers' ``RePaintScheduler`` (what ``RePaintPipeline`` runs, bit for bit): the
  "steps" walk over diffusers' "leading" timesteps, eta (0 by default: a DDIM-like update), one noise draw
  per step for both parts, and its own undo (which re-noises with β one stride off).
* ``ddim``: DDIM (Song, Meng & Ermon, ICLR 2021) with diffusers' ``DDIMScheduler``, eta = 0 (deterministic).
* ``dpm-solver``: DPM-Solver++ (Lu et al. 2022, arXiv:2211.01095), second-order multistep, with diffusers'
  ``DPMSolverMultistepScheduler``.

The x axis (``respacing``). ``repaint`` walks a fixed N-step respaced grid (N = ``respacing``, 250 by default,
as in the authors' sweeps): ``steps`` is RePaint's t_T, the grid index below which the chain starts from pure
noise (t_T = 10 on N = 250 starts at training timestep 36). ``respacing=None`` is the "steps" walk: a
``steps``-step grid walked from its top (N = t_T = steps), which is what the other three samplers always do,
each on its own scheduler's grid. ``ddim``, ``dpm-solver`` and ``repaint-diffusers`` refuse an integer
respacing: diffusers' DDIM and RePaint schedulers derive every step's previous timestep from one uniform stride
(T // steps), so they cannot walk guided-diffusion's uneven grid (strides of 4 and 5 at N = 250) without a new
update rule, and DPM-Solver++ would need custom timesteps and a start from pure noise at a low timestep; each
is a new sampler with its own tests, not a setting, so they stay on the "steps" walk.

DDIM and DPM-Solver++ are unconditional samplers; they inpaint by the replacement method (the "imputation" of
Song et al., ICLR 2021, score-based SDEs, appendix): after every step the known region of the sample is replaced
by the original, forward-noised to the noise level that step reached, with fresh noise from the image's
generator (as RePaint does for its known part), so the UNet always sees the known pixels at its timestep's
noise level. The last step reaches the clean level, where the known region is the original exactly.

Mask convention (RePaint's): 1 = keep the known pixel, 0 = generate.

Batching: images with the same step count form one chain; all chains advance together, and every UNet call
takes, with a per-image timestep, each chain's images whose next event is a UNet call. A batch of 10-, 50- and
250-step images costs max(calls) UNet invocations instead of their sum. Image i's noise comes only from
``generators[i]`` (drawn in the same order as alone), so its output is the one it gets alone, up to float
rounding.

Models with learned variance (guided-diffusion's ``learn_sigma``, 6 output channels: epsilon, then v): ``repaint``
samples with σ² = exp(f·log β′ₖ + (1 − f)·log β̃ₖ), f = (v + 1)/2 (``variance_type`` "learned" in the
scheduler config: σ² = exp(v)). The other samplers use the epsilon half only (diffusers' RePaintScheduler draws
its noise from eta and β̃; DDIM at eta = 0 and DPM-Solver++ need the mean only).

Cost: with resampling, RePaint's t_T denoising steps cost more UNet calls than t_T: t_T + (r − 1)·j·#{jump
points}, jump points every j indices below t_T − j. t_T = 250 with 10/10 costs 2,410; 1/1 turns it off.
``repaint-diffusers`` counts the same way on its own timesteps. DDIM and DPM-Solver++ cost one call a step.
"""

from __future__ import annotations

import inspect
import json
import math
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


def _draw(generators: list[torch.Generator], shape: tuple[int, ...], device) -> torch.Tensor:
    """One standard normal draw of ``shape`` per image, image i's from ``generators[i]``, stacked."""
    return torch.cat([torch.randn((1, *shape), generator=g, device=device) for g in generators])


def _scheduler(kind: type, schedule: dict, steps: int, **fixed):
    """A ``kind`` scheduler with the model's training noise schedule (the keys of ``schedule`` its constructor
    accepts) and ``fixed`` settings on top; raises SamplerError unless 1 ≤ steps ≤ its training steps."""
    accepted = inspect.signature(kind.__init__).parameters
    scheduler = kind(**{**{k: v for k, v in schedule.items() if k in accepted}, **fixed})
    train_steps = scheduler.config.num_train_timesteps
    if not 1 <= steps <= train_steps:
        raise SamplerError(f"steps must lie in 1..{train_steps}, got {steps} (the model was trained with "
                           f"{train_steps} steps)")
    return scheduler


class _Chain(ABC):
    """The images of one batch that share a step count (``rows``, their ``generators``) and their walk from
    noise to an image; ``calls`` counts the UNet calls made so far."""

    def __init__(self, rows: torch.Tensor, generators: list[torch.Generator]):
        self.rows, self.generators = rows, generators
        self.calls = 0

    @property
    @abstractmethod
    def done(self) -> bool:
        """Whether the walk has reached the image."""

    @property
    @abstractmethod
    def timestep(self) -> int:
        """The training timestep the UNet is told at the next call (valid after ``before_call``)."""

    @property
    @abstractmethod
    def planned_calls(self) -> int:
        """UNet calls the whole walk takes."""

    @abstractmethod
    def before_call(self, sample: torch.Tensor, known: torch.Tensor, keep: torch.Tensor) -> None:
        """Whatever the walk does without the UNet before its next call (RePaint: resampling jumps, known
        region)."""

    @abstractmethod
    def denoise(self, sample: torch.Tensor, output: torch.Tensor, known: torch.Tensor, keep: torch.Tensor) -> None:
        """One denoising step of these rows of ``sample`` (in place) with the UNet's output for them (epsilon,
        or epsilon then the variance half for a learned-variance model)."""


class _SchedulerChain(_Chain):
    """A walk through a diffusers scheduler's timesteps: ``position`` is the next event."""

    def __init__(self, scheduler, rows, generators):
        super().__init__(rows, generators)
        self.scheduler = scheduler
        self.timesteps: list[int] = scheduler.timesteps.tolist()
        self.position = 0

    @property
    def done(self) -> bool:
        return self.position >= len(self.timesteps)

    @property
    def timestep(self) -> int:
        return self.timesteps[self.position]


class Sampler(ABC):
    """An inpainting sampler: a walk from noise to an image, the known region held to the original.

    ``jump_length`` and ``jump_n_sample`` are RePaint's j and r, 0 for the other samplers (their rows are no
    RePaint rows); ``respacing`` is the grid the walk runs on (an integer N: the N-step respaced grid walked
    from t_T = steps; None: the "steps" walk, a grid of ``steps`` steps from its top); ``params()`` holds any
    further parameters, recorded per row as canonical JSON (:func:`sampler_params_json`)."""

    name: ClassVar[str]
    jump_length: int = 0
    jump_n_sample: int = 0
    respacing: int | None = None

    def params(self) -> dict:
        """Parameters beyond RePaint's jumps and the respacing that change the output (JSON-able); {} when none."""
        return {}

    @abstractmethod
    def _chain(self, schedule: dict, steps: int, rows: torch.Tensor, generators: list[torch.Generator],
               device) -> _Chain: ...

    def unet_calls(self, steps: int, schedule: dict) -> int:
        """UNet forward passes one image costs at ``steps``, counted from the walk itself."""
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
                with twice as many output channels has learned variance (see the module docstring).
            schedule: the model's training noise schedule (``LoadedModel.scheduler_config``).
            originals: (N, 3, H, W) in [0, 1], the uncorrupted images.
            masks: (N, 1, H, W) of 0/1, 1 = keep.
            generators: one per image, on the UNet's device; image i's noise comes only from ``generators[i]``.
            steps: denoising steps (RePaint's t_T), one for all or one per image.
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

        known = originals.to(device, torch.float32) * 2 - 1
        keep = masks.to(device, torch.float32)
        sample = _draw(generators, tuple(known.shape[1:]), device)
        chains = []
        for t in sorted(set(per_image)):
            rows = [i for i, s in enumerate(per_image) if s == t]
            chains.append(self._chain(schedule, t, torch.tensor(rows, device=device),
                                      [generators[i] for i in rows], device))

        with torch.inference_mode():
            while True:
                for chain in chains:
                    chain.before_call(sample, known, keep)
                active = [chain for chain in chains if not chain.done]
                if not active:
                    break
                rows = torch.cat([chain.rows for chain in active])
                t = torch.cat([torch.full((len(chain.rows),), chain.timestep, device=device) for chain in active])
                output = unet(sample[rows].to(dtype), t).sample.float()
                offset = 0
                for chain in active:
                    chain.denoise(sample, output[offset:offset + len(chain.rows)], known, keep)
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


# ---- RePaint as its authors ran it ----------------------------------------------------------------------------

def respaced_timesteps(train_steps: int, n: int) -> list[int]:
    """The N training timesteps guided-diffusion's respacing keeps (one section): N points from 0 to
    ``train_steps`` − 1 at a stride of (T − 1)/(N − 1), summed as a float and rounded half to even (Python's
    ``round``), ascending. For T = 1000, N = 250: 0, 4, 8, …, 164, 169, …, 999. See docs/samplers.md."""
    if not 1 <= n <= train_steps:
        raise SamplerError(f"respacing must lie in 1..{train_steps}, got {n}")
    stride = (train_steps - 1) / (n - 1) if n > 1 else 1.0
    position, kept = 0.0, []
    for _ in range(n):
        kept.append(round(position))
        position += stride
    return kept


def jump_walk(t_T: int, jump_length: int, jump_n_sample: int) -> list[int]:
    """The grid indices RePaint's sample passes through, from pure noise at t_T − 1 down to −1 (the image).

    A step down from k is a UNet call at index k; a step up to k is an undo (re-noising to k). Jump points are
    the indices 0, j, 2j, … below t_T − j: when the sample arrives at one, before any call there, it is walked
    up j indices and down again, r − 1 times in all (the first arrival and every return after a jump count
    until the point's jumps are spent)."""
    jumps_left = {m: jump_n_sample - 1 for m in range(0, t_T - jump_length, jump_length)}
    k = t_T - 1
    walk = [k]
    while k >= 0:
        k -= 1
        walk.append(k)
        if jumps_left.get(k, 0) > 0:
            jumps_left[k] -= 1
            for _ in range(jump_length):
                k += 1
                walk.append(k)
    return walk


def _training_alpha_bar(schedule: dict) -> torch.Tensor:
    """ᾱ_t of the model's training schedule in float64 (guided-diffusion's precision; diffusers' schedulers
    build β in float32), from the scheduler config's beta_schedule, beta_start, beta_end or trained_betas."""
    steps = int(schedule.get("num_train_timesteps", 1000))
    kind = schedule.get("beta_schedule", "linear")
    if schedule.get("trained_betas") is not None:
        betas = torch.tensor(schedule["trained_betas"], dtype=torch.float64)
    elif kind == "linear":
        betas = torch.linspace(schedule.get("beta_start", 1e-4), schedule.get("beta_end", 0.02), steps,
                               dtype=torch.float64)
    elif kind == "scaled_linear":
        betas = torch.linspace(schedule.get("beta_start", 1e-4) ** 0.5, schedule.get("beta_end", 0.02) ** 0.5,
                               steps, dtype=torch.float64) ** 2
    elif kind == "squaredcos_cap_v2":  # Nichol & Dhariwal 2021's cosine schedule, β capped at 0.999
        def alpha_bar(t):
            return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
        betas = torch.tensor([min(1 - alpha_bar((i + 1) / steps) / alpha_bar(i / steps), 0.999)
                              for i in range(steps)], dtype=torch.float64)
    else:
        raise SamplerError(f"repaint cannot build the beta schedule '{kind}': use linear, scaled_linear, "
                           "squaredcos_cap_v2 or trained_betas")
    return torch.cumprod(1 - betas, dim=0)


@dataclass(frozen=True)
class RePaintSampler(Sampler):
    """RePaint (Lugmayr et al., CVPR 2022) exactly as its authors' code samples it; docs/samplers.md gives
    every step. Defaults are the authors' sweep: jumps 10/10 on the 250-step respaced grid, t_T = ``steps``.
    ``params()`` is {}: the jumps and the respacing have their own columns."""

    name: ClassVar[str] = "repaint"
    jump_length: int = 10
    jump_n_sample: int = 10
    respacing: int | None = 250

    def __post_init__(self):
        if self.jump_length < 1 or self.jump_n_sample < 1:
            raise SamplerError(f"jump_length and jump_n_sample must be ≥ 1, got {self.jump_length}/"
                               f"{self.jump_n_sample}")
        if self.respacing is not None and (isinstance(self.respacing, bool) or not isinstance(self.respacing, int)
                                           or self.respacing < 1):
            raise SamplerError(f"respacing must be a positive step count or None (the steps walk), got "
                               f"{self.respacing!r}")

    def grid(self, schedule: dict, steps: int) -> list[int]:
        """The respaced grid (training timesteps, ascending) that a chain of t_T = ``steps`` walks; raises
        SamplerError unless 1 ≤ steps ≤ N ≤ the training steps."""
        train_steps = int(schedule.get("num_train_timesteps", 1000))
        n = train_steps if self.respacing is None else self.respacing
        if not 1 <= steps <= n:
            where = (f" (the model was trained with {n} steps)" if self.respacing is None
                     else f" (t_T on the {n}-step respaced grid: respacing ≥ steps)")
            raise SamplerError(f"steps must lie in 1..{n}, got {steps}{where}")
        return respaced_timesteps(train_steps, steps if self.respacing is None else self.respacing)

    def unet_timesteps(self, steps: int, schedule: dict) -> list[int]:
        """The training timestep of every UNet call of a chain of t_T = ``steps``, in order."""
        grid, walk = self.grid(schedule, steps), jump_walk(steps, self.jump_length, self.jump_n_sample)
        return [grid[k] for k, after in zip(walk, walk[1:], strict=False) if after < k]

    def _chain(self, schedule, steps, rows, generators, device) -> _Chain:
        grid = self.grid(schedule, steps)
        return _RePaintChain(grid, _training_alpha_bar(schedule)[grid], schedule.get("variance_type"),
                             jump_walk(steps, self.jump_length, self.jump_n_sample), rows, generators)


# variance_type values of diffusers' scheduler configs; the "_log" forms differ from the plain ones only in how
# diffusers computes them
_FIXED_SMALL = {None, "fixed_small", "fixed_small_log"}
_FIXED_LARGE = {"fixed_large", "fixed_large_log"}


class _RePaintChain(_Chain):
    """RePaint's walk over grid indices (``jump_walk``), for one step count.

    ``index`` is the grid index of the current sample; ``alpha_bar[k]`` (float64) is ᾱ at grid timestep k.
    Random draws per image, in this order: before every UNet call, first the update noise z, then (not before
    the first call) the known region's z′; at every undo, one z for the step up."""

    def __init__(self, grid: list[int], alpha_bar: torch.Tensor, variance_type: str | None, walk: list[int],
                 rows, generators):
        super().__init__(rows, generators)
        self.grid, self.alpha_bar, self.variance_type = grid, alpha_bar, variance_type
        self.walk, self.position = walk, 0
        self.noise: torch.Tensor | None = None  # z of the next update, drawn in before_call

    @property
    def index(self) -> int:
        return self.walk[self.position]

    @property
    def done(self) -> bool:
        return self.index < 0

    @property
    def timestep(self) -> int:
        return self.grid[self.index]

    @property
    def planned_calls(self) -> int:
        return sum(1 for k, after in zip(self.walk, self.walk[1:], strict=False) if after < k)

    def _alpha_bar(self, k: int) -> float:
        return 1.0 if k < 0 else float(self.alpha_bar[k])

    def _beta(self, k: int) -> float:
        """β′ₖ = 1 − ᾱ(tₖ)/ᾱ(tₖ₋₁): the respaced process's β at grid index k."""
        return 1 - self._alpha_bar(k) / self._alpha_bar(k - 1)

    def before_call(self, sample, known, keep):
        """Undo steps up to the next UNet call's index, then that call's draws and the known region."""
        rows, shape = self.rows, tuple(sample.shape[1:])
        while not self.done and self.walk[self.position + 1] > self.index:
            self.position += 1
            beta = self._beta(self.index)
            z = _draw(self.generators, shape, sample.device)
            sample[rows] = math.sqrt(1 - beta) * sample[rows] + math.sqrt(beta) * z
        if self.done:
            return
        self.noise = _draw(self.generators, shape, sample.device)
        if self.calls > 0:  # the first call sees the pure noise everywhere
            alpha_bar = self._alpha_bar(self.index)
            noised = math.sqrt(alpha_bar) * known[rows] + math.sqrt(1 - alpha_bar) * _draw(self.generators, shape,
                                                                                           sample.device)
            sample[rows] = keep[rows] * noised + (1 - keep[rows]) * sample[rows]

    def denoise(self, sample, output, known, keep):
        """x_k → x_(k−1): DDPM posterior mean from the clipped x0 prediction, plus σₖ·z except at k = 0."""
        k, rows, channels = self.index, self.rows, sample.shape[1]
        x, eps = sample[rows], output[:, :channels]
        alpha_bar, alpha_bar_prev, beta = self._alpha_bar(k), self._alpha_bar(k - 1), self._beta(k)
        x0 = (math.sqrt(1 / alpha_bar) * x - math.sqrt(1 / alpha_bar - 1) * eps).clamp(-1, 1)
        mean = (beta * math.sqrt(alpha_bar_prev) / (1 - alpha_bar)) * x0 \
            + ((1 - alpha_bar_prev) * math.sqrt(1 - beta) / (1 - alpha_bar)) * x
        self.position += 1
        if k == 0:
            sample[rows] = mean
            return
        log_beta = math.log(beta)
        log_posterior = math.log(beta * (1 - alpha_bar_prev) / (1 - alpha_bar))  # log β̃ₖ
        if output.shape[1] == 2 * channels:
            v = output[:, channels:]
            if self.variance_type == "learned":
                log_variance = v
            else:  # guided-diffusion's learned range
                fraction = (v + 1) / 2
                log_variance = fraction * log_beta + (1 - fraction) * log_posterior
            sample[rows] = mean + torch.exp(0.5 * log_variance) * self.noise
            return
        if self.variance_type in _FIXED_SMALL:
            log_variance = log_posterior
        elif self.variance_type in _FIXED_LARGE:
            log_variance = log_beta
        else:
            raise SamplerError(f"repaint: the scheduler config says variance_type '{self.variance_type}' but "
                               f"the UNet outputs {channels} channels; learned variance needs {2 * channels}")
        sample[rows] = mean + math.exp(0.5 * log_variance) * self.noise


# ---- RePaint on diffusers' RePaintScheduler -------------------------------------------------------------------

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


SAMPLERS: dict[str, type[Sampler]] = {
    s.name: s for s in (RePaintSampler, DiffusersRePaintSampler, DDIMSampler, DPMSolverSampler)}


class _SamplerDefault:
    """make_sampler's ``respacing`` when not given: the sampler's own default (250 for repaint, else None)."""

    def __repr__(self) -> str:
        return "<sampler default>"


SAMPLER_DEFAULT = _SamplerDefault()


def make_sampler(name: str, *, jump_length: int = 10, jump_n_sample: int = 10, eta: float = 0.0,
                 respacing: int | None | _SamplerDefault = SAMPLER_DEFAULT) -> Sampler:
    """The sampler ``name`` (a key of SAMPLERS). The RePaints take the jumps; ``repaint-diffusers`` takes eta;
    ``repaint`` takes a respacing (default 250, None for the steps walk). The others have no use for the jumps
    and eta and ignore them, and refuse an integer respacing (module docstring)."""
    if name not in SAMPLERS:
        raise SamplerError(f"unknown sampler '{name}': choose from {', '.join(SAMPLERS)}")
    if name == RePaintSampler.name:
        if respacing is SAMPLER_DEFAULT:
            return RePaintSampler(jump_length, jump_n_sample)
        return RePaintSampler(jump_length, jump_n_sample, respacing)
    if respacing is not SAMPLER_DEFAULT and respacing is not None:
        raise SamplerError(f"{name} walks only its own step grid: use respacing 'steps', not {respacing!r} "
                           f"(an integer respacing is repaint's)")
    if name == DiffusersRePaintSampler.name:
        return DiffusersRePaintSampler(jump_length, jump_n_sample, eta)
    return SAMPLERS[name]()


STEPS_WALK = "steps"  # respacing_label of None


def respacing_label(respacing: int | None) -> str:
    """The scores table's ``respacing`` column: "250" for an N-step grid, "steps" for the steps walk."""
    return STEPS_WALK if respacing is None else str(int(respacing))


def parse_respacing(text: str) -> int | None:
    """Inverse of :func:`respacing_label`: "steps" → None, "250" → 250; anything else is a one-line
    SamplerError."""
    value = str(text).strip()
    if value == STEPS_WALK:
        return None
    if value.isdigit() and int(value) >= 1:
        return int(value)
    raise SamplerError(f"respacing must be a positive step count (e.g. 250) or '{STEPS_WALK}', got '{text}'")


def sampler_params_json(sampler: Sampler) -> str:
    """``sampler.params()`` as canonical JSON (sorted keys, no spaces); "{}" when it has none."""
    return json.dumps(sampler.params(), sort_keys=True, separators=(",", ":"))
