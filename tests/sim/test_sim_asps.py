"""ASP sources: the paper preset, a CSV table, and a fit.json profile (written here directly)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from aaas_profile.sim import AspSelectionEnv, SimError, paper_runtime_s, profile_asps, read_asps_csv
from aaas_profile.sim.asps import paper_asps, preset_asps, read_fit_profile, write_asps_csv

# The authors' seed-0 tables (legacy RandomState(0): 1,000 user locations, then per ASP ax, ay, bx, by,
# capacity, location); rows (ax, ay, bx, by, capacity). The first rows are the ones the authors' code prints;
# the rest were drawn once with the authors' own calls (np.random.seed(0); choice(arange(...))).
PAPER_SEED0 = [
    (10, 0.00, 210, 0.80, 400), (80, 0.45, 200, 0.60, 1300), (40, 0.00, 170, 0.75, 1100),
    (10, 0.15, 170, 0.50, 700), (20, 0.15, 200, 0.55, 1100), (50, 0.15, 240, 0.65, 1500),
    (30, 0.30, 240, 0.75, 500), (30, 0.15, 240, 0.85, 1200), (80, 0.45, 190, 0.55, 900),
    (30, 0.30, 180, 0.50, 700), (90, 0.25, 160, 0.85, 1500), (70, 0.00, 180, 0.75, 1000),
    (60, 0.35, 190, 0.85, 600), (60, 0.25, 240, 0.70, 1200), (60, 0.05, 190, 0.90, 900),
    (20, 0.35, 200, 0.85, 1300), (90, 0.45, 180, 0.70, 800), (10, 0.45, 220, 0.75, 800),
    (80, 0.35, 160, 0.55, 500), (40, 0.40, 210, 0.55, 600),
]
AGOD_SEED0 = [
    (10, 0.00, 210, 0.80, 400), (80, 0.45, 200, 0.60, 500), (40, 0.00, 170, 0.75, 500),
    (0, 0.15, 170, 0.60, 900), (30, 0.25, 160, 0.85, 600), (30, 0.45, 180, 0.50, 700),
    (90, 0.25, 160, 0.95, 700), (70, 0.40, 190, 0.85, 600), (40, 0.05, 200, 0.50, 700),
    (30, 0.00, 180, 0.80, 500), (70, 0.15, 190, 0.85, 800), (0, 0.15, 200, 0.80, 700),
    (40, 0.35, 170, 0.50, 500), (90, 0.20, 230, 0.85, 400), (40, 0.40, 200, 0.55, 600),
    (70, 0.25, 220, 0.95, 800), (90, 0.45, 180, 0.70, 800), (10, 0.45, 220, 0.75, 800),
    (80, 0.35, 160, 0.55, 500), (40, 0.40, 210, 0.55, 600),
]


def rows(asps):
    return list(zip(asps.ax.tolist(), asps.ay.tolist(), asps.bx.tolist(), asps.by.tolist(),
                    asps.capacity.tolist(), strict=True))


@pytest.mark.parametrize("preset, table", [("paper", PAPER_SEED0), ("agod", AGOD_SEED0)])
def test_presets_are_the_authors_seed_0_tables(preset, table):
    # exact: the draws are integers indexing fixed grids, and ay/by are rounded to 2 decimals
    assert rows(preset_asps(preset, 0)) == table


def test_the_first_asps_issue_16_quotes():
    assert rows(preset_asps("paper", 0))[:3] == [(10, 0.0, 210, 0.8, 400), (80, 0.45, 200, 0.6, 1300),
                                                 (40, 0.0, 170, 0.75, 1100)]
    assert rows(preset_asps("agod", 0))[:4] == [(10, 0.0, 210, 0.8, 400), (80, 0.45, 200, 0.6, 500),
                                                (40, 0.0, 170, 0.75, 500), (0, 0.15, 170, 0.6, 900)]


def test_preset_draws_leave_the_global_generator_alone():
    np.random.seed(123)
    expected = np.random.random()
    np.random.seed(123)
    preset_asps("paper", 5)
    assert np.random.random() == expected
    assert preset_asps("agod", 3).capacity.max() <= 900
    with pytest.raises(SimError, match="unknown preset 'huge'"):
        preset_asps("huge", 0)


def test_an_asp_table_round_trips_through_csv(tmp_path):
    asps = preset_asps("agod", 2)
    back = read_asps_csv(write_asps_csv(asps, tmp_path / "sim" / "asps.csv"))
    assert back.sid == asps.sid and rows(back) == rows(asps)


def test_paper_preset_is_fixed_by_its_seed():
    a, b, c = paper_asps(0), paper_asps(0), paper_asps(1)
    assert np.array_equal(a.capacity, b.capacity) and np.array_equal(a.by, b.by)
    assert not (np.array_equal(a.capacity, c.capacity) and np.array_equal(a.ax, c.ax))


def test_csv_table(tmp_path):
    path = tmp_path / "asps.csv"
    path.write_text("sid,ax,ay,bx,by,capacity\nfast,0,0.1,150,0.6,500\nslow,50,0.0,240,0.95,1500\n")
    asps = read_asps_csv(path)
    assert asps.sid == ("fast", "slow")
    assert asps.capacity.tolist() == [500, 1500] and asps.by.tolist() == [0.6, 0.95]
    env = AspSelectionEnv(asps)
    obs, _ = env.reset(seed=0)
    assert obs[:2] == pytest.approx([500 / 1500, 1.0])


@pytest.mark.parametrize("text, message", [
    ("sid,ax,ay,bx,by\na,0,0,150,0.5\n", "lacks column"),
    ("sid,ax,ay,bx,by,capacity\na,0,0,150,0.5,lots\n", "non-numeric"),
    ("sid,ax,ay,bx,by,capacity\na,0,0,150,0.5,-5\n", "positive"),
    ("sid,ax,ay,bx,by,capacity\na,200,0,150,0.5,500\n", "bx must be larger"),
    ("sid,ax,ay,bx,by,capacity\n", "empty"),
])
def test_csv_errors(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(SimError, match=message):
        read_asps_csv(path)
    with pytest.raises(SimError, match="does not exist"):
        read_asps_csv(tmp_path / "missing.csv")


def write_fit(path, runtime=True):
    curves = []
    for model, mask, metric, ax, ay, bx, by in [
        ("faces", "thick", "haarpsi", 10, 0.1, 100, 0.8), ("faces", "thin", "haarpsi", 5, 0.3, 60, 0.9),
        ("faces", "thick", "vif", 20, 0.0, 200, 0.7),
    ]:
        curves.append({"model": model, "mask": mask, "metric": metric,
                       "raw": {"ax": ax, "ay": 123.0, "bx": bx, "by": 456.0},
                       "scale01": {"ax": ax, "ay": ay, "bx": bx, "by": by}})
    data = {"schema_version": 2, "curves": curves}
    if runtime:
        data["runtime"] = {"steps": {"coef": [0.5, 0.01, 0.0]}}  # seconds per image
    path.write_text(json.dumps(data))
    return path


def test_profile_asps(tmp_path):
    path = write_fit(tmp_path / "fit.json")
    curves, coefs = read_fit_profile(path)
    # a profile from before samplers: diffusers' RePaint on the steps walk
    assert len(curves) == 3 and coefs == {("repaint-diffusers", "steps"): [0.5, 0.01, 0.0]}
    assert {(c["sampler"], c["respacing"]) for c in curves} == {("repaint-diffusers", "steps")}
    asps = profile_asps(path, metric="haarpsi", n=5, seed=0)
    (warning,) = [n for n in asps.notes if n.startswith("warning:")]  # one line that says why
    assert "not in task units" in warning and "--respacing 250" in warning
    # curves ordered by (model, mask): thick then thin, cycled over the ASPs
    assert asps.ax.tolist() == [10, 5, 10, 5, 10] and asps.by.tolist() == [0.8, 0.9, 0.8, 0.9, 0.8]
    assert "thin" in asps.sid[1]
    # the measured runtime keeps its shape, rescaled so 250 steps take the paper's runtime(250)
    scale = paper_runtime_s(250) / (0.5 + 0.01 * 250)
    assert asps.runtime_coef == pytest.approx((0.5 * scale, 0.01 * scale, 0.0))
    env = AspSelectionEnv(asps)
    env.reset(seed=0)
    t = env.tasks
    assert t.runtime_s == pytest.approx((0.5 + 0.01 * t.steps) * scale)
    assert t.gains[:, 1] == pytest.approx(0.6 * np.ones(len(t)))  # t ≥ 100 > bx = 60: saturated, 0.9 − 0.3


def test_seeds_of_a_profile_read_it_once_and_draw_what_each_seed_draws(tmp_path, monkeypatch):
    """``--seeds`` on a profile: each seed's ASP set is the one ``profile_asps`` gives for that seed (bit for bit:
    the same draw), built from the set read once, not by reading and checking fit.json again per seed."""
    from aaas_profile import fitfile
    from aaas_profile.sim.sources import AspSource

    path = write_fit(tmp_path / "fit.json")
    source = AspSource(profile=path, metric="haarpsi")
    built = source.load(0)
    reads = []
    monkeypatch.setattr(fitfile, "load", lambda *a, **k: reads.append(a) or pytest.fail("fit.json read again"))
    per_seed = source.per_seed(built)
    seeds = {s: per_seed(s) for s in range(4)}
    monkeypatch.undo()
    for s, asps in seeds.items():
        direct = profile_asps(path, metric="haarpsi", seed=s)
        for name in ("ax", "ay", "bx", "by", "capacity"):
            assert getattr(asps, name).tolist() == getattr(direct, name).tolist(), (s, name)
        assert (asps.sid, asps.notes, asps.runtime_coef) == (direct.sid, direct.notes, direct.runtime_coef)
    assert len({tuple(a.capacity.tolist()) for a in seeds.values()}) > 1 and reads == []


def test_profile_without_runtime_uses_the_paper_model(tmp_path):
    asps = profile_asps(write_fit(tmp_path / "fit.json", runtime=False), metric="vif", n=3)
    assert asps.runtime_coef is None and any("paper" in n for n in asps.notes)


@pytest.mark.parametrize("content, message", [
    ("not json", "not valid JSON"),
    (b"\xff{}", "not UTF-8"),
    ('{"curves": []}', "schema_version None"),
    ('{"schema_version": 2, "curves": []}', "no 'curves'"),
    ('{"schema_version": 2, "curves": [{"model": "m", "scale01": {"ax": 1}}]}',
     r"curves\[0\]\.scale01: lacks ay, bx, by"),
    ('{"schema_version": 2, "curves": [{"metric": "vif", "scale01": {"ax": 0, "ay": 0, "bx": 9, "by": 1}}], '
     '"runtime": {"steps": {"coef": "fast"}}}', "runtime.steps.coef"),
])
def test_profile_errors(tmp_path, content, message):
    path = tmp_path / "fit.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(SimError, match=message):
        profile_asps(path)


def write_two_sampler_fit(path, x="steps"):
    """A profile of a sweep with --sampler repaint,ddim (repaint on the 250-step grid, ddim on its steps walk):
    haarpsi curves and a runtime model for each."""
    curves = [{"model": "faces", "mask": "thick", "metric": "haarpsi", "sampler": sampler, "sampler_params": "{}",
               "respacing": walk, "scale01": {"ax": ax, "ay": 0.1, "bx": bx, "by": by}}
              for sampler, walk, ax, bx, by in (("repaint", "250", 10, 200, 0.8), ("ddim", "steps", 5, 120, 0.7))]
    runtime = {"steps": {"coef": [0.5, 0.01, 0.0], "sampler": "repaint", "respacing": "250"},
               "fits": [{"sampler": "repaint", "respacing": "250", "vs_steps": {"coef": [0.5, 0.01, 0.0]}},
                        {"sampler": "ddim", "respacing": "steps", "vs_steps": {"coef": [0.1, 0.002, 0.0]}}]}
    path.write_text(json.dumps({"schema_version": 2, "x": {"name": x}, "curves": curves, "runtime": runtime}))
    return path


def test_a_profile_of_several_samplers_uses_one_sampler_and_its_runtime(tmp_path):
    path = write_two_sampler_fit(tmp_path / "fit.json")
    default = profile_asps(path, n=4)  # never a mix: RePaint's curve and runtime, and a note naming the choice
    assert default.bx.tolist() == [200] * 4 and any("sampler repaint (choose with --sampler" in n
                                                   for n in default.notes)
    assert not any(n.startswith("warning:") for n in default.notes)  # the paper's protocol: task units
    ddim = profile_asps(path, n=4, sampler="ddim")
    assert ddim.bx.tolist() == [120] * 4 and ddim.by.tolist() == [0.7] * 4 and "sampler ddim" in ddim.source
    scale = paper_runtime_s(250) / (0.1 + 0.002 * 250)  # ddim's own steps → seconds model, rescaled
    assert ddim.runtime_coef == pytest.approx((0.1 * scale, 0.002 * scale, 0.0))
    assert any(n.startswith("warning:") and "not in task units" in n for n in ddim.notes)
    with pytest.raises(SimError, match="no curve of sampler 'dpm-solver'; it has repaint, ddim"):
        profile_asps(path, sampler="dpm-solver")


def test_a_profile_fitted_against_unet_calls_is_refused(tmp_path):
    """Its breakpoints are UNet calls; the simulator's tasks ask for steps (RePaint's 50 steps are 410 calls)."""
    with pytest.raises(SimError, match="fitted against unet_calls, but the simulator's tasks ask for diffusion"):
        profile_asps(write_two_sampler_fit(tmp_path / "fit.json", x="unet_calls"))


def test_profile_unknown_metric(tmp_path):
    with pytest.raises(SimError, match="no curve for metric 'brisque'"):
        profile_asps(write_fit(tmp_path / "fit.json"), metric="brisque")


def test_a_profile_says_which_curve_each_asp_got_and_when_it_cannot_reach_the_tasks(tmp_path):
    from aaas_profile.sim.asps import write_asps_csv

    path = write_fit(tmp_path / "fit.json")
    data = json.loads(path.read_text())
    data["curves"][0]["levels"] = {"steps": [1, 2, 5, 10, 20, 50]}  # faces/thick/haarpsi: short of 100 steps
    data["curves"][1]["levels"] = {"steps": [10, 50, 100, 250]}  # faces/thin/haarpsi: the tasks' whole range
    path.write_text(json.dumps(data))
    asps = profile_asps(path, metric="haarpsi", n=4, seed=0)
    # curves ordered by (model, mask): ASP i gets curve i mod 2
    assert asps.mapping() == [("fit.json: model faces, mask thick, sampler repaint-diffusers, metric haarpsi",
                               ["faces/thick#0", "faces/thick#2"]),
                              ("fit.json: model faces, mask thin, sampler repaint-diffusers, metric haarpsi",
                               ["faces/thin#1", "faces/thin#3"])]
    warnings = [n for n in asps.notes if n.startswith("warning: ")]
    # a fit written before respacing is the steps walk: said first, then the curve that stops short
    assert warnings[0].startswith("warning: profile fit.json is not in task units: its curves are on the steps walk")
    assert warnings[1:] == ["warning: curve faces/thick/haarpsi was measured at 1–50 steps, none of the tasks' "
                        "100–250: beyond 50 steps it is extrapolated flat at By; sweep up to 250 steps to measure "
                        "that range"]
    # sim/asps.csv carries each row's source, and reads back with it
    table = write_asps_csv(asps, tmp_path / "asps.csv")
    assert table.read_text().splitlines()[0] == "sid,ax,ay,bx,by,capacity,source"
    again = read_asps_csv(table)
    assert again.origins()[1] == ("table asps.csv, line 3 (fit.json: model faces, mask thin, "
                                  "sampler repaint-diffusers, "
                                  "metric haarpsi)")
    assert again.bx.tolist() == asps.bx.tolist()


def test_a_profile_of_both_walks_gives_the_asps_the_papers_protocol(tmp_path):
    """repaint on the 250-step grid (Bx 180 t_T) and on the steps walk (Bx 4 steps) in one profile: the ASPs get
    the curves in task units and that walk's runtime, never a mix, with a note naming the choice."""
    curves = [{"model": "faces", "mask": "thick", "metric": "vif", "sampler": "repaint", "sampler_params": "{}",
               "respacing": walk, "scale01": {"ax": ax, "ay": 0.1, "bx": bx, "by": 0.8}}
              for walk, ax, bx in (("steps", 1, 4), ("250", 20, 180))]
    runtime = {"steps": {"coef": [0.2, 0.05, 0.0], "sampler": "repaint", "respacing": "250"},
               "fits": [{"sampler": "repaint", "respacing": "250", "vs_steps": {"coef": [0.2, 0.05, 0.0]}},
                        {"sampler": "repaint", "respacing": "steps", "vs_steps": {"coef": [0.1, 0.4, 0.0]}}]}
    path = tmp_path / "fit.json"
    path.write_text(json.dumps({"schema_version": 2, "x": {"name": "steps"}, "curves": curves, "runtime": runtime}))
    asps = profile_asps(path, n=3)
    assert asps.ax.tolist() == [20] * 3 and asps.bx.tolist() == [180] * 3
    scale = paper_runtime_s(250) / (0.2 + 0.05 * 250)
    assert asps.runtime_coef == pytest.approx((0.2 * scale, 0.05 * scale, 0.0))
    assert "walk: respacing 250 (the profile also has steps)" in asps.notes
    assert not any(n.startswith("warning:") for n in asps.notes)
