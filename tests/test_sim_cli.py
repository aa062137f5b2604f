"""``simulate`` from the command line: a smoke run per policy, outputs written, one-line errors."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from aaas_profile import cli_simulate
from aaas_profile.sim.policies import POLICIES

app = typer.Typer()
app.command("simulate")(cli_simulate.simulate)


@app.command("version")
def _version() -> None:  # a second command keeps typer from collapsing the app into `simulate`
    """Unused."""


runner = CliRunner()
FAST = ["--episodes", "1", "--no-optimum", "--train-episodes", "1", "--horizon", "100000"]  # ≈ 100 tasks


@pytest.mark.parametrize("policy", POLICIES)
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
        (["--horizon", "0"], "--horizon must be positive"),
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
