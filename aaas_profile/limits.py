"""The range of every numeric option, in one table, and the checks that hold each value to it on entry.

A value outside what numpy, torch or the simulator can take (a negative seed, an infinite horizon, a thread
count of 100,000, a step count of 10**30) would otherwise reach them and fail far from the flag, or not fail
at all. Every command checks its numbers here before it writes anything, with one line that names the option,
the range and the value (docs/cli.md, "Ranges"). A list option (``--seeds 0,3,7``) is checked item by item
and refused when an item repeats, so nothing is run or aggregated twice.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass

from aaas_profile.errors import UserError

# numpy's legacy RandomState, which draws the paper's ASP presets, takes seeds in [0, 2**32 - 1]; every other
# generator the tool seeds (numpy's default_rng, torch.manual_seed) takes at least that range.
SEED_MAX = 2**32 - 1


class RangeError(UserError, ValueError):
    """A number outside the range its option or field takes; the message is one line."""


@dataclass(frozen=True)
class Range:
    """Closed [low, high] unless ``low_open``/``high_open``; ``integer``: whole numbers only. ``unit`` is said in
    the message ("seconds")."""

    low: float | None = None
    high: float | None = None
    integer: bool = True
    low_open: bool = False
    high_open: bool = False
    unit: str = ""

    def text(self) -> str:
        low = "-∞" if self.low is None else _number(self.low)
        high = "∞" if self.high is None else _number(self.high)
        kind = "an integer" if self.integer else "a finite number"
        unit = f" {self.unit}" if self.unit else ""
        return f"{kind} in {'(' if self.low_open else '['}{low}, {high}{')' if self.high_open else ']'}{unit}"

    def holds(self, value) -> bool:
        if isinstance(value, bool):
            return False
        if self.integer:
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            if not isinstance(value, int) and not (hasattr(value, "dtype") and value.dtype.kind in "iu"):
                return False
        else:
            try:
                value = float(value)
            except (TypeError, ValueError, OverflowError):
                return False
            if not math.isfinite(value):
                return False
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return not (self.high is not None and (value > self.high or (self.high_open and value == self.high)))


def _number(x: float) -> str:
    """A bound as people write it: 4294967295, not 4.29497e+09."""
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


SEED = Range(0, SEED_MAX)

# List options whose items may repeat because their order is the meaning (a UNet's channels per level).
REPEATS_ALLOWED = {("train", "channels")}

# Every numeric option of every command. A test walks the commands and fails for a numeric option missing here.
OPTIONS: dict[str, dict[str, Range]] = {
    "sweep": {
        "steps": Range(1, 100_000),  # each item; a model's own limit (its training steps) is checked later
        "seeds": SEED,  # each item
        "jump_length": Range(1, 1000),
        "jump_n_sample": Range(1, 1000),
        "eta": Range(0, 1, integer=False),
        "limit": Range(1, 10**9),
        "batch_size": Range(1, 65_536),
        "save_images": Range(0, 10**9),
        "shards": Range(1, 65_536),
    },
    "fit": {
        "bootstrap": Range(0, 1_000_000),
        "seed": SEED,
        "level": Range(0, 1, integer=False, low_open=True, high_open=True),
    },
    "simulate": {
        "episodes": Range(1, 1_000_000),
        "train_episodes": Range(0, 10_000_000),
        "seed": SEED,
        "seeds": SEED,  # each item
        # tasks arrive at 0.001/s: 1e9 s is a million tasks an episode, 1,000 times the paper's
        "horizon": Range(0, 1e9, integer=False, low_open=True, unit="seconds"),
        "optimum_time_limit": Range(0, 86_400, integer=False, low_open=True, unit="seconds"),
    },
    "train": {
        "resolution": Range(16, 4096),
        "steps": Range(1, 10**9),
        "batch_size": Range(1, 65_536),
        "lr": Range(0, 1, integer=False, low_open=True, high_open=True),
        "warmup_steps": Range(0, 10**9),
        "ema_decay": Range(0, 1, integer=False, high_open=True),
        "seed": SEED,
        "min_crop": Range(0, 1, integer=False, low_open=True),
        "channels": Range(8, 8192),  # each item
        "layers_per_block": Range(1, 64),
        "checkpoint_every": Range(1, 10**9),
        "time_limit": Range(0, 10**7, integer=False, unit="minutes"),
        "threads": Range(1, None),  # the high end is the cores this process may use (_cores)
    },
}


def range_of(command: str, option: str) -> Range:
    r = OPTIONS[command][option]
    if command == "train" and option == "threads":
        return Range(1, _cores(), unit="(the cores this process may use)")
    return r


def describe(command: str, option: str) -> str:
    """The range in words, the same on every machine (for docs/cli.md)."""
    if command == "train" and option == "threads":
        return "an integer in [1, the cores this process may use]"
    return OPTIONS[command][option].text()


# List options: each item is held to the range, and an item may not repeat (see ``check``).
LIST_OPTIONS = {("sweep", "steps"), ("sweep", "seeds"), ("simulate", "seeds"), ("train", "channels")}


def flag(option: str) -> str:
    return "--" + option.replace("_", "-")


def check(command: str, option: str, value, error: type[UserError] = RangeError, name: str | None = None) -> None:
    """Raise ``error`` (one line) unless ``value`` is in the range of ``command``'s ``option``; None passes (not
    given). A list is checked item by item and refused when an item repeats. The message names the flag, or
    ``name`` where the value came from a file (config.toml's ``batch_size``)."""
    if value is None:
        return
    r, label = range_of(command, option), name or flag(option)
    if isinstance(value, list | tuple):
        for item in value:
            if not r.holds(item):
                raise error(f"{label}: {item} is out of range; each item must be {r.text()}")
        if (command, option) not in REPEATS_ALLOWED:
            no_repeats(option, value, error, label)
        return
    if not r.holds(value):
        raise error(f"{label} must be {r.text()}, got {value}")


def check_all(command: str, values: dict, error: type[UserError] = RangeError, keyed: bool = False) -> None:
    """:func:`check` for every option of ``command`` present in ``values``; ``keyed``: the values came from a
    file, and the message names each by its key (``batch_size``) instead of its flag."""
    for option in OPTIONS[command]:
        if option in values:
            check(command, option, values[option], error, name=option if keyed else None)


def parse_ints(text: str, what: str, error: type[UserError] = RangeError) -> list[int]:
    """"10,20,50" or "0-3" (inclusive ranges) → a list of ints, for the list option ``--what``; ``error`` (one
    line) for text that is not one."""
    values: list[int] = []
    try:
        for item in (p.strip() for p in text.split(",") if p.strip()):
            if "-" in item[1:]:
                lo, hi = item.split("-", 1) if not item.startswith("-") else item[1:].split("-", 1)
                if int(hi) < int(lo):
                    raise error(f"--{what}: the range '{item}' is empty (it runs downwards); write it "
                                     f"low-high, e.g. {hi}-{lo}")
                values.extend(range(int(lo), int(hi) + 1))
            else:
                values.append(int(item))
    except error:
        raise
    except ValueError:
        raise error(f"--{what}: expected integers like 10,20,50 or 0-3, got '{text}'") from None
    return values


def no_repeats(option: str, items: Iterable, error: type[UserError] = RangeError, label: str | None = None) -> None:
    """Refuse a list option whose items repeat: a repeated seed or step would be run and aggregated twice."""
    seen: set = set()
    repeated = []
    for item in items:
        if item in seen and item not in repeated:
            repeated.append(item)
        seen.add(item)
    if repeated:
        names = ", ".join(map(str, repeated))
        raise error(f"{label or flag(option)}: {names} {'is' if len(repeated) == 1 else 'are'} given more than once; "
                    "give each item once")


def finite(where: str, field: str, value, low: float | None = None, high: float | None = None,
           error: type[UserError] = RangeError) -> float:
    """A number read from a file (``where``: the file; ``field``: its key) as a finite float within [low, high]."""
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise error(f"{where}: {field} must be a number, got {value!r}") from None
    if not math.isfinite(number) or (low is not None and number < low) or (high is not None and number > high):
        bounds = f" in [{'-∞' if low is None else f'{low:g}'}, {'∞' if high is None else f'{high:g}'}]"
        raise error(f"{where}: {field} must be a finite number{bounds if low is not None or high is not None else ''}"
                    f", got {value!r}; fix or regenerate the file")
    return number
