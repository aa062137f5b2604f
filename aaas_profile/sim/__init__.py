"""The ASP-selection simulator (docs/design.md, "The simulator"): environment, ASP sources, policies, SAC,
the hindsight optimum, the runner and the figures. The environment is registered as ``aaas/AspSelection-v0``.

Importing the package imports none of its modules: the names below load on first use (module ``__getattr__``),
so importing one part (the ASP sources, for ``fit``'s and ``report``'s readers) does not load the environment or
the learning policies. The formulas the simulator shares with the fit live in :mod:`aaas_profile.core.formulas`.
Registering the environment needs only gymnasium: the entry point is a string, resolved by ``gym.make``.
"""

from __future__ import annotations

import importlib

import gymnasium as gym

ENV_ID = "aaas/AspSelection-v0"
if ENV_ID not in gym.registry:
    gym.register(id=ENV_ID, entry_point="aaas_profile.sim.env:AspSelectionEnv")

# Public name → the module that defines it.
_EXPORTS = {
    "AspSet": "asps", "SimError": "asps", "paper_asps": "asps", "preset_asps": "asps", "profile_asps": "asps",
    "read_asps_csv": "asps", "read_fit_profile": "asps", "write_asps_csv": "asps",
    "AspSelectionEnv": "env", "SimConfig": "env",
}
# The shared formulas, from the core (``aaas_profile.sim.paper_runtime_s`` is the core's function).
_CORE = {"crash_penalty", "paper_runtime_s", "quality_gain"}

__all__ = ["ENV_ID", *_EXPORTS, *sorted(_CORE)]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"aaas_profile.sim.{_EXPORTS[name]}"), name)
    if name in _CORE:
        return getattr(importlib.import_module("aaas_profile.core.formulas"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
