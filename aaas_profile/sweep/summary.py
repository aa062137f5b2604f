"""The sweep's summary lines: per setting, the medians at the ends of its step axis.
"""

from __future__ import annotations

import pandas as pd

from aaas_profile import metrics as metrics_mod
from aaas_profile import runs

# What a summary line pools: the images and seeds of one setting, at the ends of its step axis. Every other
# column of a cell's key (runs.CELL_KEY: model, mask, sampler and its parameters, jumps, and any setting added
# there later) is kept apart, so two experiments in one folder never share a line.
POOLED = ("image_id", "seed", "steps")
SUMMARY_KEYS = tuple(k for k in runs.CELL_KEY if k not in POOLED)


def summarise(table: pd.DataFrame) -> pd.DataFrame:
    """Per setting (``SUMMARY_KEYS``) and metric: the median over images and seeds at the lowest and the highest
    step count swept, the direction, and how many images and seeds each median pools. ``resampling`` is
    RePaint's "j/r" ("0/0" for another sampler). A bare table without some key column reads as one value of it."""
    rows = []
    defaults = {"jump_length": 0, "jump_n_sample": 0, **runs.LEGACY_SAMPLER}
    table = table.assign(**{k: defaults.get(k, "–") for k in SUMMARY_KEYS if k not in table.columns})
    for values, same in table.groupby(list(SUMMARY_KEYS), sort=True):
        setting = dict(zip(SUMMARY_KEYS, values, strict=True))
        pooled = {"images": int(same["image_id"].nunique()) if "image_id" in same else 0,
                  "seeds": int(same["seed"].nunique()) if "seed" in same else 0}
        rows.extend({**setting, "resampling": f"{setting['jump_length']}/{setting['jump_n_sample']}", **pooled,
                     **row} for row in _summarise_setting(same))
    return pd.DataFrame(rows, columns=[*SUMMARY_KEYS, "resampling", "images", "seeds", "metric", "better",
                                       "steps_low", "median_low", "steps_high", "median_high", "rows"])


def _summarise_setting(table: pd.DataFrame) -> list[dict]:
    rows = []
    for name in [m for m in metrics_mod.ALL if m in set(table["metric"])]:
        part = table[table["metric"] == name]
        low, high = part["steps"].min(), part["steps"].max()
        rows.append({
            "metric": name,
            "better": "higher" if metrics_mod.METRICS[name].higher_is_better else "lower",
            "steps_low": int(low),
            "median_low": float(part.loc[part["steps"] == low, "value"].median()),
            "steps_high": int(high),
            "median_high": float(part.loc[part["steps"] == high, "value"].median()),
            "rows": len(part),
        })
    return rows
