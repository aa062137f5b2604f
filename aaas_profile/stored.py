"""The one checked reader of the files the tool writes and later reads back (docs/run-folder.md, "Files read
back").

A file in a run folder, a model folder or a simulator folder can be edited, truncated, copied or written by
another version between two commands, so it is read like a command-line value: through a schema. Each schema is
a dataclass whose annotations are the fields' types, whose fields without a default are the required keys, and
whose ``field(metadata=...)`` gives a range (``at_least``, ``at_most``) or a set of ``choices``. A key the schema
does not name is refused too, unless the schema is ``OPEN``: records of the environment, a fit.json curve
(its format lets a version add fields) and a diffusers config (diffusers' own keys); what is read from those
is typed all the same. Whatever is wrong, the reader raises :class:`StoredFileError` with one line that names
the file, the field and what to do, and it raises before the command writes anything.

Checked readers return the parsed value itself (dicts and lists as JSON and TOML give them, a frame for a
table), so callers keep their code; what they index is then known to be there, of its type and in its range.

Every schema lives in this one module on purpose, which is why it is long: it is the list of what the tool
trusts from disk, read in one place, and ``tests/test_stored.py`` walks it file by file.
"""

from __future__ import annotations

import json
import math
import tomllib
import types
import typing
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, ClassVar

from aaas_profile.errors import UserError


class StoredFileError(UserError, ValueError):
    """A file the tool wrote and reads back is damaged or foreign; the message names the file and the field in
    one line and says what to do."""


def at_least(lo: float, default=MISSING):
    """A field with a lower bound (and a default when given): ``n: int = at_least(0)``."""
    return field(default=default, metadata={"at_least": lo})


def in_range(lo: float, hi: float, default=MISSING):
    """A field with both bounds (and a default when given)."""
    return field(default=default, metadata={"at_least": lo, "at_most": hi})


def one_of(choices, default=MISSING):
    """A field that takes one of ``choices`` (and a default when given)."""
    return field(default=default, metadata={"choices": tuple(choices)})


class Schema:
    """Base of the schemas: ``OPEN`` schemas take keys they do not name (left unchecked)."""

    OPEN: ClassVar[bool] = False


def _fail(path: Path, where: str, message: str, advice: str) -> StoredFileError:
    err = StoredFileError(f"{path}: {where + ': ' if where else ''}{message}; {advice}")
    err.problem = f"{where + ': ' if where else ''}{message}"  # the line without the file and the advice
    return err


def read_text(path: Path, advice: str) -> str:
    """The file as UTF-8 text. A file that cannot be read or is not UTF-8 is one line (a ``UnicodeDecodeError``
    is neither an ``OSError`` nor a parse error, so it is caught here, where the file is known)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise _fail(path, "", f"cannot read it ({(err.strerror or type(err).__name__).lower()})", advice) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise _fail(path, "", f"not UTF-8 text (byte 0x{data[err.start]:02x} at offset {err.start})",
                    advice) from None


def load_json(path: Path, advice: str):
    """The JSON document in ``path``, parsed but not yet checked. NaN and Infinity, which JSON does not have and
    the tool never writes, are refused naming the first field that holds one."""
    text = read_text(path, advice)
    try:
        document = json.loads(text)
    except json.JSONDecodeError as err:
        raise _fail(Path(path), "", f"not valid JSON ({err.msg} at line {err.lineno})", advice) from None
    where = _first_non_finite(document, "")
    if where is not None:
        at, value = where
        name = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}[repr(value)]
        raise _fail(Path(path), at, f"holds {name}, which JSON does not have (a finite number is needed)", advice)
    return document


def _first_non_finite(value, where: str):
    """(dotted path, value) of the first NaN or infinity in a parsed JSON document, or None."""
    if isinstance(value, float) and not math.isfinite(value):
        return where, value
    if isinstance(value, dict):
        children = ((f"{where}.{key}" if where else str(key), item) for key, item in value.items())
    elif isinstance(value, list):
        children = ((f"{where}[{i}]", item) for i, item in enumerate(value))
    else:
        return None
    for at, item in children:
        found = _first_non_finite(item, at)
        if found is not None:
            return found
    return None


def load_toml(path: Path, advice: str) -> dict:
    """The TOML document in ``path``, parsed but not yet checked."""
    text = read_text(path, advice)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise _fail(Path(path), "", f"not valid TOML ({err})", advice) from None


def read_json(path: Path, schema: type, advice: str):
    """``path``'s JSON document, checked against ``schema`` (see the module docstring)."""
    return check(load_json(path, advice), schema, path, advice)


def read_toml(path: Path, schema: type, advice: str) -> dict:
    return check(load_toml(path, advice), schema, path, advice)


def check(value, schema, path: Path, advice: str, where: str = ""):
    """``value`` if it fits ``schema`` (a dataclass, or a type such as ``list[int]``), else StoredFileError
    naming ``path`` and the field (``where``, dotted, with list indices in brackets)."""
    _check(value, schema, Path(path), advice, where)
    return value


def _name(kind, plural: bool = False) -> str:
    """A type in words, as the one-line errors say it: "a list of integers", "a string or null"."""
    if kind is type(None):
        return "null"
    if kind is Any:
        return "any values" if plural else "any value"
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_name(k, plural) for k in typing.get_args(kind))
    if origin is list:
        return ("lists" if plural else "a list") + f" of {_name(typing.get_args(kind)[0], True)}"
    if origin is dict:
        return ("objects" if plural else "an object") + f" of {_name(typing.get_args(kind)[1], True)}"
    if is_dataclass(kind):
        return "objects" if plural else "an object"
    words = {str: ("a string", "strings"), int: ("an integer", "integers"), float: ("a number", "numbers"),
             Measured: ("a number or NaN", "numbers or NaN"),
             bool: ("true or false", "true or false")}
    return words[kind][plural] if kind in words else str(kind)


class Measured(float):
    """As a schema type: a number that is NaN where the quantity was not measured (a learning-history row's
    losses and rewards before the first update or evaluation). NaN passes; infinity does not."""


def _fits(value, kind) -> bool:
    """Whether ``value`` has the type ``kind`` at its top level (contents are checked by _check)."""
    if kind is Any:
        return True
    if kind is Measured:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind is type(None):
        return value is None
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, k) for k in typing.get_args(kind))
    if origin is list:
        return isinstance(value, list)
    if origin is dict:
        return isinstance(value, dict)
    if is_dataclass(kind):
        return isinstance(value, dict)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, kind)


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check(value, kind, path: Path, advice: str, where: str) -> None:
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = [k for k in typing.get_args(kind) if _fits(value, k)]
        if not options:
            raise _fail(path, where, f"must be {_name(kind)}, got {_show(value)}", advice)
        _check(value, options[0], path, advice, where)
        return
    if not _fits(value, kind):
        raise _fail(path, where, f"must be {_name(kind)}, got {_show(value)}", advice)
    if isinstance(value, float) and not math.isfinite(value) and not (kind is Measured and math.isnan(value)):
        raise _fail(path, where, f"must be {'a number or NaN' if kind is Measured else 'a finite number'}, "
                                 f"got {value}", advice)
    if origin is list:
        item = typing.get_args(kind)[0]
        for i, v in enumerate(value):
            _check(v, item, path, advice, f"{where}[{i}]")
    elif origin is dict:
        item = typing.get_args(kind)[1]
        for k, v in value.items():
            _check(v, item, path, advice, f"{where}.{k}" if where else str(k))
    elif is_dataclass(kind):
        _check_record(value, kind, path, advice, where)


def _check_record(value: dict, schema, path: Path, advice: str, where: str) -> None:
    hints = typing.get_type_hints(schema)
    known = {f.name: f for f in fields(schema)}
    if not getattr(schema, "OPEN", False):
        extra = sorted(set(value) - set(known))
        if extra:
            names = ", ".join(f"{where}.{k}" if where else k for k in extra)
            raise _fail(path, "", f"unexpected key(s) {names}, which this aaas-profile does not write", advice)
    missing = [name for name, f in known.items()
               if name not in value and f.default is MISSING and f.default_factory is MISSING]
    if missing:
        raise _fail(path, where, f"lacks {', '.join(missing)}", advice)
    for name, f in known.items():
        at = f"{where}.{name}" if where else name
        if name not in value:
            continue
        v = value[name]
        _check(v, hints[name], path, advice, at)
        _check_range(v, f.metadata, path, advice, at)


def _check_range(value, metadata, path: Path, advice: str, where: str) -> None:
    if value is None or not metadata:
        return
    items = value if isinstance(value, list) else [value]
    for v in items:
        if "choices" in metadata and v not in metadata["choices"]:
            raise _fail(path, where, f"{_show(v)} is not one of {', '.join(map(str, metadata['choices']))}", advice)
        if "at_least" in metadata and v < metadata["at_least"]:
            raise _fail(path, where, f"must be ≥ {metadata['at_least']}, got {_show(v)}", advice)
        if "at_most" in metadata and v > metadata["at_most"]:
            raise _fail(path, where, f"must be ≤ {metadata['at_most']}, got {_show(v)}", advice)


# ---- the schemas ---------------------------------------------------------------------------------------------
# One per file the tool writes and reads back. Keys that older versions did not write have a default (None): a
# folder from an older version reads as it is. Ranges are what the writer can produce.



CONTENT_HASH = "sha256 of the file's bytes"  # how manifest.json's content digests are made (images.file_sha256)


@dataclass
class ContentRecord(Schema):
    """manifest.json ``content``: what each image and mask of the sweep is (docs/run-folder.md, "Identity")."""

    hash: str = one_of([CONTENT_HASH])
    images: dict[str, str] = MISSING  # image_id → sha256 hex
    masks: dict[str, str] = MISSING  # mask name → sha256 hex (user mask files only; families are code)


@dataclass
class Invocation(Schema):
    started: str
    command: str
    cells_already_done: int = at_least(0)
    # absent in older files or until the invocation finishes; never null when present
    id: str = None
    shard: str = None
    samplers: list[str] = None
    host: str = None
    finished: str = None
    cells_run: int = at_least(0, None)
    wall_s: float = at_least(0, None)


@dataclass
class ModelRecord(Schema):
    """manifest.json ``model`` (``LoadedModel.describe``): the keys that are read are typed, the rest recorded."""

    OPEN: ClassVar[bool] = True
    name: str | None = None
    source: str | None = None
    weights_sha256: str | None = None
    resolution: int | None = at_least(1, None)
    licence: str | None = None


@dataclass
class SamplerRecord(Schema):
    sampler: str
    sampler_params: str
    respacing: str
    jump_length: int = at_least(0)
    jump_n_sample: int = at_least(0)


@dataclass
class ManifestFile(Schema):
    """``manifest.json`` of a run folder (written by ``sweep.runfolder._record_invocation``)."""

    run_id: str
    model: ModelRecord
    environment: dict[str, Any]
    dtype: str
    seeds: dict[str, Any]
    images: list[str]
    masks: list[str]
    invocations: list[Invocation]
    dtype_reason: str | None = None
    channels_last: bool | None = None
    cpu: dict[str, Any] | None = None
    samplers: dict[str, SamplerRecord] | None = None
    content: ContentRecord | None = None


@dataclass
class RunConfigFile(Schema):
    """A run folder's ``config.toml`` (``SweepConfig.to_toml``): the keys and their types. Its values' ranges
    are ``SweepConfig.validate``'s (``sweep.read_run_config`` applies both)."""

    model: str
    data: str
    masks: list[str]
    steps: list[int]
    seeds: list[int]
    jump_length: int
    jump_n_sample: int
    eta: float
    metrics: list[str]
    batch_size: int
    device: str
    dtype: str
    save_images: int
    sampler: list[str] | None = None
    respacing: list[str] | None = None
    limit: int | None = None
    out: str | None = None


@dataclass
class CheckpointMeta(Schema):
    """``sim/<policy>/checkpoint.json``: what a learning policy was trained on (``runner._start_checkpoint``)."""

    seed: int = in_range(0, 2**32 - 1)
    asps_source: str = MISSING
    asps_digest: str = MISSING


@dataclass
class Stat(Schema):
    mean: float | None
    std: float | None = at_least(0, None)


@dataclass
class Optimum(Schema):
    mean: float | None
    exact_episodes: int = at_least(0)
    seconds: float = at_least(0)


@dataclass
class SimSummary(Schema):
    """``sim/<policy>/summary.json`` (``runner.simulate``); ``report`` reads it."""

    policies: dict[str, dict[str, Stat]]
    policy: str | None = None
    asps: str | None = None
    seed: int | None = at_least(0, None)
    episodes: int | None = at_least(1, None)
    eval_stream_seeds: list[int] | None = None
    options: dict[str, Any] | None = None
    env: dict[str, Any] | None = None
    train_seconds: float | None = at_least(0, None)
    train_env_steps: int | None = at_least(0, None)
    sac_selected_actor: dict[str, Any] | None = None
    sac_learning: dict[str, Any] | None = None
    optimum: Optimum | None = None
    notes: list[str] | None = None


@dataclass
class TrainState(Schema):
    """``train``'s checkpoint (a ``torch.save`` of plain values and tensors, ``train.save_checkpoint``): the
    tensors' containers are checked by torch's ``load_state_dict``, the plain values here."""

    step: int = at_least(0)
    unet: dict[str, Any] = MISSING
    ema: dict[str, Any] = MISSING
    optimizer: dict[str, Any] = MISSING
    scaler: dict[str, Any] = MISSING
    generator: Any = MISSING
    losses: list[float] = MISSING
    seconds: float = at_least(0)
    trajectory: dict[str, Any] = MISSING


# ---- tables (Parquet) ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    """One column of a table the tool writes: the Arrow type names it may have (``str(pa.DataType)``), its range,
    and whether NaN (a value that could not be computed) or a missing value may appear."""

    types: tuple[str, ...]
    at_least: float | None = None
    at_most: float | None = None
    choices: tuple | None = None
    nan: bool = False
    required: bool = True


def check_table_schema(path: Path, names_types: dict[str, str], columns: dict[str, Column], advice: str,
                       error: type[UserError] = StoredFileError, optional: tuple[str, ...] = ()) -> None:
    """The column names and types of a table (``{name: str(arrow type)}``) against ``columns``: no column the
    tool does not write, none missing (apart from ``optional`` and those not ``required``), each of its type."""
    extra = [n for n in names_types if n not in columns]
    if extra:
        raise error(f"{path}: unexpected column(s) {', '.join(extra)}, which this aaas-profile does not write; "
                    f"{advice}")
    missing = [n for n, c in columns.items() if c.required and n not in names_types and n not in optional]
    if missing:
        raise error(f"{path}: column {', '.join(missing)} missing; {advice}")
    for name, kind in names_types.items():
        if kind not in columns[name].types:
            raise error(f"{path}: column {name} must be {' or '.join(columns[name].types)}, got {kind}; {advice}")


def check_table_values(path: Path, table, columns: dict[str, Column], advice: str,
                       error: type[UserError] = StoredFileError) -> None:
    """The values of an Arrow table's columns against ``columns``: no missing value, NaN only where allowed,
    no infinity, each in its range or among its choices. Names the column and the first row at fault."""
    import numpy as np

    for name in table.column_names:
        spec, column = columns[name], table.column(name)
        # pandas writes NaN in a float column as a missing value: where NaN is allowed, so is that
        if column.null_count and not (spec.nan and str(column.type) == "double"):
            row = column.to_pandas().isna().to_numpy().nonzero()[0][0]
            raise error(f"{path}: column {name}, row {row}: empty; {advice}")
        values = column.to_numpy(zero_copy_only=False)
        if values.dtype.kind == "f":
            bad = ~np.isfinite(values) if not spec.nan else np.isinf(values)
            if bad.any():
                row = int(bad.nonzero()[0][0])
                raise error(f"{path}: column {name}, row {row}: must be a finite number, got {values[row]}; {advice}")
        if spec.choices is not None:
            import pandas as pd

            outside = (~pd.Series(values).isin(spec.choices)).to_numpy().nonzero()[0]
            if len(outside):
                raise error(f"{path}: column {name}, row {outside[0]}: {_show(values[outside[0]])} is not one of "
                            f"{', '.join(map(str, spec.choices))}; {advice}")
        for bound, compare, word in ((spec.at_least, np.less, "≥"), (spec.at_most, np.greater, "≤")):
            if bound is None:
                continue
            with np.errstate(invalid="ignore"):
                bad = compare(values, bound)
            if bad.any():
                row = int(bad.nonzero()[0][0])
                raise error(f"{path}: column {name}, row {row}: must be {word} {bound:g}, got {values[row]}; {advice}")


def read_parquet(path: Path, columns: dict[str, Column], advice: str):
    """A Parquet table the tool wrote (not the scores, which ``runs.read_part`` reads with its legacy rules), as
    a pandas frame, after its schema and values are checked."""
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as err:  # pyarrow raises several types for a damaged or foreign file
        raise _fail(Path(path), "", f"not a readable Parquet table ({type(err).__name__})", advice) from None
    check_table_schema(Path(path), {f.name: str(f.type) for f in table.schema}, columns, advice)
    check_table_values(Path(path), table, columns, advice)
    return table.to_pandas()


# ``sim/sac/training.parquet`` (``sac.train``'s rows; another learning policy keeps its own): one row per
# training episode; NaN where a quantity was not measured that episode (no evaluation, no update yet).
TRAINING_COLUMNS = {
    "episode": Column(("int64",), at_least=1),
    "env_steps": Column(("int64",), at_least=0),
    "updates": Column(("int64",), at_least=0),
    "train_reward": Column(("double", "int64"), nan=True),
    "crashes": Column(("double", "int64"), at_least=0, nan=True),
    "seconds": Column(("double",), at_least=0),
    "wall_s": Column(("double",), at_least=0),
    "alpha": Column(("double",), at_least=0),
    "q_loss": Column(("double",), nan=True, required=False),
    "actor_loss": Column(("double",), nan=True, required=False),
    "eval_reward": Column(("double",), nan=True),
}
# DQN's and PPO's learning curve (``sim/sb3.py``): SB3 reports no updates, losses or temperature
SB3_TRAINING_COLUMNS = {name: TRAINING_COLUMNS[name]
                        for name in ("episode", "env_steps", "train_reward", "crashes", "eval_reward", "wall_s")}

_TEXT = ("string", "large_string")  # pandas writes either, by version
# ``sim/leaderboard.parquet`` (``sim/leaderboard.summarise``); ``report`` reads it
LEADERBOARD_COLUMNS = {
    "policy": Column(_TEXT),
    "seeds": Column(("int64",), at_least=1),
    "reward_mean": Column(("double",)),
    "reward_std": Column(("double",), at_least=0),
    "best_episode": Column(("double",)),
    "pct_oracle_mean": Column(("double",), nan=True),
    "pct_oracle_std": Column(("double",), at_least=0, nan=True),
    "pct_bound": Column(("double",), nan=True),
    "crashes": Column(("double",), at_least=0),
    "reached_97": Column(_TEXT),
    "steps_to_97": Column(("double",), at_least=0, nan=True),
    "seconds_to_97": Column(("double",), at_least=0, nan=True),
}
# ``sim/leaderboard_episodes.parquet``: every evaluation episode behind the leaderboard (``report`` reads the
# first three columns; the others are the runner's episode record)
_COUNT = Column(("int64",), at_least=0)
LEADERBOARD_EPISODE_COLUMNS = {
    "policy": Column(_TEXT), "seed": _COUNT, "reward": Column(("double",)),
    **{name: Column(("int64",), at_least=0, required=False)
       for name in ("episode", "stream_seed", "crashes", "interrupted", "dropped", "finished", "running", "steps")},
    **{name: Column(("double",), nan=True, required=False)
       for name in ("finished_gain", "mean_reward_per_finished", "optimum", "fraction_of_optimum")},
    "optimum_exact": Column(("bool",), required=False),
}


# ``fit.json`` (docs/fit-json.md; written by ``fitrun.build_document``, read through ``fitfile.load``). Its top
# level is closed; a curve is open, since the format lets a version gain fields (and a hand-written profile for
# ``simulate --profile`` holds only a few), but every field a reader indexes is typed here.


@dataclass
class FitParameter(Schema):
    OPEN: ClassVar[bool] = True
    value: float
    ci: list[float | None] | None = None
    sd: float | None = at_least(0, None)


@dataclass
class Scale01(Schema):
    ax: float = at_least(0)
    ay: float = MISSING
    bx: float = at_least(0)
    by: float = MISSING


@dataclass
class FitFlag(Schema):
    OPEN: ClassVar[bool] = True
    code: str = None
    message: str = None
    summary: str = None


@dataclass
class FitStop(Schema):
    OPEN: ClassVar[bool] = True
    steps: int = at_least(1)
    median: float = MISSING
    best_median: float = MISSING
    ci: list[float | None] | None = None
    unet_calls: float | None = at_least(0, None)
    wall_s: float | None = at_least(0, None)
    top_of_grid: bool = None


@dataclass
class FitEffect(Schema):
    OPEN: ClassVar[bool] = True
    p_value: float | None = in_range(0, 1, None)
    trend: float | None = None


@dataclass
class FitLevels(Schema):
    OPEN: ClassVar[bool] = True
    steps: list[float] = None


@dataclass
class FitCurve(Schema):
    """A curve as ``fit`` writes it; a hand-written profile for ``simulate --profile`` may hold only
    ``scale01`` (docs/simulate.md), so every key is optional here and each reader says what it needs."""

    OPEN: ClassVar[bool] = True
    model: str = None
    mask: str = None
    metric: str = None
    sampler: str = None
    sampler_params: str = None
    respacing: str = None
    jump_length: int = at_least(0, None)
    jump_n_sample: int = at_least(0, None)
    higher_is_better: bool = None
    ax: FitParameter = None
    ay: FitParameter = None
    bx: FitParameter = None
    by: FitParameter = None
    scale01: Scale01 = None
    flags: list[FitFlag] = None
    stop: FitStop | None = None
    effect: FitEffect | None = None
    r2: float | dict[str, float | None] | None = None
    levels: FitLevels = None


@dataclass
class FitFile(Schema):
    schema_version: int
    curves: list[FitCurve]
    tool: dict[str, Any] = None
    created: str = None
    run: str = None
    model_form: str = None
    fit_model: dict[str, Any] = None
    x: dict[str, Any] = None
    bootstrap: dict[str, Any] = None
    recommendations: list[dict[str, Any]] = None
    scales: dict[str, Any] = None
    runtime: dict[str, Any] | None = None


# A diffusers model folder (``train`` and ``models import-repaint`` write one; ``sweep`` reads it back): the
# fields aaas-profile reads. The rest belongs to diffusers, which checks it when it builds the model.


@dataclass
class UNetConfigFile(Schema):
    OPEN: ClassVar[bool] = True
    _class_name: str


@dataclass
class SchedulerConfigFile(Schema):
    OPEN: ClassVar[bool] = True
    num_train_timesteps: int = at_least(1, None)
    beta_start: float = in_range(0, 1, None)
    beta_end: float = in_range(0, 1, None)
    beta_schedule: str = None
    clip_sample: bool = None
    trained_betas: list[float] | None = None
    variance_type: str | None = None


@dataclass
class SacBest(Schema):
    episode: int = at_least(0)
    validation: float = MISSING
    actor: dict[str, Any] = MISSING


@dataclass
class SacState(Schema):
    """``sim/sac/checkpoint.pt`` (``DiscreteSAC.state_dict``, format 2): plain values here; the modules' and
    optimisers' tensors are checked by torch's ``load_state_dict`` against the network they are loaded into."""

    format: int = one_of([2])
    config: dict[str, Any] = MISSING
    obs_dim: int = at_least(1)
    n_actions: int = at_least(1)
    steps_ratio: float = at_least(0)
    actor: dict[str, Any] = MISSING
    critic: dict[str, Any] = MISSING
    critic_target: dict[str, Any] = MISSING
    actor_opt: dict[str, Any] = MISSING
    q_opt: dict[str, Any] = MISSING
    log_alpha: Any = MISSING
    alpha_opt: dict[str, Any] | None = MISSING
    buffer: dict[str, Any] = MISSING
    rng: dict[str, Any] = MISSING
    torch_rng: Any = MISSING
    env_steps: int = at_least(0)
    updates: int = at_least(0)
    episodes: int = at_least(0)
    update_credit: float = at_least(0)
    wall_s: float = at_least(0)
    best: SacBest | None = None
    # one row per episode trained so far (``training.parquet``'s columns); absent before it was kept
    history: list[dict[str, Measured]] | None = None


@dataclass
class Sb3Meta(Schema):
    """``sim/<dqn|ppo>/model.json``, beside SB3's ``model.zip`` (``sim/sb3.py``)."""

    episodes: int = at_least(0)
    env_steps: int = at_least(0)
    wall_s: float = at_least(0)
    best_validation: float | None = MISSING


@dataclass
class ModelCardFile(Schema):
    """``models/<name>.toml``: a named model (``models.ModelCard``)."""

    resolution: int = at_least(1)
    name: str = None
    licence: str = None
    description: str = None
    domain: str = None
    hub_id: str = None
    local_dir: str = None
    auto_dtype: str = None
