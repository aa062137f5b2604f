"""The numbers the report shows that no other stage computes: where each curve stops paying for steps when
there is no fit.json yet, the sampler settings' per-step medians and which wins at each UNet-call budget, what
each walk spends to come within 5 % of its best median, and the follow-up's published Table III. Tables in,
tables out; ``report`` turns them into HTML.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from aaas_profile.core import curve_keys
from aaas_profile.fit import level_summary, stop_point


def stop_points(scores: pd.DataFrame | None, document: dict | None) -> tuple[list[dict], str]:
    """Per curve: key, direction, stop point, flags, R² within; from fit.json (``document``), else from the
    scores alone."""
    if document is not None:
        curves = [c for c in document.get("curves", []) if isinstance(c.get("stop"), dict)]
        if curves:
            return curves, "fit.json"
    if scores is None or not len(scores):
        return [], ""
    curves = []
    scores = curve_keys.with_sampler_columns(scores)  # a table passed in from before the respacing column
    keys = [*curve_keys.SETTING_KEYS, "mask", "metric"]  # every setting apart, never pooled into one median
    for values, group in scores.groupby(keys, sort=True):
        hib = bool(group["higher_is_better"].iloc[0])
        stats = level_summary(group.assign(x=group["steps"].astype(float)))
        curves.append({**dict(zip(keys, values, strict=True)), "higher_is_better": hib,
                       "stop": stop_point(stats, hib), "flags": []})
    why = "its fit.json predates flags: run `aaas-profile fit` again" if document is not None else (
        "no fit.json yet: run `aaas-profile fit` for flags")
    return curves, f"the per-step medians in scores/ ({why})"


# One line per sampler setting: curve_keys.SETTING_KEYS but the model (a model × mask gets its own figure)
SAMPLER_KEYS = tuple(k for k in curve_keys.SETTING_KEYS if k != "model")


def sampler_medians(scores: pd.DataFrame) -> pd.DataFrame:
    """Per model × mask × metric × sampler setting (``SAMPLER_KEYS``) × step count: the median ``value`` over
    images and seeds, the median ``unet_calls`` per image of its cells, and ``higher_is_better``. ``setting``
    names the setting as briefly as the run allows: the sampler's name, with its parameters only when the run
    has several for that sampler, and RePaint's jumps (j/r) only when the run has several. ``scores`` has the
    sampler columns, as ``runs.read_scores`` gives them."""
    scores = curve_keys.with_sampler_columns(scores)
    keys = ["model", "mask", "metric", *SAMPLER_KEYS, "steps"]
    medians = (scores.groupby(keys, sort=True)
               .agg(value=("value", "median"), unet_calls=("unet_calls", "median"),
                    higher_is_better=("higher_is_better", "first"))
               .reset_index())
    settings = medians[list(SAMPLER_KEYS)].drop_duplicates()
    n_params = settings.groupby("sampler")["sampler_params"].nunique()
    n_walks = settings.groupby("sampler")["respacing"].nunique()
    n_jumps = settings.groupby("sampler")[["jump_length", "jump_n_sample"]].apply(lambda g: len(g.drop_duplicates()))
    labels = {}
    for row in settings.to_dict("records"):
        label = curve_keys.sampler_label(row) if n_params[row["sampler"]] > 1 else str(row["sampler"])
        if n_walks[row["sampler"]] > 1:
            label += f" @{row['respacing']}"
        if row["jump_length"] > 0 and n_jumps[row["sampler"]] > 1:
            label += f" {row['jump_length']}/{row['jump_n_sample']}"
        labels[tuple(row.values())] = label
    medians["setting"] = [labels[k] for k in medians[list(SAMPLER_KEYS)].itertuples(index=False, name=None)]
    return medians


def best_by_budget(medians: pd.DataFrame) -> pd.DataFrame:
    """Which sampler setting gives the best median at each UNet-call budget, per model × mask × metric.

    ``medians``: ``sampler_medians``' table. The budgets are every median UNet-call count at which some setting
    was measured (the grid of the comparison). A setting's score at budget B is its best per-step median over
    its step counts that cost at most B UNet calls per image (the same or a lower budget: a sampler that has
    peaked may stop early), best meaning highest for a higher-is-better metric and lowest otherwise; a setting
    with no step count within B is out of the running at B. Returns one row per (model, mask, metric, budget):
    ``best`` (the winning setting's label; ties joined by " = "), ``value`` (its score), ``steps`` and
    ``unet_calls`` (where the winner reaches it) and ``higher_is_better``.
    """
    out = []
    for (model, mask, metric), group in medians.groupby(["model", "mask", "metric"], sort=True):
        sign = 1.0 if bool(group["higher_is_better"].iloc[0]) else -1.0
        for budget in sorted(group["unet_calls"].unique()):
            within = group[group["unet_calls"] <= budget]
            if within.empty:
                continue
            signed = within["value"].to_numpy(float) * sign
            best = signed.max()
            winners = within[signed == best].sort_values(["unet_calls", "setting"])
            first = winners.iloc[0]
            out.append({"model": model, "mask": mask, "metric": metric, "budget": float(budget),
                        "best": " = ".join(dict.fromkeys(winners["setting"])), "value": float(first["value"]),
                        "steps": int(first["steps"]), "unet_calls": float(first["unet_calls"]),
                        "higher_is_better": sign > 0})
    return pd.DataFrame(out, columns=["model", "mask", "metric", "budget", "best", "value", "steps", "unet_calls",
                                      "higher_is_better"])


# A walk "reaches" its best when its median is within this share of its best median (docs/protocol.md).
NEAR_BEST = 0.05


def protocol_costs(medians: pd.DataFrame, near: float = NEAR_BEST) -> pd.DataFrame:
    """Per model × mask × metric × sampler setting (``sampler_medians``' table): the fewest median UNet calls
    per image at which the setting's median comes within ``near`` (a share) of its own best median, |m − best| ≤
    near·|best|, best being the highest median for a higher-is-better metric and the lowest otherwise. Returns
    model, mask, metric, setting, respacing, best, steps and unet_calls (where it first gets there)."""
    out = []
    for (model, mask, metric, setting), group in medians.groupby(["model", "mask", "metric", "setting"], sort=True):
        group = group.sort_values(["unet_calls", "steps"])
        values = group["value"].to_numpy(float)
        best = values.max() if bool(group["higher_is_better"].iloc[0]) else values.min()
        first = group[np.abs(values - best) <= near * abs(best)].iloc[0]
        out.append({"model": model, "mask": mask, "metric": metric, "setting": setting,
                    "respacing": str(first["respacing"]), "best": float(best), "steps": int(first["steps"]),
                    "unet_calls": float(first["unet_calls"])})
    return pd.DataFrame(out, columns=["model", "mask", "metric", "setting", "respacing", "best", "steps",
                                      "unet_calls"])


TABLE_III = {"random": -35.0, "round-robin": 280.0, "crash-avoid": 400.0, "greedy-oracle": 596.0, "d2sac": 537.0}
TABLE_III_NAMES = {"greedy-oracle": "prophet", "d2sac": "D2SAC"}
