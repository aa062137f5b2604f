"""The Python API (aaas_profile.api) end to end on the small test model: the same run folder, fit and page
as the commands, with the commands' names; and ``python -m aaas_profile``."""

import subprocess
import sys

import pytest
from conftest import invoke

import aaas_profile
import aaas_profile.api as ap
from aaas_profile import errors, fitfile, runs


def test_sweep_fit_report_and_load_from_python(model_dir, image_dir, tmp_path):
    run = ap.sweep(model=str(model_dir), data=image_dir, masks=["half", "thick"], steps=[1, 2, 5, 10],
                   jump_length=1, jump_n_sample=1, save_images=0, metrics="tv,dss", out=tmp_path / "run")
    assert run.cells_run == 2 * 2 * 4 and run.run_dir == tmp_path / "run"
    scores = ap.load_scores(run.run_dir)
    assert len(scores) == 2 * 2 * 4 * 2 and list(scores.columns) == list(runs.COLUMNS)
    fitted = ap.fit(run.run_dir, bootstrap=20, plots=False)
    assert fitted.path == run.run_dir / "fit.json" and fitted.document["bootstrap"]["resamples"] == 20
    curves = ap.load_fit(run.run_dir)
    assert len(curves) == 2 * 2 and {"ax", "ax_low", "ax_high", "by", "flags", "p_value", "stop_steps"} <= set(
        curves.columns)
    document = fitfile.load(fitted.path)
    assert list(curves["bx"]) == [c["bx"]["value"] for c in document["curves"]]
    recs = ap.recommendations(fitted.path)
    assert sorted(r["group"]["mask"] for r in recs) == ["half", "thick"] and all(r["text"] for r in recs)
    page = ap.report(run.run_dir)
    assert page == run.run_dir / "report.html" and page.stat().st_size > 0
    # the same folder again: the sweep resumes, as the command does
    again = ap.sweep(model=str(model_dir), data=image_dir, masks="half,thick", steps="1,2,5,10", jump_length=1,
                     jump_n_sample=1, save_images=0, metrics=["tv", "dss"], out=tmp_path / "run")
    assert (again.cells_run, again.cells_skipped) == (0, 16)


def test_errors_are_the_commands_one_line_errors(tmp_path):
    with pytest.raises(errors.UserError, match="no such run folder"):
        ap.fit(tmp_path / "missing")
    with pytest.raises(errors.UserError, match="unknown sampler"):
        ap.sweep(sampler=["nope"], out=tmp_path / "run")


def test_simulate_from_python(tmp_path):
    result = ap.simulate(policy="greedy-oracle", episodes=1, horizon=50_000, optimum=False, out=tmp_path)
    assert result.folder == tmp_path / "sim" / "greedy-oracle" and "greedy-oracle" in result.summary.index


def test_python_dash_m_runs_the_command_line():
    out = subprocess.run([sys.executable, "-m", "aaas_profile", "--version"], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == f"aaas-profile {aaas_profile.__version__}" == invoke("--version").output.strip()
