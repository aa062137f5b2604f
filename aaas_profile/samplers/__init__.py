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

One concern per module: ``base`` (the interface, chains, generators, the error), ``repaint`` (the authors'
RePaint), ``replacement`` (the samplers on diffusers' schedulers) and ``registry`` (names, respacing labels,
parameters). This package re-exports what the stages use.
"""

from __future__ import annotations

from aaas_profile.samplers.base import InpaintResult, Sampler, SamplerError, make_generators
from aaas_profile.samplers.registry import (
    SAMPLER_DEFAULT,
    SAMPLERS,
    STEPS_WALK,
    make_sampler,
    parse_respacing,
    respacing_label,
    sampler_params_json,
)
from aaas_profile.samplers.repaint import RePaintSampler, jump_walk, respaced_timesteps
from aaas_profile.samplers.replacement import DDIMSampler, DiffusersRePaintSampler, DPMSolverSampler

__all__ = [
    "DDIMSampler", "DPMSolverSampler", "DiffusersRePaintSampler", "InpaintResult", "RePaintSampler", "SAMPLERS",
    "SAMPLER_DEFAULT", "STEPS_WALK", "Sampler", "SamplerError", "jump_walk", "make_generators", "make_sampler",
    "parse_respacing", "respaced_timesteps", "respacing_label", "sampler_params_json",
]
