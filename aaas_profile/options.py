"""Every command's options, declared once: one dataclass per command, whose fields give each option's name,
type, default, range and help.

The command line is derived from these classes (``aaas_profile/cli/declared.py`` turns each field into a typer
option, its help ending in the default read from the field), ``sweep --config`` files and a run folder's
config.toml hold the same keys as ``SweepOptions`` (``aaas_profile.sweep.SweepConfig`` is that class with its
checks), docs/cli.md's "Ranges" table is generated from the ranges here, and the environment variables the tool
reads are declared at the end. A value is checked once, on entry, against its field's range (``check_all``);
the layers below take it as given.

This module loads nothing heavy (``aaas-profile --help`` builds every command from it at once). It is some 410
lines on purpose: every option of every command in one place is what makes them one vocabulary (the same
``--seed`` range, the same wording), and most of its length is help text.
"""

from __future__ import annotations

import re
import types
import typing
from dataclasses import MISSING, Field, dataclass, field, fields
from pathlib import Path

from aaas_profile.core import acceptance
from aaas_profile.core.curve_keys import METRIC_NAMES
from aaas_profile.errors import UserError
from aaas_profile.limits import SEED, Range, RangeError, cores, flag, no_repeats

PROJECT_ROOT = Path(__file__).resolve().parents[1]  # aaas_profile/options.py → the repository
DEFAULT_DATA = PROJECT_ROOT / "datasets" / "faces" / "eval"  # faces the bundled model was not trained on
# The paper's x axis: t_T from 10 (the chain starts at training timestep 36, the noisy floor) to 250 (pure noise
# at 999) on the 250-step respaced grid (docs/protocol.md). Twelve starts instead of the authors' 25, dense below
# 50 where the bundled model's curve leaves its floor (between t_T 10 and 15), sparse above where it creeps to
# saturation, so that the fitted (Ax, Bx) are resolved by the grid rather than placed in a gap of it.
DEFAULT_STEPS = (10, 15, 20, 25, 30, 40, 50, 75, 100, 150, 200, 250)
# Resampling with jumps 10/3 instead of the authors' 10/10: 2,685 UNet calls a face, 26,850 for the 10 held-out
# faces, about 3 minutes of an idle 2-core CPU; 10/10 on this grid is 8,705 a face (about 9 minutes), which
# the budget cannot hold. --jump-n-sample 10 --steps 10,20,...,250 is their exact protocol (docs/protocol.md).
DEFAULT_JUMP_N_SAMPLE = 3
DEFAULT_RESPACING = "default"  # each sampler's own walk: 250 for repaint, steps for the others


@dataclass(frozen=True)
class Spec:
    """What a field says about its option beyond its type and default.

    ``key``: the name users write (flag ``--key``, config.toml key) where it is not the field's name.
    ``decls``: click's declarations where they are not ``--key`` (``--flip/--no-flip``, ``-q``).
    ``shown``: the default in words, where its value says little (a computed folder); ``why``: words after the
    value in the help's ``[default: …]``. ``repeats``: a list whose order is its meaning (items may repeat).
    """

    help: str
    range: Range | None = None
    key: str | None = None
    decls: tuple[str, ...] = ()
    shown: str | None = None
    why: str | None = None
    argument: bool = False
    repeats: bool = False
    required: bool = False


def option(default=MISSING, *, factory=MISSING, help: str, **spec) -> Field:  # noqa: A002 (typer's word)
    """A dataclass field declaring one option (``Spec`` for the keywords)."""
    metadata = {"spec": Spec(help=help, **spec)}
    if factory is not MISSING:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def spec_of(f: Field) -> Spec:
    return f.metadata["spec"]


def key_of(f: Field) -> str:
    return spec_of(f).key or f.name


def types_of(cls) -> dict[str, object]:
    """The fields' types as objects (the annotations are strings under ``from __future__ import annotations``)."""
    return typing.get_type_hints(cls)


def _without_none(kind):
    union = typing.get_origin(kind) in (typing.Union, types.UnionType)
    args = [a for a in typing.get_args(kind) if a is not type(None)] if union else [kind]
    return args[0] if len(args) == 1 else kind


def is_list(kind) -> bool:
    """A list option (``list[int]``, ``list[str]``, possibly ``| None``): given as a comma list."""
    return typing.get_origin(_without_none(kind)) in (list, tuple)


def list_item(kind):
    """The item type of a list option's type (``int`` for ``list[int] | None``)."""
    return typing.get_args(_without_none(kind))[0]


def default_of(f: Field):
    """A field's default value (a fresh one for a ``factory`` field); MISSING when the option is required."""
    if f.default_factory is not MISSING:
        return f.default_factory()
    return f.default


# -- sweep ----------------------------------------------------------------------------------------------------------


@dataclass
class SweepOptions:
    """Everything that defines a sweep: the ``sweep`` options that a ``--config`` file may also hold, and the keys
    of a run folder's config.toml."""

    model: str = option("faces", help="Model name (see `aaas-profile models`) or a diffusers folder.",
                        why="the bundled 64-px model")
    data: str = option(str(DEFAULT_DATA), help="Folder of PNG/JPEG/BMP images (any mode and size; resized and "
                       "centre-cropped to the model's resolution).",
                       shown="datasets/faces/eval, faces the bundled model never saw")
    masks: list[str] = option(factory=lambda: ["thick"], help="Comma list of mask families (thick, thin, half, "
                              "expand, line, box) and/or folders of mask images (white = keep).")
    steps: list[int] = option(factory=lambda: list(DEFAULT_STEPS), range=Range(1, 100_000), help=(
        "Step counts: with a respacing N (repaint's default, N = 250) each is t_T, where the chain starts on the "
        "N-step grid (the paper's x axis, 10-250); on the steps walk the number of steps over the whole training "
        "range (use divisors of the 1000 training steps there: other counts start from a lower noise level)."),
        why="the paper's range in 12 starts, about 3 CPU minutes on the bundled model")
    seeds: list[int] = option(factory=lambda: [0], range=SEED, help="Seeds per image × mask, e.g. 0,1 or 0-4.")
    samplers: list[str] = option(factory=lambda: ["repaint"], key="sampler", help=(
        "Comma list of samplers, each swept over the same cells and step counts (one curve each): repaint "
        "(RePaint, with --jump-length/--jump-n-sample), ddim (DDIM, eta 0), dpm-solver (DPM-Solver++ 2nd order); "
        "ddim and dpm-solver keep the known region by replacement and cost one UNet call a step."))
    # The walks (samplers.respacing_label): "250" is t_T = steps on the 250-step respaced grid (the paper's x
    # axis), "steps" a steps-step grid over the whole training range; "default" each sampler's own.
    respacing: list[str] = option(factory=lambda: [DEFAULT_RESPACING], help=(
        "Comma list of walks: an integer N walks the N-step respaced grid from t_T = steps (the paper's x axis: "
        "N = 250, steps ≤ N; repaint only), 'steps' a steps-step grid over the whole training range (diffusers' "
        "num_inference_steps), 'default' each sampler's own. Every sampler runs every walk it takes; a pair it "
        "refuses is skipped with a warning, e.g. --sampler repaint,ddim --respacing 250,steps."),
        shown="250 for repaint, steps for the others")
    jump_length: int = option(10, range=Range(1, 1000),
                              help="RePaint's resampling jump j (1 with --jump-n-sample 1 turns resampling off).")
    jump_n_sample: int = option(DEFAULT_JUMP_N_SAMPLE, range=Range(1, 1000),
                                help="RePaint's resampling count r (1: no resampling).",
                                why="to fit the default sweep into 3 CPU minutes; the authors ran 10")
    eta: float = option(0.0, range=Range(0, 1, integer=False), help="Noise weight of the unknown part's update: "
                        "0 = diffusers' RePaint default, 1 = DDPM.")
    metrics: list[str] = option(factory=lambda: list(METRIC_NAMES),
                                help=f"Comma list of {', '.join(METRIC_NAMES)}.", shown="all")
    limit: int | None = option(None, range=Range(1, 10**9), help="Use only the first N images (sorted by name).")
    batch_size: int = option(8, range=Range(1, 65_536), help="Cells per UNet call.")
    device: str = option("auto", help="auto, cpu, cuda or cuda:N.")
    dtype: str = option("auto", help="auto (bf16 where the CPU has AVX512-BF16/AMX-BF16 or the GPU bf16 tensor "
                        "cores, else fp32; a resumed run folder keeps its own), fp32, bf16, or fp16 on CUDA.")
    save_images: int = option(4, range=Range(0, 10**9),
                              help="Save PNGs (original, corrupted, each step count) of this many cells.")
    out: str | None = option(None, help="Run folder; an existing one is resumed, and new step counts, seeds, "
                             "masks, samplers or images are added to it.",
                             shown="results/<model>-<data folder>-<digest of every setting that defines the "
                             "cells>, so the same command resumes and another experiment gets its own folder")


@dataclass
class SweepRun:
    """The ``sweep`` options that say how a sweep runs, not what it computes (not in config.toml)."""

    config: Path | None = option(None, help="TOML file with any of these options (flags override it).")
    shard: str | None = option(None, help="Run shard INDEX/COUNT (e.g. 0/4) of the cells into the same --out; "
                               "read from RANK/WORLD_SIZE (torchrun) or SLURM_ARRAY_TASK_ID/COUNT when not given.")
    ray: str | None = option(None, help="Run the shards as Ray tasks (one GPU each): 'local' starts Ray here, "
                             "'auto' joins a running cluster, or ray://HOST:PORT. Needs aaas-profile\\[ray].")
    shards: int | None = option(None, range=Range(1, 65_536), help="Number of shards with --ray.",
                                shown="the cluster's GPUs, else CPUs / 2")
    dry_run: bool = option(False, decls=("--dry-run",), help="Print the planned cells, UNet calls and an "
                           "estimated time (one timed UNet forward), then stop; writes nothing.")


# -- fit ------------------------------------------------------------------------------------------------------------


@dataclass
class FitOptions:
    run: Path = option(help="Run folder written by `aaas-profile sweep` (holds scores/).", argument=True)
    x: str = option("steps", help="x axis: steps, unet_calls or wall_s (seconds per image).")
    bootstrap: int = option(acceptance.BOOTSTRAP_RESAMPLES, range=Range(0, 1_000_000),
                            help="Bootstrap resamples over images for the intervals (0: none).")
    seed: int = option(0, range=SEED, help="Seed of the bootstrap.")
    level: float = option(acceptance.INTERVAL_LEVEL, range=Range(0, 1, integer=False, low_open=True, high_open=True),
                          help="Confidence level of the intervals.")
    metrics: list[str] | None = option(None, help="Comma list of metrics to fit.", shown="all in the run")
    drop_nan: bool = option(False, decls=("--drop-nan",), help="Leave out NaN scores instead of stopping.")
    plots: bool = option(True, decls=("--plots/--no-plots",), help="Write plots/*.png.")
    fit_model: str = option("image_offsets", help="image_offsets: the curve's shape shared, a level per image "
                            "(every image is measured at every step count); pooled: one curve through all points.")
    out: Path | None = option(None, help="Where to write the fit (a .json file, or a folder for FOLDER/fit.json); "
                              "its plots go beside it.", shown="<run>/fit.json for --x steps, which simulate and "
                              "report read; <run>/fit-<x>.json for another axis")
    replace: bool = option(False, decls=("--replace",),
                           help="Overwrite a fit against another x axis at --out (refused otherwise).")


# -- report ---------------------------------------------------------------------------------------------------------


@dataclass
class ReportOptions:
    run: Path = option(help="Run folder (from sweep, fit and/or simulate).", argument=True)
    out: Path | None = option(None, help="Where to write the page (a folder: FOLDER/report.html).",
                              shown="<run>/report.html")


# -- simulate -------------------------------------------------------------------------------------------------------


@dataclass
class SimulateOptions:
    # "{policies}": the registry's names, filled in by the command line (the registry is the simulator's)
    policy: str = option("sac", help="Policy to run: {policies}; 'all' or a comma list for one leaderboard "
                         "(docs/leaderboard.md).")
    preset: str = option("paper", help="ASP set when neither --profile nor --asps is given, drawn with --seed as "
                         "the authors' code draws it: 'paper' (capacities 400-1500, Du et al. 2023) or 'agod' "
                         "(capacities 400-900, the follow-up's D2SAC paper).")
    profile: Path | None = option(None, help="fit.json whose [0, 1]-scale curves and runtime model define the ASPs "
                                  "(one profiled curve per ASP).")
    asps: Path | None = option(None, help="CSV of ASPs with columns sid, ax, ay, bx, by, capacity.")
    metric: str | None = option(None, help="Metric whose curves a --profile uses.", shown="the profile's first")
    sampler: str | None = option(None, help="Sampler whose curves and runtime a --profile uses (a sweep with "
                                 "--sampler holds several).", shown="repaint when the profile has it, else its first")
    allow_flagged_profile: bool = option(False, decls=("--allow-flagged-profile",), help="Use --profile curves "
                                         "that `fit` flagged as flat (no measurable effect of steps), worse with "
                                         "steps, or under-determined; refused otherwise.")
    runtime: str = option("profile", help="Task runtime model with --profile: 'profile' (the fit's measured model, "
                          "rescaled) or 'paper' ((0.001·t² + 2.5·t − 14)·60 s), the fallback when the measured one "
                          "is unusable.")
    episodes: int = option(10, range=Range(1, 1_000_000),
                           help="Evaluation episodes per policy (same task streams for all).")
    train_episodes: int = option(30, range=Range(0, 10_000_000), decls=("--train-episodes",),
                                 help="Training episodes of a learning policy (≈1,000 env steps each).")
    seed: int = option(0, range=SEED, help="Seed of the ASP draw, the task streams and the agent.")
    # tasks arrive at 0.001/s: 1e9 s is a million tasks an episode, 1,000 times the paper's
    horizon: float = option(1e6, range=Range(0, 1e9, integer=False, low_open=True, unit="seconds"),
                            help="Episode length in seconds; tasks arrive at 0.001/s, so ≈ horizon/1000 tasks per "
                            "episode (the paper: 1e6).")
    out: Path | None = option(None, help="Run folder; outputs go to <out>/sim/<policy>/.",
                              shown="results/<preset>, results/<csv name>, or the profile's folder")
    baselines: bool = option(True, help="Also evaluate every baseline as a reference.")
    optimum: bool = option(True, help="Solve each evaluation stream's hindsight optimum.")
    optimum_time_limit: float = option(1.0, range=Range(0, 86_400, integer=False, low_open=True, unit="seconds"),
                                       decls=("--optimum-time-limit",), help=(
        "Seconds per integer program (HiGHS). It rarely finishes within any practical limit on the paper preset, "
        "so the optimum is reported as an upper bound (LP relaxation or the dual bound reached); a longer limit "
        "tightens it a little (measured: 0.5-0.6 % from 1 s to 10 s)."))
    resume: bool = option(False, help="Continue a learning policy's training from <out>/sim/<policy>/checkpoint.pt.")
    checkpoint: Path | None = option(None, help="Evaluate this checkpoint of the learning policy (SAC, D2SAC: "
                                  "checkpoint.pt; DQN, PPO: model.zip); no training.")
    auto_alpha: bool = option(False, decls=("--auto-alpha",),
                              help="Learn SAC's entropy temperature instead of the fixed 0.05.")
    seeds: list[int] | None = option(None, range=SEED, help="Run several seeds (e.g. 0-9 or 0,3,7) into "
                                     "<out>/seed-K/ and aggregate them in <out>/sim/<policy>/seeds*.parquet; "
                                     "overrides --seed.")
    ray: str | None = option(None, help="With --seeds: run the seeds as Ray tasks: 'local', 'auto' or "
                             "ray://HOST:PORT. Needs aaas-profile\\[ray].")


# -- train ----------------------------------------------------------------------------------------------------------


@dataclass
class TrainOptions:
    data: Path = option(help="Folder of training images (files directly in it; subfolders such as eval/ are not "
                        "used).", required=True)
    out: Path = option(help="Output diffusers folder, e.g. models/NAME; its checkpoint/ is resumed.", required=True)
    resolution: int = option(64, range=Range(16, 4096), help="Side of the generated images, px.")
    steps: int = option(2000, range=Range(1, 10**9),
                        help="Total optimisation steps (a resumed run continues up to it).")
    batch_size: int = option(8, range=Range(1, 65_536), help="Images per step.")
    lr: float = option(1e-3, range=Range(0, 1, integer=False, low_open=True, high_open=True),
                       help="AdamW learning rate after the warm-up.")
    warmup_steps: int = option(50, range=Range(0, 10**9), help="Linear learning-rate warm-up, steps.")
    ema_decay: float = option(0.995, range=Range(0, 1, integer=False, high_open=True),
                              help="EMA decay of the saved weights (with warm-up).")
    seed: int = option(0, range=SEED, help="Seed of the weights, crops, flips, timesteps and noise.")
    min_crop: float = option(0.7, range=Range(0, 1, integer=False, low_open=True),
                             help="Smallest random crop, as a fraction of the shorter side.")
    flip: bool = option(True, decls=("--flip/--no-flip",), help="Random left-right flips.")
    channels: list[int] = option(factory=lambda: [16, 32, 64, 64], range=Range(8, 8192), repeats=True,
                                 help="UNet channels per level, comma list.")
    layers_per_block: int = option(1, range=Range(1, 64), help="ResNet layers per UNet level.")
    checkpoint_every: int = option(200, range=Range(1, 10**9), help="Write checkpoint/state.pt every N steps.")
    resume: bool = option(True, decls=("--resume/--no-resume",), help="Continue from <out>/checkpoint.")
    device: str = option("auto", help="auto (CUDA when present), cpu, cuda or cuda:N.")
    precision: str = option("auto", help="auto (bf16, else fp16 on CUDA; fp32 on CPU), fp32, bf16, fp16.")
    time_limit: float | None = option(None, range=Range(0, 10**7, integer=False, unit="minutes"),
                                      help="Stop after this many minutes (saved and resumable).")
    # the high end is the cores this process may use (range_of)
    threads: int | None = option(None, range=Range(1, None), help="torch CPU threads.", shown="torch's choice")


# -- models import-repaint ------------------------------------------------------------------------------------------


@dataclass
class ImportRepaintOptions:
    file: Path = option(help="RePaint / guided-diffusion checkpoint, e.g. celeba256_250000.pt.", argument=True)
    name: str = option(help="Name to register: writes models/NAME/ and models/NAME.toml.", required=True)
    config: str = option("celeba256", help="Architecture and schedule of the checkpoint: celeba256 (for "
                         "celeba256_250000.pt) or places256 (places256_300000.pt).")
    force: bool = option(False, decls=("--force",), help="Replace a model of the same name.")


# Each command's option classes, in the order their options are listed.
COMMANDS: dict[str, tuple[type, ...]] = {
    "sweep": (SweepOptions, SweepRun),
    "fit": (FitOptions,),
    "report": (ReportOptions,),
    "simulate": (SimulateOptions,),
    "train": (TrainOptions,),
    "import-repaint": (ImportRepaintOptions,),
}


def declared(command: str) -> list[Field]:
    return [f for cls in COMMANDS[command] for f in fields(cls)]


# -- ranges: every numeric option's, from the fields above -------------------------------------------------------

RANGES: dict[str, dict[str, Range]] = {
    command: {key_of(f): spec_of(f).range for f in declared(command) if spec_of(f).range is not None}
    for command in COMMANDS
}
RANGES = {command: table for command, table in RANGES.items() if table}
# List options whose items are each held to the range, and may not repeat unless their order is the meaning.
LIST_OPTIONS = {(command, key_of(f)) for command, classes in COMMANDS.items() for cls in classes
                for f in fields(cls) if is_list(types_of(cls)[f.name])}
REPEATS_ALLOWED = {(command, key_of(f)) for command in COMMANDS for f in declared(command) if spec_of(f).repeats}


def range_of(command: str, option: str) -> Range:
    r = RANGES[command][option]
    if command == "train" and option == "threads":
        return Range(1, cores(), unit="(the cores this process may use)")
    return r


def describe(command: str, option: str) -> str:
    """The range in words, the same on every machine (for docs/cli.md)."""
    if command == "train" and option == "threads":
        return "an integer in [1, the cores this process may use]"
    return RANGES[command][option].text()


def check(command: str, option: str, value, error: type[UserError] = RangeError, name: str | None = None) -> None:
    """Raise ``error`` (one line) unless ``value`` is in the range of ``command``'s ``option``; None passes (not
    given). A list is checked item by item and refused when an item repeats. The message names the flag, or
    ``name`` where the value came from a file (config.toml's ``batch_size``)."""
    if value is None:
        return
    r, label = range_of(command, option), name or flag(option)
    if isinstance(value, list | tuple):
        for item in value:
            if not r.holds(item):
                raise error(f"{label}: {item} is out of range; each item must be {r.text()}")
        if (command, option) not in REPEATS_ALLOWED:
            no_repeats(option, value, error, label)
        return
    if not r.holds(value):
        raise error(f"{label} must be {r.text()}, got {value}")


def check_all(command: str, values: dict, error: type[UserError] = RangeError, keyed: bool = False) -> None:
    """:func:`check` for every option of ``command`` present in ``values``, and no repeated item in any list
    option; ``keyed``: the values came from a file, and the message names each by its key (``batch_size``)
    instead of its flag."""
    for option in RANGES.get(command, {}):
        if option in values:
            check(command, option, values[option], error, name=option if keyed else None)
    for listed, option in LIST_OPTIONS:
        if listed == command and option not in RANGES.get(command, {}) and values.get(option) is not None:
            no_repeats(option, values[option], error, option if keyed else None)


# -- environment variables -------------------------------------------------------------------------------------------

# Every environment variable the tool reads, with what it holds. Integers are read through ``env_int``: one line
# naming the variable for text that is not an integer in its range.
ENVIRONMENT: dict[str, tuple[Range | None, str]] = {
    "RANK": (Range(0, 65_535), "this process's shard index under torchrun (with WORLD_SIZE)"),
    "WORLD_SIZE": (Range(1, 65_536), "the shard count under torchrun"),
    "LOCAL_RANK": (Range(0, 65_535), "the GPU this process uses under torchrun (cuda:LOCAL_RANK)"),
    "SLURM_ARRAY_TASK_ID": (Range(0, 10**9), "this process's task id in a SLURM array"),
    "SLURM_ARRAY_TASK_COUNT": (Range(1, 65_536), "the SLURM array's task count"),
    "SLURM_ARRAY_TASK_MIN": (Range(0, 10**9), "the SLURM array's first task id"),
    "HF_HUB_OFFLINE": (None, "set (not 0/false/no): never download a model from the hub"),
}


def env_int(environ: typing.Mapping[str, str], name: str, error: type[UserError] = RangeError,
            default: int | None = None) -> int | None:
    """The integer environment variable ``name`` (declared in ``ENVIRONMENT``), ``default`` when unset; ``error``
    (one line naming it) for text that is not an integer in its range."""
    r = ENVIRONMENT[name][0]
    text = environ.get(name)
    if text is None:
        return default
    if not re.fullmatch(r"[+-]?[0-9]+", text.strip()):  # ASCII digits only: int() would take "1_000" and "٣"
        raise error(f"{name}={text!r} is not an integer ({ENVIRONMENT[name][1]}); fix or unset it")
    value = int(text.strip())
    if r is not None and not r.holds(value):
        raise error(f"{name}={text!r}: must be {r.text()} ({ENVIRONMENT[name][1]}); fix or unset it")
    return value


def env_flag(environ: typing.Mapping[str, str], name: str) -> bool:
    """Whether the on/off environment variable ``name`` is set (anything but empty, 0, false or no)."""
    return environ.get(name, "0").strip().lower() not in ("", "0", "false", "no")
