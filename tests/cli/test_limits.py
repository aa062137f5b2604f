"""Every numeric option of every command × {0, -1, 10**30, nan, inf, not a number}: a value out of range is one
line naming the option, a non-zero exit and nothing written; a value in range gets past the check (the command
then stops on a path that does not exist, so nothing runs)."""

from pathlib import Path

import pytest
from conftest import invoke, one_line_error

from aaas_profile import limits, options

PROBES = ["0", "-1", str(10**30), "nan", "inf", "abc"]

# Arguments that make each command stop right after its options are checked (a path that does not exist), so a
# value in range reaches a different one-line error and nothing runs.
MISSING = "no-such-input"
BASE = {
    "sweep": ["--model", MISSING, "--dry-run"],
    "fit": [MISSING],
    "simulate": ["--asps", f"{MISSING}.csv", "--policy", "random", "--no-optimum"],
    "train": ["--data", MISSING, "--out", "model"],
}


def _numeric_params(command: str) -> dict[str, str]:
    """The numeric options of ``command`` as the app parses them (int or float, optional or not), plus its list
    options of numbers, each with its flag: read from the command line itself, so an option added without a
    range fails below."""
    import typer

    from aaas_profile.cli import app

    params = typer.main.get_command(app).commands[command].params
    numeric = [p.name for p in params if p.type_descriptor.annotation in (int, float)]
    lists = [o for c, o in sorted(options.LIST_OPTIONS) if c == command and o in options.RANGES.get(command, {})]
    return {name: options.flag(name) for name in [*numeric, *lists]}


@pytest.mark.parametrize("command", ["sweep", "fit", "simulate", "train", "report"])
def test_every_numeric_option_has_a_range(command):
    """A numeric option added without a range fails here; a range for an option that is gone too."""
    assert set(_numeric_params(command)) == set(options.RANGES.get(command, {}))


CASES = [(command, option, value) for command in BASE for option in options.RANGES[command] for value in PROBES]


@pytest.mark.parametrize(("command", "option", "value"), CASES)
def test_every_numeric_option_out_of_range_is_one_line(command, option, value, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    flag = _numeric_params(command)[option]
    extra = []
    if option == "shards":
        extra = ["--ray", "local"]
    result = invoke(command, *BASE[command], flag, value, *extra)
    assert result.exit_code != 0, result.output
    try:
        number = float(value)
    except ValueError:
        number = None
    r = options.range_of(command, option)
    valid = number is not None and r.holds(int(number) if r.integer and number.is_integer() else number)
    text = " ".join(result.output.split())
    if valid:  # past the check: the error is about something else
        assert flag not in text.split(":")[0], result.output
        one_line_error(result, code=result.exit_code)
    else:
        one_line_error(result, flag, code=2)
    assert list(Path(tmp_path).iterdir()) == [], "nothing is written"


@pytest.mark.parametrize(("command", "option", "text"), [
    ("sweep", "--seeds", "0,1,0"), ("sweep", "--steps", "10,10"), ("sweep", "--masks", "thick,thick"),
    ("sweep", "--metrics", "tv,tv"), ("sweep", "--sampler", "ddim,ddim"), ("sweep", "--respacing", "250,250"),
    ("simulate", "--seeds", "0-3,2"),
    ("fit", "--metrics", "tv,vif,tv"),
])
def test_a_repeated_list_item_is_refused(command, option, text, tmp_path, monkeypatch):
    """A repeated item would be run and aggregated twice: refused with one line, every list option alike."""
    monkeypatch.chdir(tmp_path)
    one_line_error(invoke(command, *BASE[command], option, text), option, "more than once")
    assert list(Path(tmp_path).iterdir()) == []


def test_a_device_other_than_cpu_or_cuda_is_refused_by_every_command(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "imgs").mkdir()
    for device in ("mps", "meta", "xpu", "cpu:1"):
        for command, args in (("sweep", ["--data", "imgs", "--device", device, "--dry-run"]),
                              ("train", ["--data", "imgs", "--out", "m", "--device", device])):
            result = invoke(command, *args)
            one_line_error(result, device)
    assert [p.name for p in tmp_path.iterdir()] == ["imgs"]


@pytest.mark.parametrize(("r", "value", "holds"), [
    (limits.Range(0, 10), 10, True), (limits.Range(0, 10), 11, False), (limits.Range(0, 10), 2.0, True),
    (limits.Range(0, 10), 2.5, False), (limits.Range(0, 10), True, False),
    (limits.Range(0, 1, integer=False, low_open=True), 0.0, False),
    (limits.Range(0, 1, integer=False, high_open=True), 1.0, False),
    (limits.Range(0, None, integer=False), float("inf"), False),
    (limits.Range(0, limits.SEED_MAX), 2**32, False), (limits.Range(0, limits.SEED_MAX), 2**32 - 1, True),
])
def test_range_edges(r, value, holds):
    assert r.holds(value) is holds


def test_seed_max_is_what_the_preset_generator_takes():
    """The paper preset is drawn with numpy's legacy RandomState: SEED_MAX is its own upper end."""
    import numpy as np

    np.random.RandomState(limits.SEED_MAX)
    with pytest.raises(ValueError):
        np.random.RandomState(limits.SEED_MAX + 1)


# ---------------------------------------------------------------------------------------------------------
# Numbers read from files: every numeric field of an ASP table and of a profile (fit.json) × out of range
# ---------------------------------------------------------------------------------------------------------

SIM_ARGS = ["--policy", "random", "--no-optimum", "--no-baselines", "--episodes", "1", "--horizon", "20000",
            "--out", "out"]
GOOD_ROW = {"sid": "a", "ax": "10", "ay": "0.1", "bx": "100", "by": "0.8", "capacity": "500"}
BAD_NUMBERS = ["nan", "inf", "-inf", "1e30", "-1", "abc", ""]


@pytest.mark.parametrize("column", ["ax", "ay", "bx", "by", "capacity"])
@pytest.mark.parametrize("value", [*BAD_NUMBERS, "2.5", "9223372036854775808"])
def test_every_asp_table_number_out_of_range_is_one_line(column, value, tmp_path, monkeypatch):
    if value == "2.5" and column != "capacity":
        pytest.skip("2.5 is a valid ax/bx; ay/by are checked by [0, 1]")
    monkeypatch.chdir(tmp_path)
    rows = [GOOD_ROW, {**GOOD_ROW, "sid": "b", column: value}]
    (tmp_path / "asps.csv").write_text("\n".join([",".join(GOOD_ROW), *(",".join(r.values()) for r in rows)]) + "\n")
    result = invoke("simulate", "--asps", "asps.csv", *SIM_ARGS)
    one_line_error(result, "asps.csv", "line 3")
    assert not (tmp_path / "out").exists()


def _profile(path: Path, field: str, value) -> None:
    import json

    curve = {"model": "m", "mask": "thick", "metric": "vif", "scale01": {"ax": 10, "ay": 0.1, "bx": 100, "by": 0.8}}
    data = {"schema_version": 2, "curves": [curve], "runtime": {"steps": {"coef": [0.5, 0.01, 0.0]}}}
    if field.startswith("coef"):
        data["runtime"]["steps"]["coef"][int(field[-1])] = value
    else:
        curve["scale01"][field] = value
    path.write_text(json.dumps(data))  # NaN and Infinity as Python's json writes and reads them


@pytest.mark.parametrize("field", ["ax", "ay", "bx", "by", "coef0", "coef1", "coef2"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), 1e300, "abc"])
def test_every_profile_number_out_of_range_is_one_line(field, value, tmp_path, monkeypatch):
    """A NaN runtime coefficient ran to the end with NaN rewards; each field now stops with one line naming it."""
    if value == 1e300 and field.startswith("coef"):
        pytest.skip("valid: the runtime model is rescaled to the paper's runtime at 250 steps, any finite size works")
    monkeypatch.chdir(tmp_path)
    _profile(tmp_path / "fit.json", field, value)
    result = invoke("simulate", "--profile", "fit.json", *SIM_ARGS)
    one_line_error(result, "fit.json", "coef" if field.startswith("coef") else field)
    assert not (tmp_path / "out").exists()


def test_an_asp_capacity_beyond_int64_is_out_of_range_not_negative():
    import numpy as np

    from aaas_profile.sim.asps import AspSet, SimError

    with pytest.raises(SimError, match=r"capacity.*outside \[1, 1e\+09\]"):
        AspSet(sid=("a",), ax=np.array([0.0]), ay=np.array([0.0]), bx=np.array([10.0]), by=np.array([1.0]),
               capacity=np.array([1e30]))


def test_an_integer_list_is_parsed_in_one_place_with_the_callers_error():
    """``--steps`` and ``--seeds`` ("10,20,50", "0-3") are parsed by ``limits.parse_ints``; each stage gets the
    one-line error in its own class (the simulator no longer imports the sweep, and torch, to parse seeds)."""
    from aaas_profile.sim.asps import SimError
    from aaas_profile.sweep import SweepError

    assert limits.parse_ints("0-3,7, 9", "seeds") == [0, 1, 2, 3, 7, 9]
    assert limits.parse_ints("-2", "seeds") == [-2]  # a negative item is parsed, and refused by its range check
    with pytest.raises(SimError, match=r"^--seeds: the range '5-2' is empty \(it runs downwards\); write it low-high"):
        limits.parse_ints("5-2", "seeds", SimError)
    with pytest.raises(SweepError, match=r"^--steps: expected integers like 10,20,50 or 0-3, got 'ten'$"):
        limits.parse_ints("ten", "steps", SweepError)


# --- environment variables: declared in one place, read through it -------------------------------------------

def test_every_environment_variable_the_tool_reads_is_declared():
    """The names the package reads from the environment (a string literal given to ``env_int``, ``env_flag``
    or ``environ.get``, or a key looked up in the launcher's environment) are exactly ``options.ENVIRONMENT``
    (plus the tests' own hold gate)."""
    import re
    from pathlib import Path

    import aaas_profile
    from aaas_profile.sweep.execute import HOLD_ENV

    read = set()
    for path in Path(aaas_profile.__file__).parent.rglob("*.py"):
        text = path.read_text()
        read |= set(re.findall(r"env_(?:int|flag)\([^,]+,\s*\"([A-Z_]+)\"", text))
        read |= set(re.findall(r"environ\.get\(\"([A-Z_]+)\"", text))
        read |= set(re.findall(r"\"([A-Z_]+)\" in env\b", text))
    assert read <= set(options.ENVIRONMENT) | {HOLD_ENV}, read - set(options.ENVIRONMENT)
    assert set(options.ENVIRONMENT) <= read, set(options.ENVIRONMENT) - read


@pytest.mark.parametrize(("name", "value", "fragment"), [
    ("RANK", "-1", "must be an integer in [0, 65535]"), ("WORLD_SIZE", "0", "must be an integer in [1, 65536]"),
    ("RANK", "1_000", "is not an integer"), ("RANK", "٣", "is not an integer"), ("RANK", "", "is not an integer"),
    ("SLURM_ARRAY_TASK_COUNT", str(10**30), "must be an integer in [1, 65536]"),
])
def test_an_environment_variable_out_of_range_is_one_line_naming_it(name, value, fragment):
    with pytest.raises(limits.RangeError) as err:
        options.env_int({name: value}, name)
    message = str(err.value)
    assert message.startswith(f"{name}=") and fragment in message and "\n" not in message
    assert options.env_int({name: " 3 "}, name) == 3 and options.env_int({}, name, default=7) == 7
