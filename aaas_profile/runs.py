"""The run folder (DESIGN.md): ``config.toml``, ``manifest.json`` and the long scores table in Parquet parts.

Part files are written atomically (a hidden temp file, flushed to disk, then renamed), so a sweep killed at
any moment leaves either a whole part or none: starting it again skips exactly the cells already written.
"""

from __future__ import annotations

import fcntl
import json
import os
import platform
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

# One row per image × mask × seed × steps × metric (DESIGN.md, "The scores table").
COLUMNS = {
    "run_id": pa.string(),
    "model": pa.string(),
    "image_id": pa.string(),
    "mask": pa.string(),
    "seed": pa.int64(),
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
CELL_KEY = ("model", "image_id", "mask", "seed", "steps", "jump_length", "jump_n_sample")


class RunError(RuntimeError):
    """A run folder that cannot be used as it is; the message is one line."""


def scores_dir(run: Path) -> Path:
    return Path(run) / "scores"


def write_part(run: Path, rows: list[dict]) -> Path:
    """Write rows (dicts with COLUMNS' keys) as one new part file, atomically. Returns its path."""
    folder = scores_dir(run)
    folder.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    name = f"part-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:12]}.parquet"
    final, temp = folder / name, folder / f".{name}.tmp"
    with temp.open("wb") as f:
        pq.write_table(table, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temp, final)
    return final


def part_files(run: Path) -> list[Path]:
    return sorted(scores_dir(run).glob("part-*.parquet"))


def remove_stale_temps(run: Path) -> int:
    """Delete temp files a killed sweep left behind (never whole parts). Returns how many."""
    stale = list(scores_dir(run).glob(".part-*.tmp"))
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)


def read_scores(run: Path, columns: list[str] | None = None) -> pd.DataFrame:
    """The run's whole scores table (all parts). Raises RunError naming an unreadable part.

    A row that appears in two parts (two processes that raced on one cell) is kept once.
    """
    parts = part_files(run)
    if not parts:
        return pd.DataFrame({name: pd.Series(dtype=t.to_pandas_dtype()) for name, t in COLUMNS.items()})[
            columns or list(COLUMNS)
        ]
    frames = []
    for path in parts:
        try:
            frames.append(pq.read_table(path, columns=columns).to_pandas())
        except Exception as err:  # pyarrow raises several types for a damaged file
            raise RunError(
                f"{path}: unreadable scores part ({type(err).__name__}); delete it and run the sweep again to "
                "recompute its cells"
            ) from None
    table = pd.concat(frames, ignore_index=True)
    key = [c for c in (*CELL_KEY, "metric") if c in table.columns]
    return table.drop_duplicates(subset=key, keep="first", ignore_index=True)


def done_cells(run: Path) -> set[tuple]:
    """Keys (CELL_KEY order) of the cells already scored in ``run``."""
    table = read_scores(run, columns=list(CELL_KEY))
    return set(table.itertuples(index=False, name=None))


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

    def read(self) -> dict:
        if not self.path.exists():
            return {}
        try:
            return json.loads(self.path.read_text())
        except json.JSONDecodeError as err:
            raise RunError(f"{self.path}: not valid JSON ({err.msg} at line {err.lineno}); fix or remove it") from None

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


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path``'s content in one step (a unique temp file, then rename)."""
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    temp.write_text(text)
    os.replace(temp, path)
