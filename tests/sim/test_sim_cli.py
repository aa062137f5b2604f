"""``simulate`` from the command line: a smoke run per policy, outputs written, one-line errors."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from conftest import one_line_error
from typer.testing import CliRunner

from aaas_profile.cli import app  # the real app: its group turns the stage's UserError into one line
from aaas_profile.sim.registry import names as policy_names

runner = CliRunner()
FAST = ["--episodes", "1", "--no-optimum", "--train-episodes", "1", "--horizon", "100000"]  # ≈ 100 tasks


@pytest.mark.parametrize("policy", policy_names())
def test_smoke_every_policy(tmp_path, policy):
    result = runner.invoke(
        app, ["simulate", "--policy", policy, "--out", str(tmp_path), "--no-baselines", *FAST]
    )
    assert result.exit_code == 0, result.output
    folder = tmp_path / "sim" / policy
    table = pd.read_parquet(folder / "episodes.parquet")
    assert len(table) == 1 and table["policy"].tolist() == [policy]
    assert {"reward", "crashes", "interrupted", "finished", "mean_reward_per_finished"} <= set(table.columns)
    assert (folder / "figure6.png").stat().st_size > 1000
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["policies"][policy]["reward"]["mean"] == pytest.approx(table["reward"].iloc[0])
    if policy == "sac":
        assert (folder / "checkpoint.pt").exists() and (folder / "figure5.png").exists()
        training = pd.read_parquet(folder / "training.parquet")
        (point,) = summary["sac_learning"]["curve"]  # one training episode, validated at its end
        assert point["env_steps"] == training["env_steps"].iloc[-1] > 0
        assert point["wall_s"] == training["wall_s"].iloc[-1] == pytest.approx(summary["train_seconds"])


def test_baselines_optimum_and_checkpoint(tmp_path):
    result = runner.invoke(
        app,
        [
            "simulate",
            "--policy",
            "sac",
            "--out",
            str(tmp_path),
            "--episodes",
            "1",
            "--train-episodes",
            "1",
            "--optimum-time-limit",
            "5",
            "--horizon",
            "100000",
        ],
    )
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(tmp_path / "sim" / "greedy-oracle" / "episodes.parquet")
    assert table["optimum"].iloc[0] >= table["finished_gain"].iloc[0]
    assert "hindsight optimum" in result.output and "greedy-oracle" in result.output
    # evaluate the saved checkpoint without training
    ckpt = tmp_path / "sim" / "sac" / "checkpoint.pt"
    result = runner.invoke(
        app,
        ["simulate", "--out", str(tmp_path / "again"), "--checkpoint", str(ckpt), "--no-baselines", *FAST],
    )
    assert result.exit_code == 0, result.output
    # resume: continue to 2 episodes from the checkpoint
    result = runner.invoke(
        app,
        [
            "simulate",
            "--out",
            str(tmp_path),
            "--resume",
            "--no-baselines",
            "--episodes",
            "1",
            "--no-optimum",
            "--train-episodes",
            "2",
            "--horizon",
            "100000",
        ],
    )
    assert result.exit_code == 0, result.output
    training = pd.read_parquet(tmp_path / "sim" / "sac" / "training.parquet")
    assert training["episode"].tolist() == [1, 2]


def test_asps_csv_and_profile(tmp_path):
    csv = tmp_path / "asps.csv"
    csv.write_text("sid,ax,ay,bx,by,capacity\na,0,0.1,150,0.6,500\nb,50,0.0,240,0.95,1500\n")
    result = runner.invoke(
        app, ["simulate", "--policy", "greedy-oracle", "--asps", str(csv), "--out", str(tmp_path), *FAST]
    )
    assert result.exit_code == 0, result.output
    assert "table asps.csv" in result.output
    fit = tmp_path / "run" / "fit.json"
    fit.parent.mkdir()
    fit.write_text(
        json.dumps(
            {
                "schema_version": 2,
                "curves": [
                    {
                        "model": "m",
                        "mask": "thick",
                        "metric": "vif",
                        "scale01": {"ax": 10, "ay": 0.1, "bx": 120, "by": 0.8},
                    }
                ],
                "runtime": {"steps": {"coef": [1.0, 0.02]}},
            }
        )
    )
    result = runner.invoke(app, ["simulate", "--policy", "crash-avoid", "--profile", str(fit), *FAST])
    assert result.exit_code == 0, result.output
    assert (
        fit.parent / "sim" / "crash-avoid" / "episodes.parquet"
    ).exists()  # default out: the profile's run


@pytest.mark.parametrize(
    "args, message",
    [
        (["--policy", "best"], "unknown policy 'best'"),
        (["--asps", "nowhere.csv"], "does not exist"),
        (["--profile", "nowhere.json"], "does not exist"),
        (["--preset", "huge"], "unknown preset"),
        (["--horizon", "0"], "--horizon must be a finite number in (0, "),
    ],
)
def test_one_line_errors(tmp_path, args, message):
    result = runner.invoke(app, ["simulate", "--out", str(tmp_path), *FAST, *args])
    assert result.exit_code == 2
    assert message in result.output and len(result.output.strip().splitlines()) == 1


def test_invalid_files_are_one_line_errors(tmp_path):
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("sid,ax\na,1\n")
    bad_fit = tmp_path / "fit.json"
    bad_fit.write_text("{broken")
    for args in (["--asps", str(bad_csv)], ["--profile", str(bad_fit)]):
        result = runner.invoke(app, ["simulate", "--out", str(tmp_path), *FAST, *args])
        assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output


def test_help_has_examples():
    result = runner.invoke(app, ["simulate", "--help"])
    assert result.exit_code == 0 and "Examples" in result.output and "--profile" in result.output


def test_a_flagged_profile_is_refused_in_one_line_unless_allowed(tmp_path):
    # fit.json schema 2 flags a flat curve; simulate refuses it with the flag's reason, or uses it on request.
    fit = tmp_path / "fit.json"
    curve = {"model": "m", "mask": "thick", "metric": "vif", "scale01": {"ax": 1, "ay": 0.0, "bx": 2, "by": 0.1},
             "flags": [{"code": "no_effect", "message": "no measurable effect of steps (50 vs 1 steps: Wilcoxon "
                                                        "p = 0.43)"}]}
    fit.write_text(json.dumps({"schema_version": 2, "curves": [curve]}))
    result = runner.invoke(app, ["simulate", "--policy", "crash-avoid", "--profile", str(fit), *FAST])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output
    text = " ".join(result.output.split())
    assert "curve m/thick/vif: no measurable effect of steps" in text and "--allow-flagged-profile" in text
    result = runner.invoke(app, ["simulate", "--policy", "crash-avoid", "--profile", str(fit),
                                 "--allow-flagged-profile", *FAST])
    assert result.exit_code == 0, result.output
# -- paths only the real command line reaches --------------------------------------------------------------

def real_app():
    from aaas_profile.cli import app as project_app

    return project_app


SEEDS_FAST = ["--policy", "greedy-oracle", "--episodes", "2", "--no-optimum", "--horizon", "100000"]


def seeds_run(tmp_path, *extra):
    result = runner.invoke(real_app(), ["simulate", *SEEDS_FAST, "--seeds", "0-2", "--out", str(tmp_path), *extra])
    assert result.exit_code == 0, result.output
    return pd.read_parquet(tmp_path / "sim" / "greedy-oracle" / "seeds.parquet")


def test_seeds_run_each_seed_on_its_own_asps_and_aggregate_them(tmp_path):
    from aaas_profile.sim.asps import preset_asps, read_asps_csv

    table = seeds_run(tmp_path)
    assert sorted(table["seed"].unique()) == [0, 1, 2]
    for k in range(3):
        own = pd.read_parquet(tmp_path / f"seed-{k}" / "sim" / "greedy-oracle" / "episodes.parquet")
        mine = table[(table["seed"] == k) & (table["policy"] == "greedy-oracle")]
        assert mine["reward"].tolist() == own["reward"].tolist()  # the same computation: bit for bit
        written = read_asps_csv(tmp_path / f"seed-{k}" / "sim" / "asps.csv")
        assert written.capacity.tolist() == preset_asps("paper", k).capacity.tolist()
    assert table.groupby("seed")["reward"].mean().nunique() == 3  # three ASP tables, three results
    summary = pd.read_parquet(tmp_path / "sim" / "greedy-oracle" / "seeds_summary.parquet").set_index("policy")
    oracle = table[table["policy"] == "greedy-oracle"]
    assert summary.loc["greedy-oracle", "mean_reward"] == pytest.approx(oracle["reward"].mean(), rel=1e-12)


def test_seeds_on_local_ray_match_the_serial_run(tmp_path):  # 7 s with Ray's local start (measured under load)
    serial = seeds_run(tmp_path / "serial")
    on_ray = seeds_run(tmp_path / "ray", "--ray", "local")
    key = ["seed", "policy", "episode"]
    serial, on_ray = serial.sort_values(key).reset_index(drop=True), on_ray.sort_values(key).reset_index(drop=True)
    assert on_ray["reward"].tolist() == serial["reward"].tolist()  # the same computation: bit for bit


def test_checkpoint_is_evaluated_without_training(tmp_path, monkeypatch):
    from aaas_profile.sim import AspSelectionEnv, SimConfig, preset_asps, sac
    from aaas_profile.sim.runner import eval_seeds, run_episode

    result = runner.invoke(real_app(), ["simulate", "--out", str(tmp_path / "trained"), "--no-baselines", *FAST])
    assert result.exit_code == 0, result.output
    ckpt = tmp_path / "trained" / "sim" / "sac" / "checkpoint.pt"
    agent = sac.DiscreteSAC.load(ckpt)

    def no_training(*args, **kwargs):
        raise AssertionError("simulate --checkpoint ran a training step")

    monkeypatch.setattr(sac, "train", no_training)
    monkeypatch.setattr(sac.DiscreteSAC, "update", no_training)
    result = runner.invoke(real_app(), ["simulate", "--out", str(tmp_path / "eval"), "--checkpoint", str(ckpt),
                                        "--no-baselines", *FAST])
    assert result.exit_code == 0, result.output
    folder = tmp_path / "eval" / "sim" / "sac"
    assert not (folder / "training.parquet").exists() and not (folder / "checkpoint.pt").exists()
    # the evaluation is the checkpoint's best-validated actor, greedy, on the evaluation stream
    env = AspSelectionEnv(preset_asps("paper", 0), SimConfig(horizon_s=100_000))
    expected = run_episode(env, sac.SacPolicy(agent, best=True), eval_seeds(0, 1)[0])["reward"]
    assert pd.read_parquet(folder / "episodes.parquet")["reward"].tolist() == [expected]


def test_a_checkpoint_for_another_number_of_asps_is_refused(tmp_path):
    csv = tmp_path / "three.csv"
    csv.write_text("sid,ax,ay,bx,by,capacity\na,0,0.1,150,0.6,500\nb,50,0,240,0.95,1500\nc,0,0,200,0.9,800\n")
    result = runner.invoke(real_app(), ["simulate", "--asps", str(csv), "--out", str(tmp_path / "three"),
                                        "--no-baselines", *FAST])
    assert result.exit_code == 0, result.output
    ckpt = tmp_path / "three" / "sim" / "sac" / "checkpoint.pt"
    result = runner.invoke(real_app(), ["simulate", "--checkpoint", str(ckpt), "--out", str(tmp_path / "twenty"),
                                        "--no-baselines", *FAST])
    assert result.exit_code == 2
    assert "trained for 3 ASPs, this set has 20" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_agod_preset_runs_on_its_table_and_writes_it(tmp_path):
    from aaas_profile.sim.asps import preset_asps, read_asps_csv

    result = runner.invoke(app, ["simulate", "--policy", "greedy-oracle", "--preset", "agod", "--seed", "0",
                                 "--out", str(tmp_path), "--no-baselines", *FAST])
    assert result.exit_code == 0, result.output
    assert "agod preset, seed 0" in " ".join(result.output.split())
    written = read_asps_csv(tmp_path / "sim" / "asps.csv")
    expected = preset_asps("agod", 0)
    assert written.capacity.tolist() == expected.capacity.tolist() and written.by.tolist() == expected.by.tolist()


# -- the stage decides, the command only parses, calls and prints ------------------------------------------

RAY_FAST = ["simulate", "--policy", "random", "--seeds", "0-3", *FAST]


def test_ray_not_installed_is_one_line(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as it does where Ray is not installed
    result = runner.invoke(app, [*RAY_FAST, "--ray", "local", "--out", str(tmp_path)])
    one_line_error(result, '--ray needs Ray: pip install "aaas-profile[ray]"')
    assert not (tmp_path / "sim").exists()


def test_a_ray_cluster_that_cannot_be_reached_is_one_line(tmp_path, monkeypatch):
    ray = pytest.importorskip("ray")
    one_line_error(runner.invoke(app, [*RAY_FAST, "--ray", "X", "--out", str(tmp_path)]),
                   "cannot reach a Ray cluster at 'X'")

    def unreachable(*args, **kwargs):  # what a cluster that never answers ends in, without the minutes of waiting
        raise TimeoutError("Timed out while waiting for GCS to become available.\nmore detail")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", unreachable)
    one_line_error(runner.invoke(app, [*RAY_FAST, "--ray", "10.0.0.1:6379", "--out", str(tmp_path)]),
                   "--ray 10.0.0.1:6379: cannot start or reach Ray (Timed out while waiting for GCS")


@pytest.mark.parametrize("args, message", [
    (["--ray", "local"], "--ray runs seeds in parallel: give --seeds too"),
    (["--seeds", "3-1"], "the range '3-1' is empty"),
    (["--seeds", ","], "names no seed"),
    (["--runtime", "paper"], "--runtime only applies to --profile"),
    (["--sampler", "ddim"], "--sampler only applies to --profile"),
    (["--runtime", "fast", "--profile", "fit.json"], "--runtime 'fast': choose profile or paper"),
    (["--profile", "fit.json", "--asps", "a.csv"], "give --profile or --asps, not both"),
    (["--seeds", "0-1", "--policy", "random", "--resume"], "--resume only applies to --policy sac"),
])
def test_the_stage_refuses_in_one_line(tmp_path, args, message):
    one_line_error(runner.invoke(app, ["simulate", "--out", str(tmp_path), *FAST, *args]), message)
    assert not (tmp_path / "sim").exists() and not (tmp_path / "seed-0").exists()


def test_asp_sources_per_seed():
    from aaas_profile.sim.asps import preset_asps
    from aaas_profile.sim.sources import AspSource

    source = AspSource(preset="agod")
    assert source.load(3).capacity.tolist() == preset_asps("agod", 3).capacity.tolist()
    assert source.per_seed(source.load(0))(5).capacity.tolist() == preset_asps("agod", 5).capacity.tolist()
    assert str(source.default_out()) == "results/agod"
    table = preset_asps("paper", 7)
    assert AspSource(asps="mine.csv").per_seed(table)(2) is table  # a table is the same for every seed
    assert str(AspSource(asps="x/mine.csv").default_out()) == "results/mine"
    assert str(AspSource(profile="runs/r1/fit.json").default_out()) == "runs/r1"


def test_the_command_only_parses_calls_and_prints():
    from pathlib import Path

    source = (Path(__file__).parents[2] / "aaas_profile" / "cli" / "simulate.py").read_text()
    assert "fail(" not in source and "except UserError" not in source and "KeyboardInterrupt" not in source


def test_simulate_prints_the_asp_mapping_and_warns_when_the_profile_stops_short(tmp_path):
    from conftest import invoke

    curves = [{"model": "faces", "mask": mask, "metric": "haarpsi", "levels": {"steps": [1, 5, 10, 50]},
               "scale01": {"ax": 1, "ay": 0.1, "bx": bx, "by": 0.8}} for mask, bx in (("thick", 3), ("half", 8))]
    profile = tmp_path / "fit.json"
    profile.write_text(json.dumps({"schema_version": 2, "curves": curves}))
    result = invoke("simulate", "--profile", profile, "--policy", "greedy-oracle", "--episodes", "1", "--horizon",
                    "50000", "--no-optimum", "--no-baselines", "--runtime", "paper", "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "20 ASPs, each curve from:" in text
    # curves ordered by (model, mask): ASP i gets curve i mod 2
    assert ("fit.json: model faces, mask half, sampler repaint-diffusers, metric haarpsi: faces/half#0, "
            "faces/half#2,") in text
    assert ("fit.json: model faces, mask thick, sampler repaint-diffusers, metric haarpsi: faces/thick#1, "
            "faces/thick#3,") in text
    assert text.count("warning: curve faces/") == 2 and "measured at 1–50 steps, none of the tasks' 100–250" in text
    rows = (tmp_path / "out" / "sim" / "asps.csv").read_text().splitlines()
    assert rows[0].endswith(",source") and "mask half" in rows[1]


def test_a_second_run_into_the_same_folder_replaces_the_first_runs_set(tmp_path, monkeypatch):
    """Outputs are a set: a --checkpoint run into a trained run's folder leaves no training curve of the other
    run beside its own results, and a run stopped before its end leaves no summary of the earlier run beside
    its half-written files."""
    from aaas_profile.sim import runner as sim_runner

    out = tmp_path / "run"
    assert runner.invoke(real_app(), ["simulate", "--out", str(out), "--no-baselines", *FAST]).exit_code == 0
    folder = out / "sim" / "sac"
    ckpt = tmp_path / "kept.pt"
    ckpt.write_bytes((folder / "checkpoint.pt").read_bytes())
    result = runner.invoke(real_app(), ["simulate", "--out", str(out), "--checkpoint", str(ckpt), "--no-baselines",
                                        *FAST])
    assert result.exit_code == 0, result.output
    assert not (folder / "training.parquet").exists() and not (folder / "figure5.png").exists()
    assert json.loads((folder / "summary.json").read_text())["options"]["checkpoint"] == str(ckpt)

    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    avoid = ["simulate", "--out", str(out), "--policy", "crash-avoid", "--no-baselines", *FAST]
    assert runner.invoke(real_app(), avoid).exit_code == 0
    assert (out / "sim" / "crash-avoid" / "summary.json").exists()
    monkeypatch.setattr(sim_runner, "figure6_bars", stop)  # after the episodes, before the summary
    stopped = runner.invoke(real_app(), avoid)  # the progress bar above the error is expected here
    assert stopped.exit_code == 130 and "error: interrupted" in stopped.output
    assert not (out / "sim" / "crash-avoid" / "summary.json").exists()
