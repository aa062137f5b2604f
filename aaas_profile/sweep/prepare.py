"""Everything a sweep needs, checked before any work (``prepare``), and what it will cost (``dry_run``,
``conclusion_needs``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from time import perf_counter

import torch

from aaas_profile import images as images_mod
from aaas_profile import masks as masks_mod
from aaas_profile import metrics as metrics_mod
from aaas_profile import models as models_mod
from aaas_profile import precision
from aaas_profile import samplers as samplers_mod
from aaas_profile.core import acceptance
from aaas_profile.models import load
from aaas_profile.sweep.cells import WHOLE, Cell, Prepared, Shard, plan, shard_cells
from aaas_profile.sweep.config import SweepConfig, SweepError
from aaas_profile.sweep.runfolder import (
    _check_content,
    _check_resume,
    _check_writable_run,
    _legacy_samplers,
    default_out,
    read_run_config,
)


def prepare(config: SweepConfig, shard: Shard = WHOLE) -> Prepared:
    """Check everything a sweep needs (model, images, masks, metrics, run folder) before any work.

    Raises ModelError, ImageError, MaskError, MetricError, SweepError or RunError, each with one line."""
    device = precision.pick_device(config.device, SweepError)
    choice = _choose_dtype(config, device)
    # the run folder records the dtype it ran in (never "auto") and its data folder as an absolute path (it is
    # compared after resolving; docs/run-folder.md, "Identity")
    config = replace(config, dtype=choice.dtype, data=str(Path(config.data).expanduser().resolve()))
    masks = masks_mod.parse_masks(config.masks)  # together: one name never stands for two masks
    model = load(config.model, device=device, dtype=choice.torch_dtype,
                 channels_last=precision.channels_last(device.type, choice.dtype))
    metrics_mod.check_size(config.metrics, model.resolution, model.resolution)
    # Steps beyond the model's training steps: refused below by the samplers' own check (unet_calls, for every
    # step count before any work), the one place that knows each scheduler's limit.
    train_steps = model.scheduler_config["num_train_timesteps"]
    warnings = []
    out = Path(config.out) if config.out else default_out(config, model)
    config = _legacy_samplers(out, config, warnings)
    pairs, skipped = config.sampler_pairs()
    warnings.extend(skipped)
    uneven = [s for s in config.steps if train_steps % s]
    strided = any(label == samplers_mod.STEPS_WALK and name != samplers_mod.RePaintSampler.name
                  for name, label in pairs)  # diffusers' schedulers; repaint's steps walk spaces them evenly
    if uneven and strided:
        warnings.append(
            f"step count(s) {', '.join(map(str, uneven))} do not divide the {train_steps} training steps: the "
            f"scheduler spaces timesteps by {train_steps} // steps, so they start from a lower noise level than "
            "the others and their points are not comparable; use divisors such as 10, 20, 25, 50, 100, 125, 250")
    moved = _check_resume(out, config, model)
    images = _duplicate_images(images_mod.load_folder(Path(config.data), model.resolution, limit=config.limit),
                               warnings)
    _check_content(out, Path(config.data), images, masks, warnings, moved)
    for image in images:
        for name, why in metrics_mod.undefined_on(image.tensor, config.metrics).items():
            warnings.append(f"image {image.image_id}: {name} is undefined on it ({why}); its {name} scores are "
                            "written as NaN (leave the image out, or fit with --drop-nan)")
    for spec in masks:  # fail now, not after hours, on a mask that keeps everything or nothing
        for image in images:
            for seed in config.seeds:
                spec.make(model.resolution, Cell(0, image.image_id, spec, seed, config.samplers[0]).mask_seed)
    samplers = config.make_samplers()
    # Every sampler at every step count, from its own scheduler: a count it refuses (dpm-solver at 1000) fails
    # here, in one line (samplers.SamplerError), not hours into the sweep.
    calls = {(key, steps): sampler.unet_calls(steps, model.scheduler_config)
             for key, sampler in samplers.items() for steps in config.steps}
    prepared = Prepared(config, out, model, images, masks, device, samplers, calls, shard, choice.reason, warnings)
    if next(plan(prepared, prepared.done.refresh() if out.is_dir() else set()), None) is not None:
        _check_writable_run(prepared)  # there is work to write: fail now, before the user sees it start
    return prepared


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 in hardware (precision.cpu_capability or cuda_native_bf16)."""
    if device.type == "cuda":
        return precision.cuda_native_bf16(device)
    return precision.cpu_capability().native_bf16


def _choose_dtype(config: SweepConfig, device: torch.device) -> precision.Choice:
    """The dtype this sweep runs in: ``precision.choose`` with the device's bf16 support, the dtype of the run
    folder being resumed (``auto`` keeps it) and the model card's ``auto_dtype``."""
    previous = None
    if config.out is not None and (Path(config.out) / "config.toml").is_file():
        previous = read_run_config(Path(config.out) / "config.toml")["dtype"]
    card = models_mod.cards().get(config.model)
    try:
        return precision.choose(config.dtype, device.type, native_bf16(device), previous,
                                card.auto_dtype if card is not None else None)
    except precision.PrecisionError as err:
        raise SweepError(str(err)) from None


def _duplicate_images(images: list[images_mod.Image], warnings: list[str]) -> list[images_mod.Image]:
    """The images with the same content kept once (first by name): two names for one image would count it
    twice in every median and bootstrap as if it were two."""
    first: dict[str, str] = {}
    kept = []
    for image in images:
        if image.sha256 in first:
            warnings.append(f"image {image.image_id} is the same file as {first[image.sha256]} (sha256 "
                            f"{image.sha256[:12]}…): swept once, as {first[image.sha256]}")
            continue
        first[image.sha256] = image.image_id
        kept.append(image)
    return kept


@dataclass
class Plan:
    """What a sweep would do, without doing it (``sweep --dry-run``): the cells and UNet image-forwards still to
    run in this shard, and a time estimate from one timed batched UNet forward on this device and dtype.
    The estimate covers the UNet only (scoring adds a little, saving images less)."""

    run_dir: Path
    cells: int  # (cell, step count) items still to run
    cells_done: int
    unet_calls: int  # UNet image-forwards they cost
    seconds_per_forward: float  # one image-forward, measured in a batch of batch_size
    estimated_s: float
    images: int


def dry_run(prepared: Prepared) -> Plan:
    """Plan ``prepared`` without writing anything: count what is left and time one UNet forward."""
    done = prepared.done.refresh() if prepared.run_dir.is_dir() else set()
    todo = [item for batch in plan(prepared, done) for item in batch]
    calls = sum(prepared.unet_calls[item.cell.sampler, item.steps] for item in todo)
    total = len(shard_cells(prepared)) * len(prepared.config.steps)
    per_forward = _time_forward(prepared) if todo else 0.0
    return Plan(prepared.run_dir, len(todo), total - len(todo), calls, per_forward, calls * per_forward,
                len(prepared.images))


@dataclass
class Need:
    """Whether a sweep's images can support the fit's conclusions; ``line`` says so before the sweep starts."""

    short: bool
    line: str


def conclusion_needs(prepared: Prepared) -> Need:
    """How many images the fit needs to conclude anything about steps from this grid (``fit.images_needed``)
    against how many the sweep has: said at sweep time, not discovered after the sweep."""
    n, levels = len(prepared.images), len(prepared.config.steps)
    effect = acceptance.images_needed(levels)
    need = max(effect, acceptance.MIN_IMAGES_FOR_INTERVALS)
    what = (f"{n} image(s) at {levels} step counts: the fit's test of steps (Page's trend test, p < "
            f"{acceptance.EFFECT_ALPHA:g}) needs ≥ {effect}, its intervals (and simulate --profile) ≥ "
            f"{acceptance.MIN_IMAGES_FOR_INTERVALS}")
    if levels < 2:
        return Need(True, f"one step count: the fit needs at least two ({what})")
    if n < need:
        return Need(True, f"{what}; with {n} the fit cannot conclude: add images (--data) or step counts")
    return Need(False, what)


def _time_forward(prepared: Prepared) -> float:
    """Seconds per image of one batched UNet forward (batch_size images, the sweep's dtype and layout): the
    faster of two timed calls after one warm-up."""
    unet, size = prepared.model.unet, prepared.model.resolution
    parameter = next(unet.parameters())
    batch = prepared.config.batch_size
    x = torch.randn(batch, unet.config.in_channels, size, size, device=parameter.device, dtype=parameter.dtype)
    if precision.channels_last(prepared.device.type, prepared.config.dtype):
        x = x.contiguous(memory_format=torch.channels_last)
    t = torch.full((batch,), 500, device=parameter.device)
    times = []
    with torch.inference_mode():
        for _ in range(3):
            start = perf_counter()
            unet(x, t)
            if parameter.device.type == "cuda":
                torch.cuda.synchronize(parameter.device)
            times.append(perf_counter() - start)
    return min(times[1:]) / batch
