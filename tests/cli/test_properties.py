"""Property-based tests of the whole command surface (Hypothesis): every option of every command, every key of
``sweep --config`` and every environment variable the tool reads, given values of the wrong type, out of range,
empty, repeated, huge, NaN or infinite, or arbitrary unicode.

The property: the command ends with one line starting ``error:`` and a non-zero exit (never a traceback, never a
second error), and writes nothing. Each command is given an input that does not exist (``BASE`` in
test_limits), so a value that passes its own check reaches that one-line error instead and nothing runs; the
values' effect on real work is what the other test files check. Examples are drawn deterministically
(``derandomize``) so CI sees the same ones on every run (40 per test, about 20 s in all); an example that ever
fails is to be kept as a plain test beside the one it broke. A deliberate break (``limits.parse_ints`` letting a
ValueError through) fails the first test at ``--steps nan``.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import invoke
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_limits import BASE

COMMANDS = [*BASE, "report"]
BASE_ARGS = {**BASE, "report": ["no-such-run"]}
# Options that take no value, and those that must stay as BASE gives them (they make the command stop early).
SKIP = {"--help", "--dry-run", "--install-completion", "--show-completion"}
KEPT = {"sweep": {"--model"}, "fit": set(), "simulate": {"--asps"}, "train": {"--data", "--out"}, "report": set()}

NASTY = st.sampled_from([
    "", " ", ",", ",,", "nan", "NaN", "inf", "-inf", "-1", "0", "-0", "1e308", "1e309", str(10**30), str(-10**30),
    "0,0", "1,1,1", "10-2", "2-", "-", "a,,b", "∞", "ñandú", "名前", "\u200b", "\t", "x" * 5000, "../..", "/",
    "true", "None", "[]", "{}", "'", '"', "\\", "%s", "$HOME", "0x10", "1_000", "٣",  # an Arabic-Indic digit
])
VALUES = st.one_of(
    NASTY,
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40),
    st.integers(-10**40, 10**40).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.lists(st.integers(-5, 300), min_size=0, max_size=6).map(lambda xs: ",".join(map(str, xs))),
)
SETTINGS = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def options(command: str) -> list[tuple[str, bool]]:
    """(flag, takes a value) for every option of ``command``, from the app itself: a new option is covered
    without being listed here."""
    import typer

    from aaas_profile.cli import app

    click_command = typer.main.get_command(app).commands[command]
    found = []
    for param in click_command.params:
        if param.param_type_name != "option":
            continue
        for flag in [*param.opts, *param.secondary_opts]:
            if flag.startswith("--") and flag not in SKIP and flag not in KEPT[command]:
                found.append((flag, not param.is_flag))
    return found


@contextmanager
def empty_folder():
    """A fresh empty working folder per example (pytest's tmp_path is one per test, not per example)."""
    before = Path.cwd()
    with tempfile.TemporaryDirectory() as folder:
        os.chdir(folder)
        try:
            yield Path(folder)
        finally:
            os.chdir(before)


def assert_one_line_refusal(result, folder: Path, keep: tuple[str, ...] = ()) -> None:
    assert result.exit_code != 0 and isinstance(result.exception, SystemExit | None), result.output
    assert "Traceback" not in result.output, result.output
    text = " ".join(result.output.split())
    assert text.startswith("error:"), result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert all(not line.startswith("error:") for line in lines[1:]), result.output
    left = sorted(p.name for p in folder.iterdir() if p.name not in keep)
    assert left == [], f"written on refusal: {left}"


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_of_every_command_refuses_in_one_line(command):
    flags = options(command)
    assert flags, command

    @SETTINGS
    @given(flag=st.sampled_from(flags), value=VALUES)
    def check(flag, value):
        flag_name, takes_value = flag
        with empty_folder() as folder:
            extra = [flag_name, value] if takes_value else [flag_name]
            assert_one_line_refusal(invoke(command, *BASE_ARGS[command], *extra), folder)

    check()


@pytest.mark.parametrize("command", COMMANDS)
def test_an_option_given_twice_or_with_two_bad_values_is_one_line(command):
    """Two options at once, each with a drawn value: the first refusal is the one line."""
    flags = [f for f, takes in options(command) if takes]

    @SETTINGS
    @given(first=st.sampled_from(flags), second=st.sampled_from(flags), a=VALUES, b=VALUES)
    def check(first, second, a, b):
        with empty_folder() as folder:
            assert_one_line_refusal(invoke(command, *BASE_ARGS[command], first, a, second, b), folder)

    check()


# The keys of a run folder's config.toml, which `sweep --config` reads with the same checks as the flags.
CONFIG_KEYS = ["model", "data", "masks", "steps", "seeds", "jump_length", "jump_n_sample", "eta", "metrics",
               "batch_size", "device", "dtype", "save_images", "sampler", "respacing", "limit", "out", "colour"]
TOML_VALUES = st.one_of(
    st.sampled_from(['""', "nan", "inf", "-inf", "-1", "0", "1e308", str(10**30), "[]", "[1, 1]", "[0, -3]",
                     '["a", "a"]', "[1.5]", "true", "{}", '"名前"', '"x,,y"', "[[1]]", '"../.."']),
    st.integers(-10**25, 10**25).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),  # TOML spells them nan, inf and -inf too
    st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=20).map(lambda s: '"' + s.replace("\\", "\\\\")
                                                                                         .replace('"', '\\"') + '"'),
)


@SETTINGS
@given(key=st.sampled_from(CONFIG_KEYS), value=TOML_VALUES)
def test_every_config_key_refuses_in_one_line(key, value):
    with empty_folder() as folder:
        (folder / "c.toml").write_text(f"{key} = {value}\n", encoding="utf-8")
        assert_one_line_refusal(invoke("sweep", "--config", "c.toml", *BASE["sweep"]), folder, keep=("c.toml",))


# Every environment variable the tool reads: the launchers' shard (torchrun's RANK/WORLD_SIZE, a SLURM array),
# the GPU index under torchrun, and the hub's offline switch.
ENV_VARS = ["RANK", "WORLD_SIZE", "SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN",
            "LOCAL_RANK", "HF_HUB_OFFLINE"]


@SETTINGS
@given(values=st.dictionaries(st.sampled_from(ENV_VARS), VALUES.filter(lambda v: "\x00" not in v), min_size=1,
                              max_size=4))
def test_every_environment_variable_refuses_in_one_line(values):
    saved = {name: os.environ.get(name) for name in ENV_VARS}
    try:
        os.environ.update(values)
        with empty_folder() as folder:
            assert_one_line_refusal(invoke("sweep", *BASE["sweep"]), folder)
            assert_one_line_refusal(invoke("train", *BASE["train"]), folder)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
