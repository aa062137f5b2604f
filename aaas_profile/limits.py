"""Ranges of numbers and the checks that hold a value to one: each option's range is declared with the option
(``aaas_profile/options.py``), each file field's where the file is read.

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


def cores() -> int:
    """The cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


SEED = Range(0, SEED_MAX)


def flag(option: str) -> str:
    return "--" + option.replace("_", "-")


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
