"""What a sweep computes: its cells (model, image, mask, seed, sampler at one step count), how they are split into
shards across processes, and the batches they run in (``plan``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from aaas_profile import images as images_mod
from aaas_profile import masks as masks_mod
from aaas_profile import options, runs
from aaas_profile import samplers as samplers_mod
from aaas_profile.models import LoadedModel
from aaas_profile.sweep.config import SweepConfig, SweepError


@dataclass(frozen=True)
class Cell:
    image_index: int
    image_id: str
    mask: masks_mod.MaskSpec
    seed: int
    sampler: str  # a key of Prepared.samplers (``setting_key``: the sampler and its respacing)

    @property
    def mask_seed(self) -> int:
        return masks_mod.mask_seed("mask", self.mask.name, self.image_id, self.seed)

    @property
    def noise_seed(self) -> int:
        return masks_mod.mask_seed("noise", self.mask.name, self.image_id, self.seed)


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count``: every ``count``-th cell (image × mask × seed × sampler, all its step counts) in the
    sweep's fixed cell order, starting at ``index``. Shards of one sweep write disjoint parts into one run
    folder; each resumes like a whole sweep, since every shard reads which cells all parts already hold."""

    index: int = 0
    count: int = 1

    def __post_init__(self):
        if self.count < 1 or not 0 <= self.index < self.count:
            raise SweepError(f"shard {self.index}/{self.count}: need 0 ≤ index < count")

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @classmethod
    def parse(cls, text: str) -> Shard:
        """"i/n" → Shard(i, n)."""
        try:
            index, count = (int(part) for part in text.split("/"))
        except ValueError:
            raise SweepError(f"--shard: expected INDEX/COUNT like 0/4, got '{text}'") from None
        return cls(index, count)

    @classmethod
    def from_env(cls, env: dict[str, str]) -> Shard:
        """The shard a launcher assigned: torchrun's RANK/WORLD_SIZE, else a SLURM array's task id/count,
        else the whole sweep."""
        if "WORLD_SIZE" in env and "RANK" in env:
            return cls(options.env_int(env, "RANK", SweepError), options.env_int(env, "WORLD_SIZE", SweepError))
        if "SLURM_ARRAY_TASK_ID" in env and "SLURM_ARRAY_TASK_COUNT" in env:
            first = options.env_int(env, "SLURM_ARRAY_TASK_MIN", SweepError, default=0)
            return cls(options.env_int(env, "SLURM_ARRAY_TASK_ID", SweepError) - first,
                       options.env_int(env, "SLURM_ARRAY_TASK_COUNT", SweepError))
        return cls()

    def owns(self, position: int) -> bool:
        return position % self.count == self.index


WHOLE = Shard()  # the whole sweep: one process, every cell


@dataclass
class Prepared:
    """A validated sweep, ready to run: nothing is written before this exists."""

    config: SweepConfig
    run_dir: Path
    model: LoadedModel
    images: list[images_mod.Image]
    masks: list[masks_mod.MaskSpec]
    device: torch.device
    samplers: dict[str, samplers_mod.Sampler]  # by setting_key, in config.sampler_pairs' order
    unet_calls: dict[tuple[str, int], int]  # (sampler, steps) → UNet calls one image costs
    shard: Shard = Shard()
    dtype_reason: str = ""  # why config.dtype (resolved from "auto" or forced), for the terminal and manifest
    warnings: list[str] = field(default_factory=list)  # one line each, for the user, before the sweep starts
    # The cells already scored in run_dir, read once by prepare and brought up to date by the run (each part
    # file is read once: runs.DoneCells.refresh reads only the new ones).
    done: runs.DoneCells | None = None  # None: a fresh one for run_dir (__post_init__)

    def __post_init__(self):
        if self.done is None:
            self.done = runs.DoneCells(self.run_dir)


def check_parallel_options(shard: str | None, ray: str | None, shards: int | None) -> None:
    """How the cells are split: ``--shard INDEX/COUNT`` per process, or ``--ray`` with ``--shards`` tasks.
    Raises SweepError (one line) for a combination that cannot mean anything (``--shards``' range is checked on
    entry, with the option)."""
    if shards is not None and ray is None:
        raise SweepError(f"--shards {shards} only counts Ray tasks: give --ray too, or --shard INDEX/COUNT per "
                         "process")
    if ray is not None and shard is not None:
        raise SweepError("--shard and --ray exclude each other: Ray makes the shards itself")


def all_cells(prepared: Prepared) -> list[Cell]:
    """All cells of the sweep in its fixed order (image, then mask, then seed, then sampler)."""
    return [
        Cell(i, image.image_id, spec, seed, sampler)
        for i, image in enumerate(prepared.images)
        for spec in prepared.masks
        for seed in prepared.config.seeds
        for sampler in prepared.samplers
    ]


def shard_cells(prepared: Prepared) -> list[Cell]:
    """The cells this shard owns, in the sweep's order."""
    return [cell for position, cell in enumerate(all_cells(prepared)) if prepared.shard.owns(position)]


@dataclass(frozen=True)
class Item:
    """One unit of work: a cell at one step count."""

    cell: Cell
    steps: int


def plan(prepared: Prepared, done: set[tuple]) -> Iterator[list[Item]]:
    """Batches of at most batch_size items this shard still has to run.

    A batch holds one sampler: the shard's cells go sampler by sampler (in the configured order), each
    sampler's in chunks of batch_size, all step counts of a chunk before the next, so whole curves arrive early.
    Inside a chunk the items are ordered by step count, so most batches hold one step count; where a chunk is
    part done or short, a batch mixes step counts, which still share UNet calls (the sampler runs them in
    lockstep)."""
    c = prepared.config
    mine = shard_cells(prepared)
    for sampler in prepared.samplers:
        cells = [cell for cell in mine if cell.sampler == sampler]
        for start in range(0, len(cells), c.batch_size):
            chunk = cells[start:start + c.batch_size]
            items = [Item(cell, steps) for steps in c.steps for cell in chunk
                     if _key(prepared, cell, steps) not in done]
            for first in range(0, len(items), c.batch_size):
                yield items[first:first + c.batch_size]


def _key(prepared: Prepared, cell: Cell, steps: int) -> tuple:
    """The cell at ``steps`` as a runs.CELL_KEY tuple (RePaint's jumps 0/0 for another sampler)."""
    sampler = prepared.samplers[cell.sampler]
    return (prepared.model.name, cell.image_id, cell.mask.name, cell.seed, sampler.name,
            samplers_mod.sampler_params_json(sampler), samplers_mod.respacing_label(sampler.respacing), steps,
            sampler.jump_length, sampler.jump_n_sample)
