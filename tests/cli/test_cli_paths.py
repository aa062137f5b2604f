"""The paths only the real command line reaches: `report` as a command, `sweep --config`, shards from the
command line and on Ray, Ctrl-C, `train --time-limit`, resume refusals, and `sweep` → `fit` → `simulate
--profile` → `report` on one real (small) run folder. Everything goes through ``aaas_profile.cli.app``, the
app the console script runs; Ctrl-C goes to a real subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import tomllib

import numpy as np
import pandas as pd
import pytest
from conftest import assert_scores_close, invoke, one_line_error, save_model, write_images

from aaas_profile import cli, runs, sweep

KEY = [*runs.CELL_KEY, "metric"]
# one step count, no resampling, two cheap metrics, on the CPU in fp32 (the tests compare runs with each other)
FAST = ["--steps", "5", "--jump-length", "1", "--jump-n-sample", "1", "--save-images", "0", "--metrics",
        "tv,haarpsi", "--device", "cpu", "--dtype", "fp32"]


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    """Rich fits tables to the terminal; a wide one keeps cells on one line for the assertions."""
    monkeypatch.setattr(cli.common.console, "width", 240)


def ok(result):
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())


# ---- sweep → fit → simulate --profile → report ----------------------------------------------------------------

def test_sweep_fit_simulate_profile_and_report_from_the_command_line(model_dir, tmp_path):
    images = write_images(tmp_path / "images", n=2)
    run = tmp_path / "run"
    ok(invoke("sweep", "--model", model_dir, "--data", images, "--masks", "half", "--steps", "2,4,6,10",
              "--jump-length", "1", "--jump-n-sample", "1", "--save-images", "1", "--device", "cpu", "--out", run))
    text = ok(invoke("fit", run, "--bootstrap", "10"))
    assert f"wrote {run / 'fit.json'}" in text
    fit = json.loads((run / "fit.json").read_text())
    haarpsi = [c for c in fit["curves"] if c["metric"] == "haarpsi"]
    assert len(haarpsi) == 1  # one model × one mask

    simulate = ["simulate", "--profile", run / "fit.json", "--metric", "haarpsi", "--policy", "crash-avoid",
                "--episodes", "1", "--no-optimum", "--horizon", "100000"]  # --out defaults to the profile's folder
    # Two images are too few for intervals, so fit flags the curve and simulate refuses it unless told.
    one_line_error(invoke(*simulate), "under-determined", "--allow-flagged-profile")
    ok(invoke(*simulate, "--allow-flagged-profile"))
    folder = run / "sim" / "crash-avoid"
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["asps"] == "profile fit.json, metric haarpsi"
    # Every ASP serves with the one fitted haarpsi curve; tasks ask for 100-250 steps, beyond its Bx (the sweep
    # went up to 10), so each finished task earns the curve's whole gain By − Ay on the [0, 1] scale.
    curve = haarpsi[0]["scale01"]
    assert curve["bx"] <= 10
    episodes = pd.read_parquet(folder / "episodes.parquet").query("policy == 'crash-avoid'")
    assert episodes["crashes"].tolist() == [0] and episodes["finished"].iloc[0] > 50
    assert episodes["mean_reward_per_finished"].iloc[0] == pytest.approx(curve["by"] - curve["ay"], rel=1e-9)

    text = ok(invoke("report", run))
    page = (run / "report.html").read_text()
    assert f"wrote {run / 'report.html'}" in text
    for section in ("Outputs across step counts", "Fitted (Ax, Ay, Bx, By)", "ASP selection simulator",
                    "crash-avoid"):
        assert section in page, section


def test_report_command_errors_are_one_line(tmp_path):
    one_line_error(invoke("report", tmp_path), "holds no manifest")
    assert not (tmp_path / "report.html").exists()


# ---- sweep --config --------------------------------------------------------------------------------------------

def test_sweep_reads_a_config_file_and_flags_override_it(model_dir, image_dir, tmp_path):
    path = tmp_path / "sweep.toml"
    path.write_text(f'model = "{model_dir}"\ndata = "{image_dir}"\nmasks = ["half"]\nsteps = [5, 10]\n'
                    'jump_length = 1\njump_n_sample = 1\nmetrics = ["tv", "vif"]\nsave_images = 0\n'
                    f'device = "cpu"\nout = "{tmp_path / "from-file"}"\n')
    out = tmp_path / "from-flags"
    text = ok(invoke("sweep", "--config", path, "--steps", "5", "--out", out))
    assert "2 cells run, 0 already done" in text
    saved = tomllib.loads((out / "config.toml").read_text())
    assert saved["steps"] == [5] and saved["metrics"] == ["tv", "vif"] and saved["model"] == str(model_dir)
    table = runs.read_scores(out)
    assert len(table) == 2 * 2 and set(table["metric"]) == {"tv", "vif"}  # images × metrics, at 5 steps only
    assert not (tmp_path / "from-file").exists()

    path.write_text('stepz = [5]\n')
    one_line_error(invoke("sweep", "--config", path, "--out", tmp_path / "bad"), "unknown configuration key",
                   "stepz")
    one_line_error(invoke("sweep", "--config", tmp_path / "missing.toml", "--out", tmp_path / "bad"),
                   "missing.toml", "cannot read the configuration")
    assert not (tmp_path / "bad").exists()


# ---- shards from the command line, and on Ray ------------------------------------------------------------------

def same_rows(a: pd.DataFrame, b: pd.DataFrame, exact: bool) -> None:
    a, b = a.sort_values(KEY, ignore_index=True), b.sort_values(KEY, ignore_index=True)
    assert a[KEY].equals(b[KEY]) and not b.duplicated(KEY).any()
    if exact:
        assert np.array_equal(a["value"].to_numpy(), b["value"].to_numpy(), equal_nan=True)
    else:  # Ray workers run one torch thread: sums inside the UNet in another order (measured: conftest)
        assert_scores_close(a, b, KEY)


def test_sweep_shards_from_the_command_line_give_the_rows_of_one(model_dir, image_dir, tmp_path):
    grid = ["--masks", "half,box", "--batch-size", "1"]  # one cell per UNet call: the same sums in every process
    ok(invoke("sweep", "--model", model_dir, "--data", image_dir, *FAST, *grid, "--out", tmp_path / "one"))
    out = tmp_path / "sharded"
    assert "2 cells run" in ok(invoke("sweep", "--model", model_dir, "--data", image_dir, *FAST, *grid,
                                      "--shard", "0/2", "--out", out))
    assert "2 cells run" in ok(invoke("sweep", "--model", model_dir, "--data", image_dir, *FAST, *grid,
                                      "--shard", "1/2", "--out", out))
    same_rows(runs.read_scores(tmp_path / "one"), runs.read_scores(out), exact=True)
    shards = [i["shard"] for i in runs.Manifest(out / "manifest.json").read()["invocations"]]
    assert shards == ["0/2", "1/2"]
    one_line_error(invoke("sweep", "--model", model_dir, "--data", image_dir, *FAST, *grid, "--shard", "2/2",
                          "--out", tmp_path / "bad"), "shard 2/2")
    one_line_error(invoke("sweep", "--model", model_dir, "--data", image_dir, *FAST, *grid, "--shard", "0/2",
                          "--ray", "local", "--out", tmp_path / "bad"), "--shard and --ray exclude each other")
    assert not (tmp_path / "bad").exists()


@pytest.mark.slow  # 42 s on a loaded 2-core machine, most of it starting Ray
def test_sweep_on_local_ray_from_the_command_line_gives_the_rows_of_one(model_dir, image_dir, tmp_path):
    pytest.importorskip("ray")
    grid = ["--masks", "half,box"]
    ok(invoke("sweep", "--model", model_dir, "--data", image_dir, *FAST, *grid, "--out", tmp_path / "one"))
    text = ok(invoke("sweep", "--model", model_dir, "--data", image_dir, *FAST, *grid, "--ray", "local",
                     "--shards", "2", "--out", tmp_path / "ray"))
    assert "shard 0/2: 2 cells" in text and "shard 1/2: 2 cells" in text
    same_rows(runs.read_scores(tmp_path / "one"), runs.read_scores(tmp_path / "ray"), exact=False)


# ---- Ctrl-C ----------------------------------------------------------------------------------------------------

@pytest.mark.timing
def test_ctrl_c_exits_130_and_keeps_the_finished_cells(model_dir, image_dir, tmp_path):
    """SIGINT to a real `aaas-profile sweep` process, as a terminal's Ctrl-C sends it."""
    out = tmp_path / "run"
    command = [sys.executable, "-m", "aaas_profile.cli", "sweep", "--model", str(model_dir), "--data",
               str(image_dir), "--masks", "half,thick,box", "--steps", "5,10", "--jump-length", "1",
               "--jump-n-sample", "1", "--batch-size", "1", "--save-images", "0", "--metrics", "tv,haarpsi",
               "--device", "cpu", "--out", str(out)]
    # The sweep waits after its first part until a file that never appears (sweep.HOLD_ENV): the signal lands
    # mid-sweep however fast or loaded the machine is.
    env = {**os.environ, sweep.HOLD_ENV: str(tmp_path / "never")}
    # SIGINT back to its default in the child: a shell starts background jobs (`make test &`) with it ignored,
    # and an ignored SIGINT is inherited, so Python would never raise KeyboardInterrupt.
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 300
    while not runs.part_files(out) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, process.communicate()[1]
    os.kill(process.pid, signal.SIGINT)
    try:
        _, stderr = process.communicate(timeout=300)
    finally:  # never leave a held sweep behind
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, stderr
    # before it: the sweep-time warning that 2 images at 2 step counts cannot support a conclusion
    before, _, error = stderr.partition("error:")
    assert " ".join(before.split()).startswith("warning: 2 image(s) at 2 step counts")
    message = " ".join(("error:" + error).split())
    assert message.startswith("error: interrupted: finished cells are saved in") and "Traceback" not in stderr
    written = len(runs.part_files(out))
    assert written == 1 and len(runs.read_scores(out)) == 2  # one whole cell (batch size 1), 2 metrics
    assert not list((out / "scores").glob(".*.tmp"))


# ---- train --time-limit, and resume refusals -------------------------------------------------------------------

TRAIN = ["--resolution", "16", "--channels", "8,16", "--batch-size", "2", "--warmup-steps", "1",
         "--checkpoint-every", "1", "--device", "cpu", "--precision", "fp32"]


def test_train_time_limit_stops_saves_and_resumes_from_the_command_line(tmp_path):
    data = write_images(tmp_path / "data", n=3, size=40)
    out = tmp_path / "model"
    text = ok(invoke("train", "--data", data, "--out", out, "--steps", "50", "--time-limit", "0", *TRAIN))
    assert "1 (time limit)" in text  # the summary's steps row
    assert "stopped by the time limit" in (out / "README.md").read_text()
    text = ok(invoke("train", "--data", data, "--out", out, "--steps", "3", *TRAIN))
    assert "Steps: 3 of batch 2" in (out / "README.md").read_text()
    one_line_error(invoke("train", "--data", data, "--out", out, "--steps", "2", *TRAIN),
                   "checkpoint is at step 3, beyond --steps 2")
    one_line_error(invoke("train", "--data", data, "--out", out, "--steps", "4", "--lr", "3e-4", *TRAIN),
                   "other settings (lr)")


def test_sweep_resume_refuses_other_weights_and_steps_beyond_training(model_dir, image_dir, tmp_path):
    out = tmp_path / "run"
    grid = ["--masks", "half"]
    ok(invoke("sweep", "--model", model_dir, "--data", image_dir, *FAST, *grid, "--out", out))
    parts, before = runs.part_files(out), runs.read_scores(out)
    other = save_model(tmp_path / "other-weights", seed=1)  # same architecture and schedule, other weights
    one_line_error(invoke("sweep", "--model", other, "--data", image_dir, *FAST, *grid, "--out", out),
                   "was swept with other model weights")
    one_line_error(invoke("sweep", "--model", model_dir, "--data", image_dir, *FAST, *grid, "--steps", "5,2000",
                          "--out", out), "steps go up to 2000 but respacing 250 walks a 250-step grid")
    assert runs.part_files(out) == parts and runs.read_scores(out).equals(before)
    one_line_error(invoke("sweep", "--model", model_dir, "--data", image_dir, *FAST, *grid, "--steps", "2000",
                          "--out", tmp_path / "new"), "t_T = steps must be ≤ 250")
    assert not (tmp_path / "new").exists()
