"""Every way a user can get it wrong ends in one clear line: output that cannot be written (a real
read-only folder), silent wrong results, messages, options accepted and ignored, defaults and output width."""

import io
import json
import logging
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import invoke, one_line_error, sweep_config, write_images
from PIL import Image
from rich.console import Console
from typer.testing import CliRunner

from aaas_profile import cli, errors, fit, fitrun, metrics, runs, sweep
from aaas_profile.cli import app
from aaas_profile.cli import fit as cli_fit
from aaas_profile.cli import simulate as cli_simulate
from aaas_profile.sim import runner as sim_runner
from aaas_profile.sim.asps import SimError, paper_asps, profile_asps, read_asps_csv

FAST = ["--masks", "half", "--jump-length", "1", "--jump-n-sample", "1", "--save-images", "0",
        "--metrics", "tv,vif"]
SIM_FAST = ["--episodes", "1", "--no-optimum", "--no-baselines", "--horizon", "20000"]


# ---------------------------------------------------------------------------------------------------------
# A. Output that cannot be written: a real read-only folder
# ---------------------------------------------------------------------------------------------------------

def _unprivileged() -> list[str] | None:
    """A command prefix under which a chmod a-w folder really refuses writes, or None.

    As a normal user chmod is enough. As root (CI containers) permission bits do not stop writes, so the
    subprocess runs without the capabilities that bypass them (setpriv drops CAP_DAC_OVERRIDE and
    CAP_DAC_READ_SEARCH from its bounding set); the prefix is used only once a probe shows it works."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None
    prefix = [setpriv, "--bounding-set=-dac_override,-dac_read_search", "--inh-caps=-all"]
    probe = Path(os.environ.get("TMPDIR", "/tmp")) / f"aaas-ro-probe-{os.getpid()}"
    probe.mkdir(exist_ok=True)
    probe.chmod(0o555)
    try:
        done = subprocess.run([*prefix, sys.executable, "-c", f"open({str(probe / 'x')!r}, 'w')"],
                              capture_output=True)
    except OSError:
        return None
    finally:
        probe.chmod(0o755)
        shutil.rmtree(probe, ignore_errors=True)
    return prefix if done.returncode != 0 else None


# Runs several CLI invocations in one interpreter (imports once) and prints each one's exit code and output.
BATCH = """
import json, sys
from typer.testing import CliRunner
from aaas_profile.cli import app
results = []
for args in json.loads(sys.argv[1]):
    r = CliRunner().invoke(app, args)
    results.append({"code": r.exit_code, "output": r.output, "exception": repr(r.exception)})
print(json.dumps(results))
"""


def _read_only(path: Path) -> None:
    for p in [path, *path.rglob("*")]:
        p.chmod(p.stat().st_mode & ~0o222)


def _snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.rglob("*")
            if p.is_file()}


def test_read_only_output_is_one_line_and_changes_nothing(model_dir, image_dir, tmp_path):
    prefix = _unprivileged()
    if prefix is None:
        pytest.skip("running as root without setpriv: no way to make a folder refuse writes")
    run = tmp_path / "run"
    sweep.run(sweep_config(model_dir, image_dir, run, masks="half", steps="5", metrics="tv,vif"))
    partly = tmp_path / "partly"  # only scores/ read-only
    shutil.copytree(run, partly)
    _read_only(partly / "scores")
    locked = tmp_path / "locked"  # a whole read-only run folder and a read-only parent for new outputs
    shutil.copytree(run, locked)
    (locked / "fit-here").mkdir()
    _read_only(locked)
    before_run, before_partly = _snapshot(locked), _snapshot(partly)

    base = ["sweep", "--model", str(model_dir), "--data", str(image_dir), *FAST]
    cases = [
        [*base, "--steps", "5", "--out", str(locked)],  # finished: nothing to do, nothing to write
        [*base, "--steps", "5,10", "--out", str(locked)],
        [*base, "--steps", "5,10", "--out", str(partly)],
        [*base, "--steps", "5", "--out", str(locked / "fit-here" / "new")],
        ["fit", str(locked), "--bootstrap", "0", "--no-plots"],
        ["report", str(locked)],
        ["report", str(run), "--out", str(locked / "fit-here" / "r.html")],
        ["simulate", "--policy", "random", *SIM_FAST, "--out", str(locked)],
        ["train", "--data", str(image_dir), "--out", str(locked / "fit-here" / "model"), "--steps", "1"],
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(cli.__file__).parents[2]),
                                                       os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([*prefix, sys.executable, "-c", BATCH, json.dumps(cases)], capture_output=True,
                          text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout.strip().splitlines()[-1])

    assert results[0]["code"] == 0 and "0 cells run, 2 already done" in " ".join(results[0]["output"].split())
    for case, result in zip(cases[1:], results[1:], strict=True):
        text = " ".join(result["output"].split())
        assert result["code"] != 0 and text.startswith("error:") and "Traceback" not in result["output"], (case,
                                                                                                            result)
        assert "permission denied" in text.lower() or "cannot write" in text, (case, text)
    assert str(partly / "scores") in " ".join(results[2]["output"].split())
    assert _snapshot(locked) == before_run  # nothing changed, no temp file anywhere
    assert _snapshot(partly) == before_partly  # config.toml and manifest.json not rewritten before the failure


def test_outputs_that_are_files_or_missing_folders_are_one_line(model_dir, image_dir, tmp_path):
    run = sweep.run(sweep_config(model_dir, image_dir, tmp_path / "run", masks="half", steps="5",
                                 metrics="tv")).run_dir
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    missing = tmp_path / "missing" / "dir"
    one_line_error(invoke("report", run, "--out", missing / "r.html"), str(missing), "does not exist")
    assert not missing.parent.exists()
    one_line_error(invoke("report", run, "--out", a_file / "r.html"), "is a file")
    one_line_error(invoke("simulate", "--policy", "random", *SIM_FAST, "--out", a_file), "is a file")
    one_line_error(invoke("train", "--data", image_dir, "--out", a_file, "--steps", "1"), "is a file")
    folder = tmp_path / "pages"
    folder.mkdir()
    assert invoke("report", run, "--out", folder).exit_code == 0
    assert [p.name for p in folder.iterdir()] == ["report.html"]  # a folder: the page goes into it
    assert not [p for p in tmp_path.rglob(".*.tmp")]


def test_the_top_level_turns_any_os_error_into_one_line(monkeypatch, tmp_path):
    def broken(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / "x"))

    monkeypatch.setattr("aaas_profile.report.write", broken)
    one_line_error(invoke("report", tmp_path), str(tmp_path / "x"), "Permission denied", "permissions")


def test_every_error_class_is_a_user_error_and_only_the_app_catches_them():
    import importlib
    import inspect
    import pkgutil

    import aaas_profile

    classes = []
    for module in pkgutil.walk_packages(aaas_profile.__path__, "aaas_profile."):
        if not module.name.endswith("__main__"):
            loaded = importlib.import_module(module.name)
            classes += [c for c in vars(loaded).values()
                        if inspect.isclass(c) and issubclass(c, BaseException) and c.__module__ == loaded.__name__]
    assert len(classes) >= 16, classes  # the walk reached the stage modules (fit, sweep, samplers, sim ...)
    assert [c.__qualname__ for c in classes if not issubclass(c, errors.UserError)] == []
    commands = [p for p in Path(cli.__file__).parent.glob("*.py") if p.name not in ("__init__.py", "common.py")]
    assert len(commands) == 8  # __main__, declared, sweep, fit, simulate, train, models, report
    for path in commands:
        text = path.read_text()
        assert "fail(" not in text and "except UserError" not in text and "typer.Exit" not in text, path.name


# ---------------------------------------------------------------------------------------------------------
# C. Silent wrong results
# ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("level", [0, 255, 128])
def test_vif_is_nan_on_a_flat_original_and_a_number_otherwise(level):
    flat = torch.full((1, 3, 64, 64), level / 255)
    textured = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    output = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    scores = metrics.score(torch.cat([output, output]), torch.cat([flat, textured]), ["vif", "haarpsi"])
    assert scores["vif"][0].isnan() and scores["vif"][1].isfinite()  # piq alone: 1.0 for black
    assert scores["haarpsi"].isfinite().all()
    assert metrics.undefined_on(flat[0], ["vif"]) and not metrics.undefined_on(textured[0], ["vif"])
    assert not metrics.undefined_on(flat[0], ["tv", "haarpsi"])


def test_a_sweep_warns_about_flat_images_and_uneven_step_counts(model_dir, tmp_path):
    images = write_images(tmp_path / "images", n=1)
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(images / "black.png")
    prepared = sweep.prepare(sweep_config(model_dir, images, tmp_path / "run", steps="3,5", metrics="tv,vif",
                                          sampler="repaint-diffusers"))  # the strided walk: divisors matter
    text = " ".join(prepared.warnings)
    assert "image black.png: vif is undefined" in text and "img0.png" not in text
    assert "step count(s) 3 do not divide the 1000 training steps" in text
    result = sweep.run(prepared.config, prepared=prepared)
    table = runs.read_scores(result.run_dir)
    vif = table[table["metric"] == "vif"].set_index("image_id")["value"]
    assert vif[["black.png"]].isna().all() and vif[["img0.png"]].notna().all()


def test_a_noisy_runtime_model_warns_at_fit_time_and_simulate_has_a_fallback(tmp_path):
    noisy = {"model": "m", "device": "cpu", "dtype": "fp32", "measured": {"steps": [10.0, 20.0, 25.0, 50.0]},
             "vs_steps": {"coef": [-1.81, 1.49, -0.0387], "r2": 0.61}}
    warning = fit.runtime_warning(noisy)
    assert "is not positive at" in warning and "--runtime paper" in warning
    steady = {**noisy, "vs_steps": {"coef": [0.1, 0.02, 0.0001], "r2": 0.999}}
    assert fit.runtime_warning(steady) is None
    # the default demo's model: below zero at 1 step, positive and rising over the simulator's 100-250 steps
    demo = {**noisy, "vs_steps": {"coef": [-0.155, 0.0427, 0.000354], "r2": 0.93}}
    assert fit.runtime_warning(demo) is None
    assert "R² 0.50" in fit.runtime_warning({**steady, "vs_steps": {**steady["vs_steps"], "r2": 0.5}})

    profile = tmp_path / "fit.json"
    profile.write_text(json.dumps({"schema_version": 2, "curves": [{"model": "m", "mask": "half", "metric": "vif",
                                               "scale01": {"ax": 10, "ay": 0.1, "bx": 50, "by": 0.9}}],
                                   "runtime": {"steps": {"coef": noisy["vs_steps"]["coef"]}}}))
    with pytest.raises(SimError, match="--runtime paper"):
        profile_asps(profile)
    asps = profile_asps(profile, measured_runtime=False)
    assert asps.runtime_coef is None and any("--runtime paper" in n for n in asps.notes)


def test_two_resampling_settings_in_one_run_are_summarised_apart():
    table = pd.DataFrame({"metric": ["vif"] * 4, "steps": [10, 50, 10, 50], "value": [0.1, 0.5, 0.3, 0.9],
                          "jump_length": [1, 1, 10, 10], "jump_n_sample": [1, 1, 10, 10]})
    summary = sweep.summarise(table)
    assert list(summary["resampling"]) == ["1/1", "10/10"]
    assert list(summary["median_high"]) == [pytest.approx(0.5), pytest.approx(0.9)]


def test_sac_options_that_would_mislead_are_refused(tmp_path):
    asps = paper_asps(0)
    with pytest.raises(SimError, match="untrained"):
        sim_runner.check_options(sim_runner.SimOptions(train_episodes=0))
    with pytest.raises(SimError, match="no SAC checkpoint"):
        sim_runner.simulate(asps, tmp_path, sim_runner.SimOptions(resume=True, episodes=1, optimum=False,
                                                                  baselines=False))
    options = sim_runner.SimOptions(train_episodes=1, episodes=1, optimum=False, baselines=False)
    from aaas_profile.sim.env import SimConfig

    sim_runner.simulate(asps, tmp_path, options, config=SimConfig(horizon_s=20_000))
    meta = json.loads((tmp_path / "sim" / "sac" / "checkpoint.json").read_text())
    assert meta["seed"] == 0 and meta["asps_digest"] == sim_runner.asp_digest(asps)
    with pytest.raises(SimError, match="trained with --seed 0"):
        sim_runner.simulate(paper_asps(5), tmp_path, sim_runner.SimOptions(resume=True, seed=5, episodes=1,
                                                                           optimum=False, baselines=False))


@pytest.mark.parametrize("rows, words", [
    ("a,0,0.1,150,0.9,500\na,0,0.1,150,0.9,600", ["line 3", "sid 'a' repeats line 2"]),
    ("a,0,0.1,150,1.5,500", ["line 2", "by = 1.5 is outside [0, 1]"]),
    ("a,0,-0.1,150,0.5,500", ["line 2", "ay = -0.1 is outside [0, 1]"]),
    ("a,0,0.1,150,0.9,500\nb,0,0.6,150,0.5,500", ["line 3", "by = 0.5 is below ay = 0.6"]),
    ("a,-5,0.1,150,0.9,500", ["line 2", "ax = -5 is outside [0, 1e+09]"]),
    ("a,0,0.1,150,0.9,500,7\nb,0,0.1,150,0.9,500", ["line 2", "7 fields, the header has 6"]),
])
def test_bad_asp_tables_name_the_line_and_column(tmp_path, rows, words):
    path = tmp_path / "asps.csv"
    path.write_text("sid,ax,ay,bx,by,capacity\n" + rows + "\n")
    with pytest.raises(SimError) as caught:
        read_asps_csv(path)
    for word in words:
        assert word in str(caught.value)


# ---------------------------------------------------------------------------------------------------------
# D. Messages that say what is wrong with this input and what to do; E. options accepted and ignored
# ---------------------------------------------------------------------------------------------------------

def test_messages_say_what_is_wrong_and_what_to_do(model_dir, image_dir, tmp_path):
    a_file = image_dir / "img0.png"
    one_line_error(invoke("sweep", "--model", model_dir, "--data", a_file, *FAST, "--steps", "5", "--out",
                          tmp_path / "r"), "is a file, not a folder", "give the image folder")
    one_line_error(invoke("simulate", "--asps", tmp_path, *SIM_FAST), "is a folder, not a file")
    one_line_error(invoke("models", "import-repaint", tmp_path, "--name", "x"), "is a folder, not a file")
    text = tmp_path / "x.pt"
    text.write_text("hello\n")
    one_line_error(invoke("models", "import-repaint", text, "--name", "x"), "not a PyTorch checkpoint",
                   "give RePaint's")
    one_line_error(invoke("sweep", "--model", model_dir, "--data", image_dir, *FAST, "--seeds", "3-1"),
                   "range '3-1' is empty", "1-3")


@pytest.mark.parametrize("args, words", [
    (["--save-images", "-1"], ["--save-images must be an integer in [0, "]),
    (["--shards", "3"], ["--shards 3 only counts Ray tasks"]),
])
def test_sweep_options_are_checked_at_the_boundary(model_dir, image_dir, tmp_path, args, words):
    one_line_error(invoke("sweep", "--model", model_dir, "--data", image_dir, *FAST, "--steps", "5", "--out",
                          tmp_path / "r", *args), *words)
    assert not (tmp_path / "r").exists()


def test_config_file_values_are_checked_like_flags(tmp_path):
    path = tmp_path / "sweep.toml"
    for text, words in (('batch_size = "eight"\n', "batch_size must be an int"),
                        ("steps = [10, 2.5]\n", "steps must be a list of ints"),
                        ("save_images = -2\n", r"--save-images must be an integer in \[0, "),
                        ("eta = true\n", "eta must be a float")):
        path.write_text(text)
        with pytest.raises(sweep.SweepError, match=words):
            sweep.SweepConfig.from_sources(path)
    path.write_text("eta = 1\n")  # an integer is a fine float
    assert sweep.SweepConfig.from_sources(path).eta == 1.0


def test_sweep_refuses_a_folder_that_is_not_a_run_and_train_refuses_a_run(model_dir, image_dir, tmp_path):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "todo.txt").write_text("x")
    with pytest.raises(runs.RunError, match="is not a run folder"):
        sweep.prepare(sweep_config(model_dir, image_dir, notes))
    run = sweep.run(sweep_config(model_dir, image_dir, tmp_path / "run", masks="half", steps="5",
                                 metrics="tv")).run_dir
    one_line_error(invoke("train", "--data", image_dir, "--out", run, "--steps", "1"), "is a sweep's run folder")
    one_line_error(invoke("train", "--data", image_dir, "--out", tmp_path / "m", "--steps", "1",
                          "--warmup-steps", "-5"), "--warmup-steps must be an integer in [0, ")


def test_simulate_refuses_sac_options_with_a_baseline(tmp_path):
    one_line_error(invoke("simulate", "--policy", "random", "--checkpoint", tmp_path / "c.pt", *SIM_FAST,
                          "--out", tmp_path), "--checkpoint only applies to --policy sac")
    one_line_error(invoke("simulate", "--policy", "sac", "--train-episodes", "0", *SIM_FAST, "--out", tmp_path),
                   "untrained")


# ---------------------------------------------------------------------------------------------------------
# F. Defaults and output
# ---------------------------------------------------------------------------------------------------------

def test_the_default_out_follows_from_the_configuration(model_dir, image_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    def default_out(**options):
        return sweep.prepare(replace(sweep_config(model_dir, image_dir, tmp_path, **options), out=None)).run_dir

    first = default_out(steps="5")
    again = default_out(steps="5")
    more_steps = default_out(steps="5,10", seeds="0,1")
    other_masks = default_out(steps="5", masks="thick")
    other_sampler = default_out(steps="5", sampler="ddim")
    other_metrics = default_out(steps="5", metrics="tv")
    # the same command resumes the same folder; another experiment on the same data gets its own
    assert first == again
    assert len({first, more_steps, other_masks, other_sampler, other_metrics}) == 5
    assert first.parent == Path("results") and first.name.startswith(f"{Path(model_dir).name}-images-")


def _render(print_summary, *args) -> str:
    buffer = io.StringIO()
    narrow = Console(file=buffer, width=80, force_terminal=False)
    original = cli_fit.console, cli_simulate.console
    cli_fit.console = cli_simulate.console = narrow
    try:
        print_summary(*args)
    finally:
        cli_fit.console, cli_simulate.console = original
    return buffer.getvalue()


def test_summary_tables_are_readable_at_80_columns(model_dir, image_dir, tmp_path):
    run = sweep.run(sweep_config(model_dir, image_dir, tmp_path / "run", steps="5,10,20")).run_dir
    result = fitrun.fit_run(run, resamples=20, plots=False)
    text = _render(cli_fit._print_summary, result, 0.95)
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= 80
    for name in ("tv ↓", "brisque ↓", "dss ↑", "haarpsi ↑", "mdsi ↓", "vif ↑"):
        assert name in text

    from aaas_profile.sim.env import SimConfig

    sim = sim_runner.simulate(paper_asps(0), tmp_path / "sim", sim_runner.SimOptions(
        policy="greedy-oracle", episodes=2, optimum=False), config=SimConfig(horizon_s=50_000))
    text = _render(cli_simulate._print_summary, sim, "paper preset, seed 0", 0, 2, "greedy-oracle")
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= 80
    assert "crash-avoid" in text and "greedy-oracle" in text


def test_train_says_from_which_step_it_resumed_and_prints_no_dtype_warning(image_dir, tmp_path):
    args = ["train", "--data", image_dir, "--out", tmp_path / "m", "--resolution", "16", "--channels", "8,16",
            "--batch-size", "2", "--warmup-steps", "1", "--checkpoint-every", "1", "--device", "cpu"]
    records = []  # diffusers logs to its own handler on the real stderr: listen on its logger instead
    listener = logging.Handler()
    listener.emit = records.append
    logging.getLogger("diffusers").addHandler(listener)
    try:
        first = CliRunner().invoke(app, [str(a) for a in [*args, "--steps", "2"]])
        assert first.exit_code == 0, first.output
        again = CliRunner().invoke(app, [str(a) for a in [*args, "--steps", "3"]])
        assert again.exit_code == 0, again.output
    finally:
        logging.getLogger("diffusers").removeHandler(listener)
    assert not [r.getMessage() for r in records if "float32" in r.getMessage()]
    text = " ".join(again.output.split())
    assert "resuming from the checkpoint at step 2 of 3" in text and "resumed from step 2" in text
    assert "float32" not in first.output + again.output
    assert "…" not in again.output  # the summary's long paths break across lines at 80 columns, never cut


def test_check_writable_probes_for_real(tmp_path):
    errors.check_writable(tmp_path / "new" / "deeper")  # would be made under a writable folder
    assert list(tmp_path.iterdir()) == []  # the probe leaves nothing
    a_file = tmp_path / "f"
    a_file.write_text("x")
    with pytest.raises(errors.UserError, match="is a file, not a folder"):
        errors.check_writable(a_file / "sub")


def test_help_says_the_default_out_resumes():
    text = " ".join(invoke("sweep", "--help").output.replace("│", " ").split())
    assert "so the same command resumes" in text and "digest of every setting that defines the cells" in text
    assert "another experiment gets its own folder" in text

