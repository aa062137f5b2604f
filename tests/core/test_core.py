"""The torch-free core (``aaas_profile.core``): the formulas, curve keys and acceptance rules that the fit, the
report and the simulator share live there once; the core imports nothing from the rest of the project and loads
no torch, piq, diffusers, scipy or pandas, and neither does the simulator's ASP source that reads a profile
through it; the simulator's modules import one another without a circle."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from aaas_profile import fit
from aaas_profile.core import acceptance, curve_keys, formulas
from aaas_profile.sim import asps, env

CORE = Path(formulas.__file__).parent
SIM = Path(asps.__file__).parent
HEAVY = ("torch", "piq", "diffusers", "scipy", "pandas", "pyarrow", "matplotlib")


def fresh_python(code: str) -> list[str]:
    """The lines ``code`` prints in a fresh interpreter, so that this session's imports hide nothing."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONPATH": str(CORE.parent.parent)}).stdout.split("\n")


def paper(t: float) -> float:
    """The paper's runtime formula as printed (Du et al. 2023): (0.001·t² + 2.5·t − 14)·60 seconds."""
    return (0.001 * t**2 + 2.5 * t - 14) * 60


@pytest.mark.parametrize("t", [100, 170, 250])
def test_runtime_is_the_papers_formula(t):
    assert formulas.paper_runtime_s(t) == pytest.approx(paper(t), rel=1e-12)
    # the coefficients fit.json records evaluate to the same seconds
    assert formulas.polynomial(formulas.PAPER_RUNTIME["coef"], t) == pytest.approx(paper(t), rel=1e-12)


def test_runtime_values_by_hand():
    assert formulas.paper_runtime_s(100) == pytest.approx(14_760.0)  # (10 + 250 − 14)·60
    # (28.9 + 425 − 14)·60 and (62.5 + 625 − 14)·60
    assert formulas.paper_runtime_s([170, 250]) == pytest.approx([26_394.0, 40_410.0])
    assert formulas.polynomial((1.0, -2.0, 0.5), 4.0) == pytest.approx(1 - 8 + 8)


def test_quality_gain_and_crash_penalty_by_hand():
    # ax=20, ay=0.1, bx=220, by=0.9: 0 up to ax, (0.8)·(t − 20)/200 between, 0.8 from bx on
    assert formulas.quality_gain(20, 0.1, 220, 0.9, [10, 20, 120, 220, 250]) == pytest.approx(
        [0.0, 0.0, 0.4, 0.8, 0.8])
    assert formulas.crash_penalty([0.5, 0.25]) == pytest.approx(2 + 2 * 0.5 + 2 * 0.75)
    assert formulas.CRASH_PENALTY_COEF == 2.0


def test_the_fit_and_the_reward_share_one_curve():
    """``fit`` fits ``formulas.piecewise`` and the simulator rewards ``quality_gain`` = f(t) − Ay of the same curve;
    the gain is exactly 0 below Ax (its rise is 0 there), not a rounding of f(t) − Ay."""
    assert fit.piecewise is formulas.piecewise
    t = np.array([0.0, 20.0, 57.3, 120.0, 219.9, 220.0, 400.0])
    curve = formulas.piecewise(t, 20, 0.1, 220, 0.9)
    assert curve == pytest.approx([0.1, 0.1, 0.1 + 0.8 * 37.3 / 200, 0.5, 0.1 + 0.8 * 199.9 / 200, 0.9, 0.9])
    # bit-for-bit: one formula; the two differ only by the last rounding of adding and subtracting Ay
    assert formulas.quality_gain(20, 0.1, 220, 0.9, t) == pytest.approx(curve - 0.1, abs=1e-15)
    assert formulas.quality_gain(20, 0.1, 220, 0.9, [0.0, 20.0]).tolist() == [0.0, 0.0]

def test_the_task_step_grid_is_defined_once():
    assert formulas.TASK_STEPS == (100, 110, 120, 130, 140, 150, 160, 170, 180, 190, 200, 210, 220, 230, 240, 250)
    assert formulas.TASK_STEPS_RANGE == (100, 250)
    # the environment's default stream, profile_asps's default and fit's runtime check all use that one grid
    assert env.SimConfig().task_steps is formulas.TASK_STEPS
    assert asps.profile_asps.__defaults__[3] is formulas.TASK_STEPS
    assert fit.SIM_TASK_STEPS is formulas.TASK_STEPS_RANGE
    # the runtime rule the fit warns with is the one simulate --profile refuses with
    assert fit.runtime_problem is acceptance.runtime_problem is asps.runtime_problem
    assert env.crash_penalty is formulas.crash_penalty and env.quality_gain is formulas.quality_gain


def project_imports(path: Path) -> set[str]:
    """Every ``aaas_profile`` module ``path`` imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("aaas_profile"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("aaas_profile"))
    return found


def test_the_core_imports_nothing_from_the_rest_of_the_project():
    """Every core module imports only the core (the layer rule of docs/design.md, "Layers")."""
    for path in CORE.glob("*.py"):
        outside = {m for m in project_imports(path) if not m.startswith("aaas_profile.core")}
        assert outside == set(), f"{path.name} imports {sorted(outside)} from outside the core"
    assert project_imports(CORE / "formulas.py") == set()


def test_the_core_and_the_profile_reader_load_no_heavy_library():
    """Run in a fresh interpreter, so that this session's imports do not hide one: the core, and the ASP source
    that reads a fit.json profile through it, load neither torch nor the stages' numerical stack."""
    code = ("import sys, aaas_profile.core.formulas, aaas_profile.core.curve_keys, aaas_profile.core.acceptance\n"
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
            "import aaas_profile.sim.asps\n"
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n")
    out = fresh_python(code)
    assert out[:2] == ["[]", "[]"]


def test_no_module_imports_fit_to_reach_the_core():
    """What the simulator and the report need of a fitted curve is the core's: neither imports ``fit`` (which
    imports scipy) for it, at the top or inside a function."""
    for path in SIM.glob("*.py"):
        assert "aaas_profile.fit" not in project_imports(path), path.name
        # nor another stage (sweep, train: torch and diffusers) for a helper, at the top or inside a function
        assert not {"aaas_profile.sweep", "aaas_profile.train"} & project_imports(path), path.name


def test_the_simulator_modules_import_one_another_without_a_circle():
    """A depth-first search over the sim package's import graph (lazy imports in functions count too)."""
    graph = {f"aaas_profile.sim.{p.stem}": {m for m in project_imports(p) if m.startswith("aaas_profile.sim.")}
             for p in SIM.glob("*.py") if p.stem != "__init__"}
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for nxt in sorted(graph.get(module, ())):
            assert state.get(nxt) != "open", f"import circle: {' → '.join([*path, module, nxt])}"
            if nxt not in state:
                visit(nxt, [*path, module])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [])


def test_importing_the_fit_loads_no_simulator_module():
    """``fit`` uses the core; that must not pull in the environment or the ASP sources. Run in a fresh
    interpreter so that this session's imports do not hide it."""
    code = ("import sys, aaas_profile.fit, aaas_profile.sim, gymnasium as gym\n"
            "print(sorted(m for m in sys.modules if m.startswith('aaas_profile.sim')))\n"
            "print('aaas/AspSelection-v0' in gym.registry)\n")
    out = fresh_python(code)
    assert out[0] == "['aaas_profile.sim']"
    assert out[1] == "True"  # importing the package still registers the environment with gymnasium


def test_the_package_still_offers_its_names():
    import aaas_profile.sim as sim

    assert sim.paper_runtime_s is formulas.paper_runtime_s and sim.AspSelectionEnv is env.AspSelectionEnv
    assert sim.SimError is asps.SimError and np.isclose(sim.quality_gain(0, 0, 10, 1, 5), 0.5)
    with pytest.raises(AttributeError):
        sim.no_such_name  # noqa: B018


def test_what_an_old_table_means_is_defined_once():
    """The sampler columns a table from before them lacks are filled with one set of values, everywhere."""
    from aaas_profile import runs

    assert runs.LEGACY_SAMPLER is curve_keys.SAMPLER_DEFAULTS is fit.SAMPLER_DEFAULTS
    assert curve_keys.setting_of({"model": "faces"})["sampler"] == "repaint-diffusers"
    assert curve_keys.in_task_units({"respacing": "250"}) and not curve_keys.in_task_units({})


def test_the_fit_and_the_report_load_no_torch():
    """Fitting and reporting read tables: importing them (the fit, its run, the plots, the report and its
    analysis) loads neither torch nor piq nor diffusers, in a fresh interpreter. They used to, through
    ``metrics``, for a list of names and a direction the scores table already carries."""
    code = ("import sys, aaas_profile.fit, aaas_profile.fitrun, aaas_profile.plots, aaas_profile.report, "
            "aaas_profile.analysis\n"
            "print(sorted(m for m in ('torch', 'piq', 'diffusers') if m in sys.modules))\n")
    out = fresh_python(code)
    assert out[0] == "[]"
