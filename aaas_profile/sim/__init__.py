"""The ASP-selection simulator (DESIGN.md, "The simulator"): environment, ASP sources, policies, SAC,
the hindsight optimum, the runner and the figures. The environment is registered as ``aaas/AspSelection-v0``.
"""

from __future__ import annotations

import gymnasium as gym

from aaas_profile.sim.asps import (
    AspSet,
    SimError,
    paper_asps,
    preset_asps,
    profile_asps,
    read_asps_csv,
    read_fit_profile,
    write_asps_csv,
)
from aaas_profile.sim.env import AspSelectionEnv, SimConfig, crash_penalty, paper_runtime_s, quality_gain

ENV_ID = "aaas/AspSelection-v0"
if ENV_ID not in gym.registry:
    gym.register(id=ENV_ID, entry_point="aaas_profile.sim.env:AspSelectionEnv")

__all__ = [
    "ENV_ID", "AspSelectionEnv", "AspSet", "SimConfig", "SimError", "crash_penalty", "paper_asps",
    "paper_runtime_s", "preset_asps", "profile_asps", "quality_gain", "read_asps_csv", "read_fit_profile",
    "write_asps_csv",
]
