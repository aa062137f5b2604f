import json
import os
import signal
import subprocess
import sys
import time
import tomllib

import pandas as pd
import pytest
from conftest import sweep_config

from aaas_profile import runs, sweep
from aaas_profile.metrics import ALL

KEY = [*runs.CELL_KEY, "metric"]


def config(model_dir, image_dir, out, **kw):
    return sweep_config(model_dir, image_dir, out, **{"save_images": 1, **kw})


def test_a_sweep_writes_a_complete_run_folder(model_dir, image_dir, tmp_path):
    result = sweep.run(config(model_dir, image_dir, tmp_path / "run"))
    run = result.run_dir
    table = runs.read_scores(run)
    assert list(table.columns) == list(runs.COLUMNS)
    assert len(table) == 2 * 2 * 1 * 2 * len(ALL)  # images × masks × seeds × steps × metrics
    assert not table.duplicated(KEY).any()
    assert set(table["steps"]) == {5, 10} and set(table["mask"]) == {"half", "thick"}
    assert (table.loc[table["steps"] == 10, "unet_calls"] == 10).all()
    assert table["value"].notna().all()
    assert table.groupby("metric")["higher_is_better"].first().to_dict() == {
        "tv": False, "brisque": False, "mdsi": False, "dss": True, "haarpsi": True, "vif": True}
    assert (table["wall_s"] > 0).all() and set(table["device"]) == {"cpu"} and set(table["dtype"]) == {"fp32"}

    saved = tomllib.loads((run / "config.toml").read_text())
    assert saved["steps"] == [5, 10] and saved["model"] == str(model_dir)
    manifest = json.loads((run / "manifest.json").read_text())
    env = manifest["environment"]
    assert env["torch"] and env["diffusers"] and env["piq"] == "0.8.0" and env["device"] == "cpu"
    assert manifest["model"]["weights_sha256"] and manifest["seeds"]["cell_seeds"] == [0]
    assert manifest["invocations"][0]["cells_run"] == 8
    cell_images = sorted(p.name for p in next((run / "images").iterdir()).iterdir())
    assert cell_images == ["corrupted.png", "original.png", "steps-0005.png", "steps-0010.png"]
    assert list(result.summary["metric"]) == list(ALL)


def test_starting_again_skips_finished_cells_and_extends_the_grid(model_dir, image_dir, tmp_path):
    first = sweep.run(config(model_dir, image_dir, tmp_path / "run"))
    again = sweep.run(config(model_dir, image_dir, tmp_path / "run"))
    assert (first.cells_run, again.cells_run, again.cells_skipped) == (8, 0, 8)
    wider = sweep.run(config(model_dir, image_dir, tmp_path / "run", steps="5,10,20"))
    assert wider.cells_run == 4
    table = runs.read_scores(tmp_path / "run")
    assert len(table) == 12 * len(ALL) and not table.duplicated(KEY).any()


def test_batched_and_unbatched_sweeps_give_the_same_table(model_dir, image_dir, tmp_path):
    one = runs.read_scores(sweep.run(config(model_dir, image_dir, tmp_path / "a", batch_size=1)).run_dir)
    many = runs.read_scores(sweep.run(config(model_dir, image_dir, tmp_path / "b", batch_size=8)).run_dir)
    merged = one.merge(many, on=KEY, suffixes=("_1", "_8"))
    assert len(merged) == len(one) == len(many)
    assert merged["value_1"].to_numpy() == pytest.approx(merged["value_8"].to_numpy(), rel=1e-3, abs=1e-4)


def test_a_killed_sweep_resumes_to_the_same_table(model_dir, image_dir, tmp_path):
    """kill -9 in the middle, start again: no row lost, none duplicated, same values."""
    reference = runs.read_scores(sweep.run(config(model_dir, image_dir, tmp_path / "ref")).run_dir)
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "aaas_profile.cli", "sweep", "--model", str(model_dir), "--data",
               str(image_dir), "--masks", "half,thick", "--steps", "5,10", "--seeds", "0", "--jump-length", "1",
               "--jump-n-sample", "1", "--batch-size", "1", "--save-images", "0", "--dtype", "fp32", "--out", str(out)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while len(runs.part_files(out)) < 2 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, process.stderr.read().decode()
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    written = len(runs.part_files(out))
    assert 2 <= written < 8
    finished = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    assert f"{8 - written} cells run, {written} already done" in " ".join(finished.stdout.split())
    resumed = runs.read_scores(out)
    assert len(resumed) == len(reference) and not resumed.duplicated(KEY).any()
    merged = reference.merge(resumed, on=KEY, suffixes=("_ref", "_resumed"))
    assert len(merged) == len(reference)
    assert merged["value_ref"].to_numpy() == pytest.approx(merged["value_resumed"].to_numpy(), rel=1e-3, abs=1e-4)
    assert not list((out / "scores").glob(".*.tmp"))


def test_a_damaged_part_is_named_and_nothing_else_is_touched(model_dir, image_dir, tmp_path):
    run = sweep.run(config(model_dir, image_dir, tmp_path / "run")).run_dir
    parts = runs.part_files(run)
    parts[0].write_bytes(b"not parquet")
    with pytest.raises(runs.RunError, match=f"{parts[0].name}: unreadable scores part"):
        sweep.run(config(model_dir, image_dir, tmp_path / "run"))
    assert runs.part_files(run) == parts


def test_resuming_with_other_fixed_settings_is_refused(model_dir, image_dir, tmp_path):
    sweep.run(config(model_dir, image_dir, tmp_path / "run", steps="5"))
    with pytest.raises(runs.RunError, match="other metrics"):
        sweep.prepare(config(model_dir, image_dir, tmp_path / "run", steps="5", metrics="tv"))


def test_config_file_is_overridden_by_flags(tmp_path):
    path = tmp_path / "sweep.toml"
    path.write_text('model = "celeba"\nsteps = [10, 50]\nseeds = "0-2"\nbatch_size = 2\n')
    cfg = sweep.SweepConfig.from_sources(path, steps="25,10", batch_size=None)
    assert (cfg.model, cfg.steps, cfg.seeds, cfg.batch_size) == ("celeba", [10, 25], [0, 1, 2], 2)
    path.write_text("stepz = [1]\n")
    with pytest.raises(sweep.SweepError, match="unknown configuration key"):
        sweep.SweepConfig.from_sources(path)


def test_default_grid_divides_the_training_steps():
    assert all(1000 % steps == 0 for steps in sweep.DEFAULT_STEPS)


def test_summary_reports_medians_at_both_ends():
    table = pd.DataFrame({"metric": ["vif"] * 4, "steps": [10, 10, 50, 50], "value": [0.1, 0.3, 0.5, 0.9]})
    row = sweep.summarise(table).iloc[0]
    assert (row.steps_low, row.median_low, row.steps_high, row.median_high, row.better) == (
        10, pytest.approx(0.2), 50, pytest.approx(0.7), "higher")
