"""The curve key and the settings that tell curves apart: what makes two quality curves different curves, how
a table or a title names them, and what a table written before a column existed means by its absence.

Pure functions of mappings (a curve key, a fit.json entry, a scores row: anything with ``get``); a scores
table is passed through duck-typed (``with_sampler_columns``), so nothing here imports pandas.
"""

from __future__ import annotations

# One curve per model × mask × sampler (its name and parameters beyond RePaint's jumps, canonical JSON) × walk
# (respacing: "250" t_T on the 250-step grid, "steps" the steps walk) × jump setting (RePaint's j/r; 0/0 for
# other samplers) × metric.
CURVE_KEY = ("model", "mask", "sampler", "sampler_params", "respacing", "jump_length", "jump_n_sample", "metric")
# What a scores table (or fit.json curve) written before the sampler columns existed means: every row was
# diffusers' RePaint (what the sampler "repaint" was then, now "repaint-diffusers") on the steps walk, with
# params "{}" (its parameters are the jump columns). ``runs.read_scores`` fills old parts with these values, so
# those folders resume and fit as they are and are never pooled with the authors' RePaint.
SAMPLER_DEFAULTS = {"sampler": "repaint-diffusers", "sampler_params": "{}", "respacing": "steps"}
# The paper's six metrics in its order (Du et al. 2023, Figure 3): how tables and panels list them.
# ``metrics.METRICS`` computes them, in this order (tests/test_metrics.py holds the two together).
METRIC_NAMES = ("tv", "brisque", "dss", "haarpsi", "mdsi", "vif")
# What tells two curves of one mask and metric apart, for tables and titles (``varying_settings``).
SETTING_KEYS = ("model", "sampler", "sampler_params", "respacing", "jump_length", "jump_n_sample")
# What the x axis "steps" means on each walk, for fit.json's "x" (docs/fit-json.md) and the simulator, whose
# tasks ask for t_T on the paper's 250-step grid (docs/protocol.md).
STEPS_WALK = "steps"


def walk_meaning(respacing: str) -> str:
    """What ``steps`` counts on the walk ``respacing`` (a scores table's column), in words."""
    if respacing == STEPS_WALK:
        return ("denoising steps spread over the whole training range (diffusers' num_inference_steps), not the "
                "paper's t_T")
    return f"t_T: the chain starts at index t_T − 1 of the {respacing}-step respaced grid (the paper's x axis)"


def in_task_units(curve) -> bool:
    """Whether a curve's x (fitted against steps) is in the simulator's task units: t_T on a respaced grid
    (the paper's protocol), not the steps walk."""
    return str(setting_of(curve)["respacing"]) != STEPS_WALK


def with_sampler_columns(scores):
    """``scores`` with the ``sampler``, ``sampler_params`` and ``respacing`` columns, filled with
    ``SAMPLER_DEFAULTS`` where a table written before them lacks them (a copy only when something is added)."""
    missing = {k: v for k, v in SAMPLER_DEFAULTS.items() if k not in scores.columns}
    return scores.assign(**missing) if missing else scores


def setting_of(curve) -> dict:
    """A curve's setting (``SETTING_KEYS``) from a curve key, a fit.json entry or a scores row (anything with
    ``get``); one from before samplers or the respacing column reads as ``SAMPLER_DEFAULTS``."""
    return {k: curve.get(k, SAMPLER_DEFAULTS.get(k)) for k in SETTING_KEYS}


def sampler_label(curve) -> str:
    """The sampler in words: its name, with its parameters when there are any ("dpm-solver {...}")."""
    s = setting_of(curve)
    params = str(s["sampler_params"])
    return str(s["sampler"]) + ("" if params in ("{}", "None") else f" {params}")


def varying_settings(curves: list) -> list[str]:
    """The ``SETTING_KEYS`` that take more than one value over ``curves`` (keys, fit.json entries, rows)."""
    settings = [setting_of(c) for c in curves]
    return [k for k in SETTING_KEYS if len({str(s[k]) for s in settings}) > 1]


def setting_cells(curve, varying: list[str]) -> dict[str, str]:
    """What tells ``curve`` apart from the run's other curves, for the keys in ``varying``
    (``varying_settings``), as {column: text}: ``model``; ``sampler`` (``sampler_label``); ``respacing`` (the
    walk); ``jumps`` as j/r, "–" for a sampler without jumps."""
    s, cells = setting_of(curve), {}
    if "model" in varying:
        cells["model"] = str(s["model"])
    if "sampler" in varying or "sampler_params" in varying:
        cells["sampler"] = sampler_label(s)
    if "respacing" in varying:
        cells["respacing"] = str(s["respacing"])
    if "jump_length" in varying or "jump_n_sample" in varying:
        jumps = int(s.get("jump_length") or 0)
        cells["jumps"] = f"{s['jump_length']}/{s['jump_n_sample']}" if jumps > 0 else "–"
    return cells


SETTING_COLUMNS = ("model", "sampler", "respacing", "jumps")  # the columns ``setting_cells`` may give, in order
