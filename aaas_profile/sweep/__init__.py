"""The sweep: corrupt each image with each mask and seed, inpaint it with each sampler at every step count,
score the output.

A cell is (model, image, mask, seed, sampler) at one step count (and, for RePaint, one resampling setting); its
scores go to the run folder's long table (``runs.COLUMNS``). Cells run in batches of one sampler that share UNet
calls; each batch's rows are one atomically written part, so an interrupted sweep started again skips what is
done and loses nothing.

Seeds: a cell's mask comes from ``mask_seed("mask", mask, image, seed)`` and its diffusion noise from a
``torch.Generator`` seeded with ``mask_seed("noise", mask, image, seed)``, the same at every step count and for
every sampler (common random numbers make the quality-vs-steps curves smoother and the samplers' curves
comparable), and independent of the batch it ran in.

One concern per module: ``config`` (the options and their checks), ``cells`` (cells, shards, batches),
``runfolder`` (the folder's identity, config.toml and the manifest), ``prepare`` (every check before any work,
and the cost), ``execute`` (batches, claims, the run) and ``summary``. This package re-exports the names other
stages and the command line use.
"""

from __future__ import annotations

from aaas_profile.sweep.cells import (
    WHOLE,
    Cell,
    Item,
    Prepared,
    Shard,
    all_cells,
    check_parallel_options,
    plan,
    shard_cells,
)
from aaas_profile.sweep.config import (
    DEFAULT_DATA,
    DEFAULT_JUMP_N_SAMPLE,
    DEFAULT_RESPACING,
    DEFAULT_STEPS,
    KEY_NAMES,
    PROJECT_ROOT,
    RESPACING_RULE,
    SweepConfig,
    SweepError,
    setting_key,
)
from aaas_profile.sweep.execute import HOLD_ENV, WAIT_POLL_S, Progress, SweepResult, run, run_batch
from aaas_profile.sweep.prepare import Need, Plan, conclusion_needs, dry_run, native_bf16, prepare
from aaas_profile.sweep.runfolder import (
    CONFIG_ADVICE,
    FIXED,
    HOW_IT_RUNS,
    content_of,
    default_out,
    experiment_identity,
    read_run_config,
    same_data,
)
from aaas_profile.sweep.summary import POOLED, SUMMARY_KEYS, summarise

__all__ = [
    "CONFIG_ADVICE", "Cell", "DEFAULT_DATA", "DEFAULT_JUMP_N_SAMPLE", "DEFAULT_RESPACING", "DEFAULT_STEPS", "FIXED",
    "HOLD_ENV", "HOW_IT_RUNS", "Item", "KEY_NAMES", "Need", "POOLED", "PROJECT_ROOT", "Plan", "Prepared",
    "Progress", "RESPACING_RULE", "SUMMARY_KEYS", "Shard", "SweepConfig", "SweepError", "SweepResult",
    "WAIT_POLL_S", "WHOLE", "all_cells", "check_parallel_options", "conclusion_needs", "content_of", "default_out",
    "dry_run", "experiment_identity", "native_bf16", "plan", "prepare", "read_run_config", "run", "run_batch",
    "same_data", "setting_key", "shard_cells", "summarise",
]
