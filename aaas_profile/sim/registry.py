"""The policies ``simulate`` can run, by name: ``{name: PolicySpec}``.

A spec says what the runner must know to run a policy, so that it treats every policy alike: the factory
that builds it (training it first, for a learning policy), whether it learns (a learning policy is never run as
a baseline beside another and needs training episodes or a saved checkpoint), the checkpoint file it saves in
``sim/<name>/`` (which makes ``--resume`` and ``--checkpoint FILE`` apply to it), the ``SimOptions`` fields
only it honours (refused for every other policy) and whether its evaluation runs torch. A new policy is one
:func:`register` call; the runner needs no change.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aaas_profile.sim.asps import SimError
from aaas_profile.sim.policies import BASELINES, PolicyContext, PreparedPolicy, make_baseline


@dataclass(frozen=True)
class PolicySpec:
    """One registered policy. ``make(context) -> PreparedPolicy`` builds it.

    ``learns``: trained before evaluation (needs ``train_episodes ≥ 1`` unless a checkpoint is loaded).
    ``checkpoint``: the file name in ``sim/<name>/`` that training saves after every episode; ``--resume``
    continues from it and ``--checkpoint FILE`` evaluates a saved one (``None``: neither applies).
    ``options``: ``SimOptions`` fields that only this policy honours (e.g. ``auto_alpha``).
    ``torch_threads``: evaluation runs torch, on ``SimOptions.torch_threads`` threads.
    ``label``: its name in figures and messages.
    ``check_checkpoint(path)``: reads a checkpoint to resume from and raises ``SimError`` (one line) when it
    cannot be used, before ``simulate --resume`` writes anything (``None``: loading it is the check).
    """

    name: str
    make: Callable[[PolicyContext], PreparedPolicy]
    learns: bool = False
    checkpoint: str | None = None
    options: tuple[str, ...] = ()
    torch_threads: bool = False
    label: str = ""
    check_checkpoint: Callable[[Path], None] | None = None

    @property
    def title(self) -> str:
        return self.label or self.name


REGISTRY: dict[str, PolicySpec] = {}


def register(spec: PolicySpec) -> PolicySpec:
    """Add ``spec`` under its name (refused when the name is taken) and return it."""
    if spec.name in REGISTRY:
        raise ValueError(f"a policy named {spec.name!r} is registered already")
    REGISTRY[spec.name] = spec
    return spec


def get(name: str) -> PolicySpec:
    """The spec of policy ``name``; an unknown name is a one-line ``SimError`` listing the known ones."""
    if name not in REGISTRY:
        raise SimError(f"unknown policy {name!r}; choose from {', '.join(REGISTRY)}")
    return REGISTRY[name]


def names() -> tuple[str, ...]:
    """Every registered policy, baselines first (registration order)."""
    return tuple(REGISTRY)


def baseline_names() -> tuple[str, ...]:
    """The policies that do not learn: the reference levels evaluated beside the chosen policy."""
    return tuple(name for name, spec in REGISTRY.items() if not spec.learns)


def _baseline(name: str) -> Callable[[PolicyContext], PreparedPolicy]:
    def make(context: PolicyContext) -> PreparedPolicy:
        return PreparedPolicy(make_baseline(name, seed=context.options.seed))

    return make


def _sb3_checkpoint(name: str) -> Callable[[Path], None]:
    def check(path: Path) -> None:
        from aaas_profile.sim import sb3

        sb3.check_checkpoint(path, name)

    return check


def _sac(context: PolicyContext) -> PreparedPolicy:
    from aaas_profile.sim import learning  # here: it imports torch, which the baselines never need

    return learning.prepare(context)


def _sac_checkpoint(path: Path) -> None:
    from aaas_profile.sim import learning

    learning.check_checkpoint(path)


def _d2sac_checkpoint(path: Path) -> None:
    from aaas_profile.sim import d2sac, learning

    learning.check_checkpoint(path, d2sac.D2SAC)


def _d2sac(context: PolicyContext) -> PreparedPolicy:
    from aaas_profile.sim import d2sac

    return d2sac.prepare(context)


def _sb3(name: str) -> Callable[[PolicyContext], PreparedPolicy]:
    def make(context: PolicyContext) -> PreparedPolicy:
        from aaas_profile.sim import sb3  # here: SB3 and torch load only for these policies

        return sb3.prepare(context, name)

    return make


for _name in BASELINES:
    register(PolicySpec(_name, _baseline(_name)))
register(PolicySpec("sac", _sac, learns=True, checkpoint="checkpoint.pt", options=("auto_alpha",),
                    torch_threads=True, label="SAC", check_checkpoint=_sac_checkpoint))
register(PolicySpec("d2sac", _d2sac, learns=True, checkpoint="checkpoint.pt", torch_threads=True, label="D2SAC",
                    check_checkpoint=_d2sac_checkpoint))
for _name in ("dqn", "ppo"):  # Stable-Baselines3's (sim/sb3.py)
    register(PolicySpec(_name, _sb3(_name), learns=True, checkpoint="model.zip", torch_threads=True,
                        label=_name.upper(), check_checkpoint=_sb3_checkpoint(_name)))
