"""The samplers' common ground: the ``Sampler`` interface, chains of images that share a step count, the error, the
per-image noise generators, and a diffusers scheduler built on a model's training noise schedule."""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch

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
