"""The run folder (docs/design.md): ``config.toml``, ``manifest.json`` and the long scores table in Parquet parts.

Why one module of some 430 lines: it alone owns the run folder's on-disk format (docs/design.md), the part
files, the locks and claims that let processes share one folder, and the manifest; keeping the format and its
concurrency rules in one place is what lets every other stage stay ignorant of them.

Part files are written atomically (a hidden temp file, flushed to disk, then renamed), so a sweep killed at
any moment leaves either a whole part or none: starting it again skips exactly the cells already written.

Several processes may work on one run folder at once (shards, or the same command started twice). They
coordinate through ``scores/``: a short exclusive lock (``scores/.lock``, ``flock``) around reading which cells
are done, claiming cells, and writing a part; and a claim file per batch in progress
(``scores/.claim-<host>-<pid>-<hex>.json``, the batch's cell keys), which its owner holds ``flock``'ed for as
long as it runs. A claim whose lock can be taken belongs to a process that is gone, so it is removed and its
cells become free again. A part's temp file exists only while its writer holds ``scores/.lock``, so a temp
file seen under that lock was left by a writer that died. Every cell is computed once and stored once.
"""

from __future__ import annotations

import fcntl
import json
import os
import platform
import re
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from aaas_profile import stored
from aaas_profile.atomic import atomic_path, write_atomic
from aaas_profile.core.curve_keys import SAMPLER_DEFAULTS
from aaas_profile.errors import UserError

# One row per image × mask × seed × sampler × respacing × steps × metric (docs/design.md, "The scores table").
# ``sampler`` is a name of ``samplers.SAMPLERS`` and ``sampler_params`` its parameters beyond RePaint's jumps as
# canonical JSON (``samplers.sampler_params_json``); ``respacing`` the walk (``samplers.respacing_label``: "250"
# for t_T = steps on the 250-step respaced grid, the paper's x axis; "steps" for a steps-step grid over the
# whole training range); jump_length/jump_n_sample are RePaint's j/r, 0/0 for other samplers.
COLUMNS = {
    "run_id": pa.string(),
    "model": pa.string(),
    "image_id": pa.string(),
    "mask": pa.string(),
    "seed": pa.int64(),
    "sampler": pa.string(),
    "sampler_params": pa.string(),
    "respacing": pa.string(),
    "steps": pa.int64(),
    "jump_length": pa.int64(),
    "jump_n_sample": pa.int64(),
    "unet_calls": pa.int64(),
    "wall_s": pa.float64(),
    "device": pa.string(),
    "dtype": pa.string(),
    "batch_size": pa.int64(),
    "metric": pa.string(),
    "value": pa.float64(),
    "higher_is_better": pa.bool_(),
}
SCHEMA = pa.schema(list(COLUMNS.items()))
CELL_KEY = ("model", "image_id", "mask", "seed", "sampler", "sampler_params", "respacing", "steps", "jump_length",
            "jump_n_sample")
# What parts written before the sampler columns existed hold (core.curve_keys.SAMPLER_DEFAULTS, which says why).
LEGACY_SAMPLER = SAMPLER_DEFAULTS
# Sampler names as parts written before the respacing column spelled them: "repaint" was diffusers' RePaint.
LEGACY_NAMES = {"repaint": "repaint-diffusers"}
# A saved output (sweep --save-images) in images/<cell>/: steps-0010.png for diffusers' RePaint (the name from
# before there were other samplers), <sampler>-steps-0010.png for another sampler on the steps walk,
# <sampler>-respaced250-steps-0010.png on the 250-step grid; sweep writes these names and report reads them.
_OUTPUT_IMAGE = re.compile(r"^(?:(?P<sampler>.+?)-)?(?:respaced(?P<respacing>\d+)-)?steps-(?P<steps>\d+)\.png$")


def output_image_name(sampler: str, steps: int, respacing: str = LEGACY_SAMPLER["respacing"]) -> str:
    """The file name of ``sampler``'s saved output at ``steps`` on the walk ``respacing`` (the scores table's
    column) in a cell's images/ folder."""
    walk = "" if respacing == LEGACY_SAMPLER["respacing"] else f"respaced{int(respacing)}-"
    return ("" if sampler == LEGACY_SAMPLER["sampler"] else f"{sampler}-") + f"{walk}steps-{steps:04d}.png"


def parse_output_image_name(name: str) -> tuple[str, str, int] | None:
    """(sampler, respacing, steps) of a saved output's file name (``output_image_name``'s inverse), or None for
    another file."""
    match = _OUTPUT_IMAGE.match(name)
    if match is None:
        return None
    return (match["sampler"] or LEGACY_SAMPLER["sampler"], match["respacing"] or LEGACY_SAMPLER["respacing"],
            int(match["steps"]))


def is_legacy_config(config: dict) -> bool:
    """Whether a run folder's config.toml (as a dict) was written before the respacing key: its sampler
    "repaint" is diffusers' RePaint on the steps walk (``LEGACY_NAMES``)."""
    return "respacing" not in config


class RunError(UserError, RuntimeError):
    """A run folder that cannot be used as it is; the message is one line."""


def scores_dir(run: Path) -> Path:
    return Path(run) / "scores"


def write_part(run: Path, rows: list[dict]) -> Path:
    """Write rows (dicts with COLUMNS' keys) as one new part file, atomically and flushed to disk. Returns its
    path. A row without the sampler keys is RePaint's (LEGACY_SAMPLER), as rows were before samplers existed,
    rather than a row with no sampler."""
    folder = scores_dir(run)
    folder.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist([{**LEGACY_SAMPLER, **row} for row in rows], schema=SCHEMA)
    final = folder / f"part-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:12]}.parquet"
    with atomic_path(final, fsync=True) as temp:  # temp: .part-*.tmp, which clean-up under the lock looks for
        pq.write_table(table, temp)
    return final


# What write_part names a part (older versions wrote the same shape); anything else under scores/ that starts
# with "part-" (a file manager's "part-… (copy).parquet", a renamed part) is refused by name, never read as
# scores or skipped silently.
_PART_NAME = re.compile(r"^part-[A-Za-z0-9_.-]+\.parquet$")
PART_ADVICE = "delete it and run the sweep again to recompute its cells"


def part_files(run: Path) -> list[Path]:
    """The run's scores parts, sorted by name. Raises RunError for a file in scores/ that looks like a part but
    is not named as the sweep names one."""
    paths = sorted(scores_dir(run).glob("part-*"))
    foreign = [p for p in paths if not _PART_NAME.match(p.name)]
    if foreign:
        raise RunError(f"{foreign[0]}: not a scores part's name (a copy?); move it out of {scores_dir(run)} (the "
                       "sweep writes part-<time>-<hex>.parquet and reads nothing else there)")
    return paths


def _part_columns() -> dict[str, stored.Column]:
    """``COLUMNS`` as the checked reader's table schema, with each column's range: a part that holds another
    type or an impossible value is refused in one line (it would otherwise not match its cells' keys, be
    recomputed and stored twice)."""
    ranges = {"steps": {"at_least": 1}, "jump_length": {"at_least": 0},
              "jump_n_sample": {"at_least": 0}, "unet_calls": {"at_least": 0}, "wall_s": {"at_least": 0},
              "batch_size": {"at_least": 1}, "value": {"nan": True}}
    required = set(COLUMNS) - set(LEGACY_SAMPLER) - {"sampler_params"}
    return {name: stored.Column((str(kind),), required=name in required, **ranges.get(name, {}))
            for name, kind in COLUMNS.items()}


def remove_stale_temps(run: Path) -> int:
    """Delete temp files a killed sweep left behind (never whole parts). Returns how many.

    Call it holding :func:`scores_lock`: writers make and rename their temp files only while they hold it, so
    every temp file seen then belongs to a writer that is gone."""
    stale = list(scores_dir(run).glob(".part-*.tmp"))
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)


@contextmanager
def scores_lock(run: Path, on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold ``scores/.lock`` exclusively: around checking done cells and claims, claiming, and writing a part.

    When another process holds it, ``on_wait`` is told once, in one line, what is waited for and who holds it
    (the holder writes its pid into the lock file), before this process blocks: a wait is never silent."""
    folder = scores_dir(run)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / ".lock"
    with path.open("a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                lock.seek(0)
                holder = lock.read().strip()
                who = f"pid {holder}" if holder.isdigit() else "another process"
                on_wait(f"waiting for {path} held by {who} (another sweep or fit of this run folder); it is "
                        "freed when that process writes its part or ends")
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            lock.seek(0)
            lock.truncate()
            lock.write(f"{os.getpid()}\n")
            lock.flush()
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


class Claim:
    """Cells this process is computing now (see the module docstring). Make, read and release claims while
    holding :func:`scores_lock`; the claim file stays ``flock``'ed by this process until :meth:`release`."""

    def __init__(self, run: Path, keys: list[tuple]):
        folder = scores_dir(run)
        self.path = folder / f".claim-{platform.node() or 'host'}-{os.getpid()}-{uuid.uuid4().hex[:8]}.json"
        self._file = self.path.open("x")
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            json.dump([list(key) for key in keys], self._file)
            self._file.flush()
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        """Give the cells back (they are done, or this process stops)."""
        if self._file.closed:
            return
        _remove_quietly(self.path)
        self._file.close()


def claim_pid(path: Path) -> str:
    """The process id in a claim file's name (``.claim-<host>-<pid>-<hex>.json``), for messages."""
    parts = path.stem.rsplit("-", 2)
    return parts[1] if len(parts) == 3 and parts[1].isdigit() else "?"


def claimed_cells(run: Path) -> set[tuple]:
    """Keys (CELL_KEY order) of the cells that live processes have claimed; removes the claims of processes
    that are gone. Call it holding :func:`scores_lock`."""
    keys: set[tuple] = set()
    for path in scores_dir(run).glob(".claim-*.json"):
        try:
            with path.open() as f:
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:  # its owner holds it: a live claim
                    keys.update(_claimed_key(key) for key in json.load(f))
                    continue
                path.unlink(missing_ok=True)  # we got the lock: the owner is gone
        except FileNotFoundError:
            continue
        except (ValueError, TypeError):  # not JSON, not UTF-8: held but half-written cannot happen; skip it
            continue
    return keys


def _claimed_key(key: list) -> tuple:
    """A claim file's key as a CELL_KEY tuple; a claim written by a process from before the sampler columns
    (no sampler in its keys) claimed diffusers' RePaint cells, one from before the respacing column cells on the
    steps walk, under the sampler names of then (``LEGACY_NAMES``)."""
    at = CELL_KEY.index("sampler")
    if len(key) == len(CELL_KEY) - len(LEGACY_SAMPLER):
        key = [*key[:at], *LEGACY_SAMPLER.values(), *key[at:]]
    elif len(key) == len(CELL_KEY) - 1:
        key = [*key[:at], LEGACY_NAMES.get(key[at], key[at]), key[at + 1], LEGACY_SAMPLER["respacing"],
               *key[at + 2:]]
    return tuple(key)


def _remove_quietly(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass  # the original error is the one to report; a read-only folder cannot hold the temp file anyway


def read_part(path: Path, columns: list[str] | None = None) -> pd.DataFrame:
    """One scores part as a frame with ``columns`` (default: all of COLUMNS, in order). A part written before
    the sampler columns existed gets them filled (LEGACY_SAMPLER); one written before the respacing column gets
    respacing "steps" and its sampler names as they are now (``LEGACY_NAMES``: its "repaint" is
    "repaint-diffusers"). So old run folders resume and fit as they are, apart from the authors' RePaint.
    Raises RunError naming an unreadable part."""
    wanted = list(columns or COLUMNS)
    try:
        schema = pq.read_schema(path)
    except Exception as err:  # pyarrow raises several types for a damaged file
        raise RunError(f"{path}: unreadable scores part ({type(err).__name__}); {PART_ADVICE}") from None
    spec = _part_columns()
    stored.check_table_schema(path, {f.name: str(f.type) for f in schema}, spec, PART_ADVICE, error=RunError)
    try:
        present = set(schema.names)
        legacy = "respacing" not in present and "sampler" in wanted and "sampler" in present
        table = pq.read_table(path, columns=[c for c in wanted if c in present])
        if legacy:  # the sampler names of then, as now
            old = table.column("sampler").to_pylist()
            table = table.set_column(table.column_names.index("sampler"), pa.field("sampler", COLUMNS["sampler"]),
                                     pa.array([LEGACY_NAMES.get(v, v) for v in old], COLUMNS["sampler"]))
    except Exception as err:  # pyarrow raises several types for a damaged file
        raise RunError(f"{path}: unreadable scores part ({type(err).__name__}); delete it and run the sweep again "
                       "to recompute its cells") from None
    for name, value in LEGACY_SAMPLER.items():
        if name in wanted and name not in present:  # as Arrow, so pandas gives it the type a new part's has
            table = table.append_column(pa.field(name, COLUMNS[name]), pa.array([value] * len(table), COLUMNS[name]))
    missing = [c for c in wanted if c not in table.column_names]
    if missing:
        raise RunError(f"{path}: scores part lacks the column(s) {', '.join(missing)}; {PART_ADVICE}")
    table = table.select(wanted)
    stored.check_table_values(path, table, spec, PART_ADVICE, error=RunError)
    if "metric" in wanted and "higher_is_better" in wanted:
        _check_directions(path, table)
    return table.to_pandas()


def _check_directions(path: Path, table: pa.Table) -> None:
    """Each row of one of the six metrics has its ``higher_is_better`` (a row saying otherwise would turn a
    curve upside down). Another scorer's metric (a column added to the table) keeps the direction it states."""
    from aaas_profile import metrics as metrics_mod  # imported here: runs stays light

    metric, higher = table.column("metric").to_pandas(), table.column("higher_is_better").to_pandas()
    known = metric.isin(list(metrics_mod.METRICS))
    expected = metric[known].map({m: metrics_mod.METRICS[m].higher_is_better for m in metric[known].unique()})
    wrong = known.to_numpy().copy()
    wrong[known.to_numpy()] = (expected != higher[known]).to_numpy()
    if wrong.any():
        row = int(wrong.nonzero()[0][0])
        raise RunError(f"{path}: column higher_is_better, row {row}: {higher[row]} for {metric[row]}, whose "
                       f"direction is {not higher[row]}; {PART_ADVICE}")


def read_scores(run: Path, columns: list[str] | None = None) -> pd.DataFrame:
    """The run's whole scores table (all parts; see :func:`read_part`). Raises RunError naming an unreadable
    part.

    A row that appears in two parts (two processes that raced on one cell) is kept once.
    """
    parts = part_files(run)
    if not parts:
        return pd.DataFrame({name: pd.Series(dtype=t.to_pandas_dtype()) for name, t in COLUMNS.items()})[
            columns or list(COLUMNS)
        ]
    table = pd.concat([read_part(path, columns) for path in parts], ignore_index=True)
    key = [c for c in (*CELL_KEY, "metric") if c in table.columns]
    return table.drop_duplicates(subset=key, keep="first", ignore_index=True)


def done_cells(run: Path) -> set[tuple]:
    """Keys (CELL_KEY order) of the cells already scored in ``run``."""
    table = read_scores(run, columns=list(CELL_KEY))
    return set(table.itertuples(index=False, name=None))


class DoneCells:
    """The cells already scored in a run folder, kept up to date cheaply: :meth:`refresh` reads only the parts
    that appeared since its last call (parts are only ever added)."""

    def __init__(self, run: Path):
        self.run = Path(run)
        self.keys: set[tuple] = set()
        self._read: set[str] = set()

    def refresh(self) -> set[tuple]:
        new = [path for path in part_files(self.run) if path.name not in self._read]
        for path in new:
            self.keys.update(read_part(path, list(CELL_KEY)).itertuples(index=False, name=None))
            self._read.add(path.name)
        return self.keys


def git_revision() -> str | None:
    """The project's git commit (with '-dirty' for uncommitted changes), when run from a checkout."""
    root = Path(__file__).resolve().parents[1]
    if not (root / ".git").exists():
        return None
    try:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return sha + ("-dirty" if dirty else "")


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def environment(device) -> dict:
    """Versions, device and host, for manifest.json."""
    import torch

    import aaas_profile

    device = torch.device(device)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        device_name = torch.cuda.get_device_name(index)
    else:
        device_name = platform.processor() or platform.machine()
    return {
        "aaas_profile": aaas_profile.__version__,
        "git": git_revision(),
        "python": sys.version.split()[0],
        **{name: _version(name) for name in ("torch", "diffusers", "piq", "numpy", "pandas", "pyarrow")},
        "cuda": torch.version.cuda,
        "platform": platform.platform(),
        "device": str(device),
        "device_name": device_name,
        "torch_threads": torch.get_num_threads(),
    }


@dataclass
class Manifest:
    """``manifest.json``: what produced the run. Each invocation of the sweep appends to ``invocations``."""

    path: Path

    ADVICE = "restore it, or sweep into a new --out (a run folder's manifest is written only by the sweep)"

    def read(self) -> dict:
        """The manifest, checked against ``stored.ManifestFile`` ({} when there is none yet)."""
        if not self.path.exists():
            return {}
        return stored.read_json(self.path, stored.ManifestFile, self.ADVICE)

    def write(self, data: dict) -> None:
        write_atomic(self.path, json.dumps(data, indent=2, default=str) + "\n")

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold an exclusive lock for a read-modify-write: shards of one sweep share the manifest."""
        with (self.path.parent / ".manifest.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
