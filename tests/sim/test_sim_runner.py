"""The runner's helpers: when the validated reward first reaches a level."""

from __future__ import annotations

import numpy as np
import pandas as pd

from aaas_profile.sim.runner import first_reaching


def test_first_reaching_reads_the_first_validation_point_at_the_level():
    training = pd.DataFrame({
        "episode": [1, 2, 3, 4, 5],
        "env_steps": [1000, 2010, 3005, 4000, 5001],
        "wall_s": [1.5, 3.0, 4.5, 6.0, 7.5],
        "eval_reward": [np.nan, 90.0, np.nan, 97.0, 99.0],  # validated every second episode from episode 2
    })
    assert first_reaching(training, 97.0) == {"episode": 4, "env_steps": 4000, "wall_s": 6.0}
    assert first_reaching(training, 0.0) == {"episode": 2, "env_steps": 2010, "wall_s": 3.0}
    assert first_reaching(training, 99.5) is None
