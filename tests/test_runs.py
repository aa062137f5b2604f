"""Several processes on one run folder : each cell is computed once, no raw part holds a duplicate,
and only the temp files and claims of processes that are gone are removed."""

import fcntl
import json
import os
import subprocess
import sys
import time

import pandas as pd
import pytest
from conftest import sweep_config

from aaas_profile import runs, sweep
from aaas_profile.sweep import cells as cells_mod

KEY = [*runs.CELL_KEY, "metric"]

# Each process imports everything first (the slow part), then waits for the test's "go" file, so all of them
# really start their sweeps together instead of one finishing before the next has imported torch.
DRIVER = """
import sys, time
from pathlib import Path
from aaas_profile.cli import app
go = Path(sys.argv[1])
while not go.exists():
    time.sleep(0.01)
app(sys.argv[2:], prog_name="aaas-profile")
"""


@pytest.mark.timing
def test_processes_started_together_compute_each_cell_once(model_dir, image_dir, tmp_path):
    out, go, release = tmp_path / "run", tmp_path / "go", tmp_path / "release"
    common = ["sweep", "--model", str(model_dir), "--data", str(image_dir), "--masks", "half,thick",
              "--steps", "5,10", "--seeds", "0", "--jump-length", "1", "--jump-n-sample", "1",
              "--metrics", "tv,haarpsi", "--batch-size", "1", "--save-images", "0", "--out", str(out)]
    shards = [[], [], ["--shard", "0/2"], ["--shard", "1/2"]]  # two whole sweeps and the two shards of one
    # Each sweep waits after each part it writes, holding no claim, until `release` exists (sweep.HOLD_ENV):
    # a second part can then only come from a second process, so "they really ran together" does not depend
    # on how fast or loaded the machine is.
    env = {**os.environ, sweep.HOLD_ENV: str(release)}
    processes = [subprocess.Popen([sys.executable, "-c", DRIVER, str(go), *common, *extra],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
                 for extra in shards]
    time.sleep(0.5)
    go.touch()
    try:
        deadline = time.monotonic() + 300
        while (len(runs.part_files(out)) < 2 and all(p.poll() is None for p in processes)
               and time.monotonic() < deadline):
            time.sleep(0.05)
        release.touch()
        errors = [p.communicate(timeout=600)[1] for p in processes]
    finally:
        for p in processes:  # never leave a sweep running after a failed test
            if p.poll() is None:
                p.kill()
                p.wait()
    assert [p.returncode for p in processes] == [0] * len(processes), errors

    raw = pd.read_parquet(out / "scores")  # every raw part, as any other tool reads them: no deduplication
    cells = 2 * 2 * 1 * 2  # images × masks × seeds × steps
    assert len(raw) == cells * 2 and not raw.duplicated(KEY).any()
    invocations = json.loads((out / "manifest.json").read_text())["invocations"]
    ran = [entry["cells_run"] for entry in invocations]
    assert sum(ran) == cells  # computed once in all
    assert sum(1 for n in ran if n > 0) >= 2  # and shared: the processes really ran together
    assert not list((out / "scores").glob(".claim-*")) and not list((out / "scores").glob(".part-*.tmp"))


def test_a_live_claim_is_left_alone_and_a_dead_ones_cells_are_taken_over(model_dir, image_dir, tmp_path):
    config = sweep_config(model_dir, image_dir, tmp_path / "run", masks="half", steps="5")
    prepared = sweep.prepare(config)
    keys = [cells_mod._key(prepared, cell, 5) for cell in sweep.all_cells(prepared)]  # 2 cells
    scores = runs.scores_dir(prepared.run_dir)
    scores.mkdir(parents=True)
    live = runs.Claim(prepared.run_dir, keys[:1])  # held by this (live) process
    stale_temp = scores / ".part-20250101T000000-dead.parquet.tmp"
    stale_temp.write_bytes(b"half a part")
    path, lines = live.path, []

    class Dies(sweep.Progress):
        """When the sweep says it waits for the live claim (it never runs or counts it), its owner dies: the
        file stays, nobody holds its lock, so the sweep takes its cell over."""

        def waiting(self, message):
            lines.append(message)
            assert runs.done_cells(prepared.run_dir) == {keys[1]}  # only the unclaimed cell so far
            assert not stale_temp.exists()  # a temp file seen under the lock has no writer
            live.release()
            path.write_text(json.dumps([list(keys[0])]))

    result = sweep.run(config, prepared=prepared, progress=Dies())
    assert len(lines) == 1 and "waiting for 1 cell(s)" in lines[0]
    assert result.cells_run == 2 and runs.done_cells(prepared.run_dir) == set(keys)
    assert not path.exists()


def test_claimed_cells_reads_live_claims_and_removes_dead_ones(tmp_path):
    runs.scores_dir(tmp_path).mkdir()
    a = ("m", "a.png", "half", 0, "ddim", "{}", "steps", 5, 0, 0)
    live = runs.Claim(tmp_path, [a])
    dead = runs.scores_dir(tmp_path) / ".claim-host-1-dead.json"
    dead.write_text(json.dumps([["m", "b.png", "half", 0, "ddim", "{}", "steps", 5, 0, 0]]))
    with runs.scores_lock(tmp_path):
        assert runs.claimed_cells(tmp_path) == {a}
    assert not dead.exists() and live.path.exists()
    with live.path.open() as other:  # the owner's lock is what makes a claim live
        try:
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
            raise AssertionError("a live claim's lock was free")
        except BlockingIOError:
            pass
    live.release()
    assert not live.path.exists()


def test_a_claim_from_before_the_sampler_columns_claims_repaint_cells(tmp_path):
    """A process of an earlier version (keys without sampler) still running on the folder: its cells are
    diffusers' RePaint's on the steps walk, with params "{}", in CELL_KEY order."""
    runs.scores_dir(tmp_path).mkdir()
    with (runs.scores_dir(tmp_path) / ".claim-host-2-old.json").open("x") as old:
        fcntl.flock(old, fcntl.LOCK_EX | fcntl.LOCK_NB)
        json.dump([["m", "a.png", "half", 0, 5, 1, 1]], old)
        old.flush()
        with runs.scores_lock(tmp_path):
            assert runs.claimed_cells(tmp_path) == {
                ("m", "a.png", "half", 0, "repaint-diffusers", "{}", "steps", 5, 1, 1)}


def test_a_claim_from_before_the_respacing_column_claims_steps_walk_cells(tmp_path):
    """A process of the version with sampler columns but no respacing: its "repaint" was diffusers' RePaint and
    every cell was on the steps walk."""
    runs.scores_dir(tmp_path).mkdir()
    with (runs.scores_dir(tmp_path) / ".claim-host-3-old.json").open("x") as old:
        fcntl.flock(old, fcntl.LOCK_EX | fcntl.LOCK_NB)
        json.dump([["m", "a.png", "half", 0, "repaint", "{}", 5, 10, 10],
                   ["m", "a.png", "half", 0, "ddim", "{}", 5, 0, 0]], old)
        old.flush()
        with runs.scores_lock(tmp_path):
            assert runs.claimed_cells(tmp_path) == {
                ("m", "a.png", "half", 0, "repaint-diffusers", "{}", "steps", 5, 10, 10),
                ("m", "a.png", "half", 0, "ddim", "{}", "steps", 5, 0, 0)}


def test_a_row_written_without_the_sampler_keys_is_repaints(tmp_path):
    """Rows from code that predates the sampler columns (test tables, scripts) are diffusers' RePaint's on the
    steps walk, not sampler-less."""
    row = {"run_id": "r", "model": "m", "image_id": "a.png", "mask": "half", "seed": 0, "steps": 5, "jump_length": 1,
           "jump_n_sample": 1, "unet_calls": 5, "wall_s": 0.1, "device": "cpu", "dtype": "fp32", "batch_size": 1,
           "metric": "tv", "value": 0.5, "higher_is_better": False}
    runs.write_part(tmp_path, [row, {**row, "sampler": "ddim", "sampler_params": "{}", "jump_length": 0,
                                     "jump_n_sample": 0}])
    table = runs.read_scores(tmp_path)
    assert list(zip(table["sampler"], table["sampler_params"], table["respacing"], table["jump_length"],
                    strict=True)) == [("repaint-diffusers", "{}", "steps", 1), ("ddim", "{}", "steps", 0)]
    assert runs.done_cells(tmp_path) == {("m", "a.png", "half", 0, "repaint-diffusers", "{}", "steps", 5, 1, 1),
                                         ("m", "a.png", "half", 0, "ddim", "{}", "steps", 5, 0, 0)}


def test_a_part_from_before_the_respacing_column_reads_as_diffusers_repaint_on_the_steps_walk(tmp_path):
    """A part the sampler-column version wrote (its "repaint" was diffusers' RePaint) keeps its cells under
    repaint-diffusers on the steps walk: never pooled with the authors' RePaint, which a new part may hold."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    old_schema = pa.schema([(k, t) for k, t in runs.COLUMNS.items() if k != "respacing"])
    row = {"run_id": "r", "model": "m", "image_id": "a.png", "mask": "half", "seed": 0, "sampler": "repaint",
           "sampler_params": "{}", "steps": 5, "jump_length": 10, "jump_n_sample": 10, "unet_calls": 5,
           "wall_s": 0.1, "device": "cpu", "dtype": "fp32", "batch_size": 1, "metric": "tv", "value": 0.5,
           "higher_is_better": False}
    runs.scores_dir(tmp_path).mkdir()
    pq.write_table(pa.Table.from_pylist([row, {**row, "sampler": "ddim", "jump_length": 0, "jump_n_sample": 0,
                                               "value": 0.7}], schema=old_schema),
                   runs.scores_dir(tmp_path) / "part-20250101T000000-old.parquet")
    runs.write_part(tmp_path, [{**row, "respacing": "250", "value": 0.25}])  # the authors' RePaint, this version
    table = runs.read_scores(tmp_path).sort_values("value", ignore_index=True)
    assert list(zip(table["sampler"], table["respacing"], table["value"], strict=True)) == [
        ("repaint", "250", 0.25), ("repaint-diffusers", "steps", 0.5), ("ddim", "steps", 0.7)]
    assert len(runs.done_cells(tmp_path)) == 3


def test_saved_output_names_round_trip():
    """sweep writes these names and report reads them; diffusers' RePaint keeps the name from before samplers
    existed, and the authors' RePaint on either walk gets names of its own."""
    assert runs.output_image_name("repaint-diffusers", 10) == "steps-0010.png"
    assert runs.output_image_name("dpm-solver", 250) == "dpm-solver-steps-0250.png"
    assert runs.output_image_name("repaint", 10, "250") == "repaint-respaced250-steps-0010.png"
    assert runs.output_image_name("repaint", 10, "steps") == "repaint-steps-0010.png"
    names = set()
    for sampler, steps, walk in (("repaint-diffusers", 10, "steps"), ("ddim", 5, "steps"), ("dpm-solver", 250, "steps"),
                                 ("repaint", 10, "250"), ("repaint", 10, "steps"), ("repaint", 10, "100")):
        name = runs.output_image_name(sampler, steps, walk)
        names.add(name)
        assert runs.parse_output_image_name(name) == (sampler, walk, steps)
    assert len(names) == 6  # no two settings share a file
    assert runs.parse_output_image_name("original.png") is None
