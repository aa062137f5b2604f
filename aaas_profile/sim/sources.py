"""Where ``simulate`` takes its ASPs from, and the checks on what the command line asks for.

One :class:`AspSource` says which of the three sources of :mod:`aaas_profile.sim.asps` a run uses (a preset drawn
with the seed, a CSV table, or a ``fit.json`` profile with its metric and runtime model), refuses combinations
that make no sense in one line (``SimError``), builds the ASP set for a seed, and gives each seed of a
``--seeds`` run its own set (a table is the same for every seed; a preset or a profile is drawn with the seed).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

from aaas_profile.sim.asps import (
    AspSet,
    SimError,
    preset_asps,
    profile_asps,
    read_asps_csv,
    with_profile_capacities,
)
from aaas_profile.sim.env import SimConfig

RUNTIME_CHOICES = ("profile", "paper")


@dataclass(frozen=True)
class AspSource:
    """``--preset`` (used when neither of the others is given), ``--asps`` (a CSV table) or ``--profile`` (a
    ``fit.json``, with ``metric``, ``sampler``, ``runtime`` 'profile' or 'paper', and ``allow_flagged``)."""

    preset: str = "paper"
    asps: Path | None = None
    profile: Path | None = None
    metric: str | None = None
    sampler: str | None = None
    runtime: str = "profile"
    allow_flagged: bool = False

    def __post_init__(self):
        if self.profile is not None and self.asps is not None:
            raise SimError("give --profile or --asps, not both")
        if self.runtime not in RUNTIME_CHOICES:
            raise SimError(f"--runtime {self.runtime!r}: choose {' or '.join(RUNTIME_CHOICES)}")
        if self.runtime == "paper" and self.profile is None:
            raise SimError("--runtime only applies to --profile (the other ASP sets use the paper's runtime model "
                           "already)")
        if self.sampler is not None and self.profile is None:
            raise SimError("--sampler only applies to --profile (it picks that sampler's curves and runtime)")

    def load(self, seed: int) -> AspSet:
        """The ASP set of a run with ``seed`` (a table ignores it)."""
        if self.asps is not None:
            return read_asps_csv(self.asps)
        if self.profile is not None:
            return profile_asps(self.profile, metric=self.metric, seed=seed, allow_flagged=self.allow_flagged,
                                measured_runtime=self.runtime == "profile", sampler=self.sampler)
        return preset_asps(self.preset, seed)

    def default_out(self) -> Path:
        """The run folder when ``--out`` is not given: the profile's folder, else results/<preset or table name>."""
        if self.profile is not None:
            return Path(self.profile).parent
        return Path("results") / (self.preset if self.asps is None else Path(self.asps).stem)

    def per_seed(self, built: AspSet):
        """``seed -> AspSet`` for a ``--seeds`` run, picklable for Ray. ``built`` is a set :meth:`load` has
        already built (and so checked): a table is that same set for every seed."""
        if self.asps is not None:
            return partial(_same, built)
        if self.profile is not None:  # the profile is read and checked once, by load(); each seed redraws capacities
            return partial(with_profile_capacities, built)
        return partial(preset_asps, self.preset)


def _same(asp_set: AspSet, seed: int) -> AspSet:
    return asp_set


def sim_config(horizon_s: float) -> SimConfig:
    """The paper preset's task stream over episodes of ``horizon_s`` seconds (``--horizon``)."""
    if not horizon_s > 0:
        raise SimError(f"--horizon must be positive, got {horizon_s:g}")
    return SimConfig(horizon_s=horizon_s)
