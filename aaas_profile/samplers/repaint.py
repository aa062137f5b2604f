"""RePaint as its authors ran it (``repaint``), written from the paper's Algorithm 1 and docs/samplers.md: the
respaced grid, the resampling walk, the DDPM posterior with the model's own variance, and the exact undo."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from aaas_profile.samplers.base import Sampler, SamplerError, _Chain, _draw


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
