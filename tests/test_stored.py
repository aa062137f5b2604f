"""Every file the tool writes and reads back is checked (aaas_profile/stored.py, docs/run-folder.md "Files read
back"): each such file, damaged in type, encoding, missing and extra keys, and range, and read by each command
that reads it, ends in one line that names the file, a non-zero exit, and no file changed.

The files are made once by the commands themselves (a sweep, fit, simulate and train on tiny inputs); each case
copies them, damages one file in one way, and runs one command that would otherwise write (a sweep that adds a
step count, a fit, a report, a resumed training), so "no file changed" also shows the check comes first.
"""

from __future__ import annotations

import json
import shutil
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tomli_w
import torch
from conftest import invoke, one_line_error, save_model, write_images

from aaas_profile import stored

SWEEP = ["--masks", "half", "--jump-length", "1", "--jump-n-sample", "1", "--save-images", "1", "--metrics",
         "tv,vif", "--device", "cpu", "--dtype", "fp32"]
SIM = ["--episodes", "1", "--no-optimum", "--no-baselines", "--horizon", "20000"]
TRAIN = ["--resolution", "16", "--channels", "8,16", "--batch-size", "2", "--warmup-steps", "2",
         "--checkpoint-every", "2", "--device", "cpu", "--precision", "fp32"]


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> Path:
    """A model, images, a swept, fitted and simulated run folder, a SAC and a DQN run, a leaderboard and a
    trained model, each made by the command that makes it (and checked to have succeeded)."""
    root = tmp_path_factory.mktemp("made")
    model, images = save_model(root / "model"), write_images(root / "images", n=3)
    for args in (["sweep", "--model", model, "--data", images, *SWEEP, "--steps", "5,10", "--out", root / "run"],
                 ["fit", root / "run", "--bootstrap", "0", "--no-plots"],
                 ["simulate", "--policy", "random", *SIM, "--out", root / "run"],
                 ["simulate", "--policy", "sac", "--train-episodes", "1", *SIM, "--out", root / "sac"],
                 ["simulate", "--policy", "dqn", "--train-episodes", "1", *SIM, "--out", root / "dqn"],
                 ["simulate", "--policy", "random,greedy-oracle", "--preset", "agod", "--seeds", "0,1",
                  "--episodes", "1", "--no-optimum", "--horizon", "20000", "--out", root / "lb"],
                 ["train", "--data", images, "--out", root / "trained", "--steps", "2", *TRAIN]):
        result = invoke(*args)
        assert result.exit_code == 0, (args, result.output)
    return root


def _commands(root: Path) -> dict[str, list]:
    """The commands that read the files back, each one that would write if its inputs were sound."""
    return {
        "sweep": ["sweep", "--model", root / "model", "--data", root / "images", *SWEEP, "--steps", "5,10,20",
                  "--out", root / "run"],
        "fit": ["fit", root / "run", "--bootstrap", "0", "--no-plots"],
        "report": ["report", root / "run"],
        "simulate --profile": ["simulate", "--policy", "crash-avoid", "--profile", root / "run" / "fit.json",
                               "--allow-flagged-profile", *SIM, "--out", root / "prof"],
        "simulate --resume": ["simulate", "--policy", "sac", "--train-episodes", "2", "--resume", *SIM, "--out",
                              root / "sac"],
        "simulate --resume dqn": ["simulate", "--policy", "dqn", "--train-episodes", "2", "--resume", *SIM,
                                  "--out", root / "dqn"],
        "report leaderboard": ["report", root / "lb"],
        "train": ["train", "--data", root / "images", "--out", root / "trained", "--steps", "4", *TRAIN],
    }


# ---- damage, by format ---------------------------------------------------------------------------------------


def _set(document, where: str, value=None, delete: bool = False):
    """Set (or delete) the field at a dotted path with [i] list indices in a parsed document."""
    parts = [int(p) if p.isdigit() else p for p in where.replace("[", ".").replace("]", "").split(".")]
    target = document
    for part in parts[:-1]:
        target = target[part]
    if delete:
        del target[parts[-1]]
    else:
        target[parts[-1]] = value
    return document


def _non_utf8(path: Path) -> None:
    """Bytes that are not UTF-8 inside the first quoted string (a Latin-1 editor's save, a broken copy)."""
    data = path.read_bytes()
    at = data.index(b'"') + 1
    path.write_bytes(data[:at] + b"\xff\xfe" + data[at:])


def _json(where: str, value=None, delete: bool = False) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        path.write_text(json.dumps(_set(json.loads(path.read_text()), where, value, delete)))
    return damage


def _toml(where: str, value=None, delete: bool = False) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        path.write_text(tomli_w.dumps(_set(tomllib.loads(path.read_text()), where, value, delete)))
    return damage


def _parquet(change: Callable[[pa.Table], pa.Table]) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        pq.write_table(change(pq.read_table(path)), path)
    return damage


def _column(name: str, values) -> Callable[[pa.Table], pa.Table]:
    def change(table: pa.Table) -> pa.Table:
        array = pa.array([values] * len(table)) if not callable(values) else values(table.column(name))
        return table.set_column(table.column_names.index(name), name, array)
    return change


def _torch(where: str, value=None, delete: bool = False) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        torch.save(_set(torch.load(path, weights_only=True), where, value, delete), path)
    return damage


def _garbage(path: Path) -> None:
    path.write_bytes(b"\xff\xfe\x00not a file this tool wrote\x80\x81")


@dataclass(frozen=True)
class File:
    """A file the tool reads back: where it is (under ``made``), which commands read it, and one damage of each
    kind: wrong type, bytes that are not UTF-8, a required key missing, a key the tool never writes, a value out
    of range (where the format has one: a model folder's other keys are diffusers'). ``field`` is the word the
    error line must hold for each damage (the key, column or file)."""

    path: str
    readers: tuple[str, ...]
    damages: dict[str, tuple[Callable[[Path], None], str]]


def _score_part(root: Path) -> Path:
    return next((root / "run" / "scores").glob("part-*.parquet"))


FILES = {
    "manifest.json": File("run/manifest.json", ("sweep", "report"), {
        "type": (_json("images", "img0.png"), "images"),
        "encoding": (_non_utf8, "not UTF-8"),
        "missing": (_json("invocations", delete=True), "invocations"),
        "extra": (_json("colour", "blue"), "colour"),
        "range": (_json("invocations[0].cells_already_done", -1), "invocations[0].cells_already_done"),
    }),
    "config.toml": File("run/config.toml", ("sweep", "report"), {
        "type": (_toml("steps", "five"), "steps"),
        "encoding": (_non_utf8, "not UTF-8"),
        "missing": (_toml("data", delete=True), "data"),
        "extra": (_toml("colour", "blue"), "colour"),
        "range": (_toml("batch_size", 0), "batch_size"),
    }),
    "scores part": File("run/scores/part", ("sweep", "fit", "report"), {
        # string step counts: the case (not seen as done, computed again, stored twice, then a crash)
        "type": (_parquet(_column("steps", lambda c: pa.array([str(v) for v in c.to_pylist()]))), "steps"),
        "encoding": (_parquet(_column("metric", lambda c: pa.array([b"\xff" + v.encode() for v in c.to_pylist()],
                                                                   pa.binary()))), "metric"),
        "missing": (_parquet(lambda t: t.drop_columns(["value"])), "value"),
        "extra": (_parquet(lambda t: t.append_column("colour", pa.array(["blue"] * len(t)))), "colour"),
        "range": (_parquet(_column("steps", lambda c: pa.array([-v for v in c.to_pylist()], pa.int64()))),
                  "steps"),
    }),
    "summary.json": File("run/sim/random/summary.json", ("report",), {
        "type": (_json("policies", ["random"]), "policies"),
        "encoding": (_non_utf8, "not UTF-8"),
        "missing": (_json("policies", delete=True), "policies"),
        "extra": (_json("colour", "blue"), "colour"),
        "range": (_json("episodes", 0), "episodes"),
    }),
    "fit.json": File("run/fit.json", ("report", "simulate --profile"), {
        "type": (_json("curves[0].mask", 5), "curves[0].mask"),
        "encoding": (_non_utf8, "not UTF-8"),
        "missing": (_json("curves", delete=True), "curves"),
        "extra": (_json("colour", "blue"), "colour"),
        "range": (_json("curves[0].scale01.ax", -3.0), "curves[0].scale01.ax"),
    }),
    "checkpoint.json": File("sac/sim/sac/checkpoint.json", ("simulate --resume",), {
        "type": (_json("seed", "0"), "seed"),
        "encoding": (_non_utf8, "not UTF-8"),
        "missing": (_json("asps_digest", delete=True), "asps_digest"),
        "extra": (_json("colour", "blue"), "colour"),
        "range": (_json("seed", -1), "seed"),
    }),
    "training.parquet": File("sac/sim/sac/training.parquet", ("simulate --resume",), {
        "type": (_parquet(_column("episode", "1")), "episode"),
        "encoding": (_parquet(_column("alpha", b"\xff\xfe")), "alpha"),
        "missing": (_parquet(lambda t: t.drop_columns(["alpha"])), "alpha"),
        "extra": (_parquet(lambda t: t.append_column("colour", pa.array(["blue"] * len(t)))), "colour"),
        "range": (_parquet(_column("episode", pa.scalar(0).as_py())), "episode"),
    }),
    "train state": File("trained/checkpoint/state.pt", ("train",), {
        "type": (_torch("step", "2"), "step"),
        "encoding": (_garbage, "state.pt"),
        "missing": (_torch("ema", delete=True), "ema"),
        "extra": (_torch("colour", "blue"), "colour"),
        "range": (_torch("step", -2), "step"),
    }),
    "SAC checkpoint.pt": File("sac/sim/sac/checkpoint.pt", ("simulate --resume",), {
        "type": (_torch("episodes", "1"), "episodes"),
        "encoding": (_garbage, "checkpoint.pt"),
        "missing": (_torch("buffer", delete=True), "buffer"),
        "extra": (_torch("colour", "blue"), "colour"),
        "range": (_torch("n_actions", 0), "n_actions"),
    }),
    "SB3 model.json": File("dqn/sim/dqn/model.json", ("simulate --resume dqn",), {
        "type": (_json("episodes", "1"), "episodes"),
        "encoding": (_non_utf8, "not UTF-8"),
        "missing": (_json("env_steps", delete=True), "env_steps"),
        "extra": (_json("colour", "blue"), "colour"),
        "range": (_json("wall_s", -1.0), "wall_s"),
    }),
    "SB3 training.parquet": File("dqn/sim/dqn/training.parquet", ("simulate --resume dqn",), {
        "type": (_parquet(_column("episode", "1")), "episode"),
        "encoding": (_parquet(_column("train_reward", b"\xff\xfe")), "train_reward"),
        "missing": (_parquet(lambda t: t.drop_columns(["train_reward"])), "train_reward"),
        "extra": (_parquet(lambda t: t.append_column("colour", pa.array(["blue"] * len(t)))), "colour"),
        "range": (_parquet(_column("episode", 0)), "episode"),
    }),
    "SB3 model.zip": File("dqn/sim/dqn/model.zip", ("simulate --resume dqn",), {
        "encoding": (_garbage, "model.zip"),
    }),
    "leaderboard.parquet": File("lb/sim/leaderboard.parquet", ("report leaderboard",), {
        "type": (_parquet(_column("seeds", "2")), "seeds"),
        "encoding": (_parquet(_column("policy", lambda c: pa.array([b"\xff" + v.encode() for v in c.to_pylist()],
                                                                   pa.binary()))), "policy"),
        "missing": (_parquet(lambda t: t.drop_columns(["reward_mean"])), "reward_mean"),
        "extra": (_parquet(lambda t: t.append_column("colour", pa.array(["blue"] * len(t)))), "colour"),
        "range": (_parquet(_column("crashes", -1.0)), "crashes"),
    }),
    "leaderboard_episodes.parquet": File("lb/sim/leaderboard_episodes.parquet", ("report leaderboard",), {
        "type": (_parquet(_column("reward", "1")), "reward"),
        "encoding": (_parquet(_column("policy", lambda c: pa.array([b"\xff" + v.encode() for v in c.to_pylist()],
                                                                   pa.binary()))), "policy"),
        "missing": (_parquet(lambda t: t.drop_columns(["reward"])), "reward"),
        "extra": (_parquet(lambda t: t.append_column("colour", pa.array(["blue"] * len(t)))), "colour"),
        "range": (_parquet(_column("seed", -1)), "seed"),
    }),
    # A model folder: diffusers' format, whose other keys diffusers checks and may extend (so no "extra" case);
    # aaas-profile's own reads are checked.
    "model config.json": File("model/unet/config.json", ("sweep",), {
        "type": (_json("_class_name", 5), "_class_name"),
        "encoding": (_non_utf8, "not UTF-8"),
        "missing": (_json("_class_name", delete=True), "_class_name"),
    }),
    "scheduler_config.json": File("model/scheduler/scheduler_config.json", ("sweep",), {
        "type": (_json("beta_schedule", 1), "beta_schedule"),
        "encoding": (_non_utf8, "not UTF-8"),
        "range": (_json("num_train_timesteps", 0), "num_train_timesteps"),
    }),
}
CASES = [(name, damage, reader) for name, file in FILES.items() for damage in file.damages
         for reader in file.readers]


def _snapshot(folder: Path) -> dict:
    """Every file's bytes and modification time: a file rewritten with the same bytes was still written."""
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.rglob("*")
            if p.is_file()}


def _copy(made: Path, tmp_path: Path) -> Path:
    root = tmp_path / "copy"
    shutil.copytree(made, root)
    return root


def _path(root: Path, file: File) -> Path:
    return _score_part(root) if file.path == "run/scores/part" else root / file.path


@pytest.mark.parametrize("reader", sorted({r for f in FILES.values() for r in f.readers}))
def test_every_reader_succeeds_on_the_files_as_written(made, tmp_path, monkeypatch, reader):
    """The cases below fail because of their damage: on the files as the tool wrote them, each command works."""
    root = _copy(made, tmp_path)
    monkeypatch.chdir(root)
    result = invoke(*_commands(root)[reader])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("name, damage, reader", CASES)
def test_a_damaged_file_is_one_line_naming_it_and_nothing_is_written(made, tmp_path, name, damage, reader):
    root = _copy(made, tmp_path)
    file = FILES[name]
    path = _path(root, file)
    apply, field = file.damages[damage]
    apply(path)
    before = _snapshot(root)
    one_line_error(invoke(*_commands(root)[reader]), path.name, field)
    assert _snapshot(root) == before


@pytest.mark.parametrize("reader", FILES["scores part"].readers)
def test_a_file_managers_copy_of_a_part_is_named_not_read(made, tmp_path, reader):
    root = _copy(made, tmp_path)
    part = _score_part(root)
    shutil.copy(part, part.with_name(part.stem + " (copy).parquet"))
    before = _snapshot(root)
    one_line_error(invoke(*_commands(root)[reader]), "(copy).parquet", "not a scores part's name")
    assert _snapshot(root) == before


def test_the_schemas_refuse_what_json_and_toml_let_through(tmp_path):
    """What a parser accepts and a reader would index wrongly: NaN, a bool for an int, a float for an int."""
    path = tmp_path / "checkpoint.json"
    for text, words in (('{"seed": NaN, "asps_source": "a", "asps_digest": "b"}', "NaN"),
                        ('{"seed": true, "asps_source": "a", "asps_digest": "b"}', "seed: must be an integer"),
                        ('{"seed": 1.5, "asps_source": "a", "asps_digest": "b"}', "seed: must be an integer"),
                        ('[1, 2]', "must be an object")):
        path.write_text(text)
        with pytest.raises(stored.StoredFileError, match=words):
            stored.read_json(path, stored.CheckpointMeta, "do this")
    path.write_text('{"seed": 1, "asps_source": "a", "asps_digest": "b"}')
    assert stored.read_json(path, stored.CheckpointMeta, "do this") == {"seed": 1, "asps_source": "a",
                                                                         "asps_digest": "b"}


@pytest.mark.parametrize("damage, text, words", [
    ("type", b"resolution = 'big'\n", "resolution: must be an integer"),
    ("encoding", b'resolution = 64\nname = "\xff"\n', "not UTF-8"),
    ("missing", b"name = 'x'\n", "lacks resolution"),
    ("extra", b"resolution = 64\ncolour = 1\n", "unexpected key(s) colour"),
    ("range", b"resolution = 0\n", "resolution: must be ≥ 1"),
])
def test_a_damaged_model_card_is_one_line_naming_it(tmp_path, damage, text, words):
    from aaas_profile import models

    (tmp_path / "mine.toml").write_bytes(text)
    with pytest.raises(models.ModelError) as err:
        models.cards(tmp_path)
    assert str(err.value).startswith(f"{tmp_path / 'mine.toml'}: ") and words in str(err.value)
    assert "\n" not in str(err.value)
