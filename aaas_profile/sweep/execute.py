"""Running the sweep: each batch inpainted and scored and written as one part (``run_batch``), claims shared with
other processes on the same folder, and the run as a whole (``run``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter, sleep

import numpy as np
import pandas as pd
import torch
from PIL import Image as PILImage

from aaas_profile import metrics as metrics_mod
from aaas_profile import runs
from aaas_profile import samplers as samplers_mod
from aaas_profile.sweep.cells import WHOLE, Item, Prepared, Shard, _key, plan, shard_cells
from aaas_profile.sweep.config import SweepConfig
from aaas_profile.sweep.prepare import prepare
from aaas_profile.sweep.runfolder import _check_writable_run, _finish_manifest, _slug, _write_run_files
from aaas_profile.sweep.summary import summarise


@dataclass
class SweepResult:
    run_dir: Path
    config: SweepConfig
    cells_run: int
    cells_skipped: int
    wall_s: float
    unet_calls: int
    summary: pd.DataFrame


def run_batch(prepared: Prepared, items: list[Item], run_id: str,
              on_call: Callable[[int], None] | None = None) -> tuple[list[dict], torch.Tensor, torch.Tensor]:
    """Inpaint (with the batch's one sampler) and score one batch. Returns the rows, the outputs and the
    corrupted inputs (for saving).

    Image i's noise comes from its own generator, seeded with its cell's noise seed on the UNet's device, so a
    cell's output does not depend on its batch. ``wall_s`` of an item is its share of the batch's time, in
    proportion to the UNet calls it received (in a batch of one step count: the batch time over its size)."""
    model, c = prepared.model, prepared.config
    size = model.resolution
    cells = [item.cell for item in items]
    names = {cell.sampler for cell in cells}
    if len(names) != 1:
        raise ValueError(f"a batch runs one sampler, got {sorted(names)}")
    sampler = prepared.samplers[names.pop()]
    originals = torch.stack([prepared.images[cell.image_index].tensor for cell in cells])
    masks = torch.stack([cell.mask.make(size, cell.mask_seed) for cell in cells])
    generators = samplers_mod.make_generators([cell.noise_seed for cell in cells], next(model.unet.parameters()).device)
    start = perf_counter()
    result = sampler.inpaint(model.unet, model.scheduler_config, originals, masks, generators,
                             [item.steps for item in items], on_call=on_call)
    if prepared.device.type == "cuda":
        torch.cuda.synchronize(prepared.device)
    elapsed = perf_counter() - start
    total_calls = sum(result.unet_calls)
    scores = metrics_mod.score(result.images.to(prepared.device), originals.to(prepared.device), c.metrics)
    rows = []
    for i, (item, cell) in enumerate(zip(items, cells, strict=True)):
        wall = elapsed * result.unet_calls[i] / total_calls
        for name in c.metrics:
            rows.append({
                "run_id": run_id, **dict(zip(runs.CELL_KEY, _key(prepared, cell, item.steps), strict=True)),
                "unet_calls": result.unet_calls[i], "wall_s": wall,
                "device": str(prepared.device), "dtype": c.dtype, "batch_size": len(items), "metric": name,
                "value": float(scores[name][i]),
                "higher_is_better": metrics_mod.METRICS[name].higher_is_better,
            })
    corrupted = originals * masks + 0.5 * (1 - masks)  # grey where pixels are to be generated
    return rows, result.images, corrupted


def _save_images(prepared: Prepared, items: list[Item], outputs, corrupted, saved: dict) -> None:
    """PNGs of the first ``save_images`` cells (image × mask × seed): original, corrupted input, and the output
    of each sampler at each step count (:func:`image_name`)."""
    folder = prepared.run_dir / "images"
    for i, item in enumerate(items):
        cell = item.cell
        key = (cell.image_id, cell.mask.name, cell.seed)
        if key not in saved:
            if len(saved) >= prepared.config.save_images:
                continue
            # the image's whole file name and content (a.png and a.jpg, or a replaced a.png, never share a folder)
            image = prepared.images[cell.image_index]
            saved[key] = folder / _slug(f"{cell.mask.name}-{cell.image_id}-{image.sha256[:8]}-seed{cell.seed}")
            saved[key].mkdir(parents=True, exist_ok=True)
            _png(prepared.images[cell.image_index].tensor, saved[key] / "original.png")
            _png(corrupted[i], saved[key] / "corrupted.png")
        sampler = prepared.samplers[cell.sampler]
        _png(outputs[i], saved[key] / runs.output_image_name(sampler.name, item.steps,
                                                             samplers_mod.respacing_label(sampler.respacing)))


def _png(image: torch.Tensor, path: Path) -> None:
    array = (image.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    PILImage.fromarray(array).save(path)


class Progress:
    """What the sweep reports while it runs; the CLI plugs in a rich progress bar."""

    def start(self, total_calls: int, total_cells: int) -> None: ...
    def unet_call(self, images: int) -> None: ...
    def batch_done(self, cells: int) -> None: ...
    def waiting(self, message: str) -> None:
        """One line on what the sweep waits for (a lock, cells another live process is computing)."""


def run(config: SweepConfig, progress: Progress | None = None, prepared: Prepared | None = None,
        shard: Shard = WHOLE) -> SweepResult:
    """Run (or resume) a sweep, or one shard of it, and return where it went and a summary of the whole run
    folder. See ``prepare`` for the errors."""
    progress = progress or Progress()
    prepared = prepared or prepare(config, shard)
    run_dir = prepared.run_dir
    done = prepared.done  # prepare's: the parts it read are not read again
    todo = list(plan(prepared, done.refresh()))
    calls = prepared.unet_calls
    total_cells = len(shard_cells(prepared)) * len(config.steps)
    planned_calls = sum(calls[item.cell.sampler, item.steps] for batch in todo for item in batch)
    if not todo:  # nothing to do: write nothing (a finished run on a read-only disk resumes cleanly)
        return SweepResult(run_dir, prepared.config, 0, total_cells, 0.0, 0, summarise(runs.read_scores(run_dir)))
    _check_writable_run(prepared)  # check first, write last (again: prepare may have been long ago)
    run_dir.mkdir(parents=True, exist_ok=True)
    invocation = _write_run_files(prepared, done_before=len(done.keys))

    progress.start(planned_calls, sum(len(batch) for batch in todo))
    start, ran, calls_run, saved, said = perf_counter(), 0, 0, {}, ""
    waiting = getattr(progress, "waiting", lambda message: None)  # api.sweep takes any object with the others
    while todo:
        ran_before = ran
        for batch in todo:
            items, claim = _claim(prepared, batch, done, on_wait=waiting)
            if not items:
                continue
            try:
                rows, outputs, corrupted = run_batch(prepared, items, run_dir.name, on_call=progress.unet_call)
                with runs.scores_lock(run_dir, on_wait=waiting):
                    runs.write_part(run_dir, rows)
            finally:
                claim.release()
            if prepared.config.save_images:
                _save_images(prepared, items, outputs, corrupted, saved)
            ran += len(items)
            calls_run += sum(calls[item.cell.sampler, item.steps] for item in items)
            progress.batch_done(len(items))
            _hold_for_tests()
        # Cells another process claimed and then gave up (it died) are free again: take them in another pass.
        # Cells another live process is computing are not done: wait for them, saying so, and never count them
        # as done (the summary below is of the whole folder, and "already done" must be true).
        todo = list(plan(prepared, done.refresh()))
        if todo and ran == ran_before:
            said = _wait_for_others(prepared, todo, waiting, said)
    wall = perf_counter() - start
    _finish_manifest(prepared, invocation, ran, wall)
    table = runs.read_scores(run_dir)
    return SweepResult(run_dir, prepared.config, ran, total_cells - ran, wall, calls_run, summarise(table))


HOLD_ENV = "AAAS_PROFILE_TEST_HOLD_UNTIL"


def _hold_for_tests() -> None:
    """Test hook (docs/testing.md): with ``AAAS_PROFILE_TEST_HOLD_UNTIL=<file>`` set, wait after each written
    part, holding no claim, until that file exists. A test that interrupts a sweep mid-run (Ctrl-C, kill -9,
    several processes sharing cells) then knows there is a "mid" however fast or loaded the machine is. Unset
    (always, outside tests), it costs one environment look-up per batch."""
    gate = os.environ.get(HOLD_ENV)
    while gate and not Path(gate).exists():
        sleep(0.02)


# How often a sweep looks again at cells another live process is computing (a batch takes seconds to minutes).
WAIT_POLL_S = 0.5


def _wait_for_others(prepared: Prepared, todo: list[list[Item]], waiting: Callable[[str], None], said: str) -> str:
    """Every cell left is claimed by another live process: say which processes (once per change), then wait a
    little before the caller looks again. Returns what was said."""
    with runs.scores_lock(prepared.run_dir, on_wait=waiting):
        runs.claimed_cells(prepared.run_dir)  # removes the claims of processes that are gone
        pids = sorted({runs.claim_pid(p) for p in runs.scores_dir(prepared.run_dir).glob(".claim-*.json")})
    cells = sum(len(batch) for batch in todo)
    message = (f"waiting for {cells} cell(s) being computed by pid {', '.join(pids)} (another sweep into "
               f"{prepared.run_dir}); they are not done yet, so this sweep waits for them")
    if message != said:
        waiting(message)
    sleep(WAIT_POLL_S)
    return message


def _claim(prepared: Prepared, batch: list[Item], done: runs.DoneCells,
           on_wait: Callable[[str], None] | None = None) -> tuple[list[Item], runs.Claim | None]:
    """The items of ``batch`` that no process has done or is doing, claimed for this one (runs.py explains
    how several processes share a run folder)."""
    with runs.scores_lock(prepared.run_dir, on_wait=on_wait):
        runs.remove_stale_temps(prepared.run_dir)
        taken = done.refresh() | runs.claimed_cells(prepared.run_dir)
        items = [item for item in batch if _key(prepared, item.cell, item.steps) not in taken]
        if not items:
            return [], None
        return items, runs.Claim(prepared.run_dir, [_key(prepared, item.cell, item.steps) for item in items])
