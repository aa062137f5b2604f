"""PNG figures of fitted quality curves (matplotlib, Agg backend: no display needed).

One figure per curve (model × mask × sampler × jump setting × metric; file names: ``curve_stem``): each
image's values joined by a thin line (an image is measured at every step count), the per-step median with
its interquartile band, the fitted broken line with (Ax, Ay) and (Bx, By) marked and their bootstrap
intervals as error bars, where the median stops gaining (dotted), the three R² (within images, pooled,
medians) and the curve's flags in red. A grid that spans more than a factor of 20 (1 to 50 steps) is drawn
on a log x axis, so the low end stays visible. One panel per (model, mask, sampler, jump setting) with every
metric, three to a row: the six of ``core.curve_keys.METRIC_NAMES`` (2×3, like Figure 3 of Du et al. (2023); one not
measured is marked so) and any other metric of the scores table after them, in further rows.
"""

from __future__ import annotations

import hashlib
import math
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from aaas_profile.atomic import save_figure  # noqa: E402
from aaas_profile.core import curve_keys  # noqa: E402
from aaas_profile.fit import X_UNITS, CurveFit  # noqa: E402


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", str(text)).strip("-") or "x"


def curve_stem(key: dict) -> str:
    """A curve's file-name stem without its metric: ``<model>_<mask>_j<j>r<r>`` for diffusers' RePaint on the steps
    walk (the names from before there were other samplers), ``<model>_<mask>_<sampler>`` for another setting,
    with ``-p<8 hex>`` (SHA-256 of its parameters) when it has any, ``-r<N>`` on an N-step grid and
    ``-j<j>r<r>`` for its jumps, so two settings of one sampler stay apart."""
    s = curve_keys.setting_of(key)
    if all(s[k] == v for k, v in curve_keys.SAMPLER_DEFAULTS.items()):
        setting = f"j{s['jump_length']}r{s['jump_n_sample']}"
    else:
        params = str(s["sampler_params"])
        digest = "" if params == "{}" else "-p" + hashlib.sha256(params.encode("utf-8")).hexdigest()[:8]
        walk = "" if s["respacing"] == curve_keys.STEPS_WALK else f"-r{s['respacing']}"
        jumps = f"-j{s['jump_length']}r{s['jump_n_sample']}" if int(s["jump_length"] or 0) > 0 else ""
        setting = f"{s['sampler']}{digest}{walk}{jumps}"
    return "_".join(_slug(v) for v in (s["model"], key["mask"], setting))


def panel_title(key: dict) -> str:
    """What a panel or a figure shows, in words: model, mask and the sampler (RePaint: its jumps)."""
    s = curve_keys.setting_of(key)
    jumps = f"jumps {s['jump_length']}/{s['jump_n_sample']}"
    if all(s[k] == v for k, v in curve_keys.SAMPLER_DEFAULTS.items()):
        setting = jumps
    else:
        setting = f"sampler {curve_keys.sampler_label(s)}"
        if s["respacing"] != curve_keys.STEPS_WALK:
            setting += f" · t_T on the {s['respacing']}-step grid"
        if int(s["jump_length"] or 0) > 0:
            setting += f" · {jumps}"
    return f"{s['model']} · mask {key['mask']} · {setting}"


def flag_label(curve: CurveFit, flag: dict) -> str:
    """A flag as a short label for a plot (the full message is in fit.json and the fit table)."""
    code = flag["code"]
    if code == "no_effect":
        return f"no measurable effect of steps (p = {curve.effect['p_value']:.2g})"
    if code == "worse_with_steps":
        return f"worse with more steps (p = {curve.effect['p_value']:.2g})"
    if code == "saturated_in_grid":
        return "saturated within the grid: add lower step counts"
    if code == "not_saturated":
        return "not saturated within the grid: add higher step counts"
    if code == "under_determined":
        return f"no intervals: {curve.x_levels.size} step counts, {curve.n_images} image(s)"
    return code


def draw_curve(ax, curve: CurveFit, x: str = "steps", title: str | None = None) -> None:
    """Draw one fitted curve on a matplotlib Axes."""
    e, stats, pts = curve.estimate, curve.level_stats, curve.points
    lo, hi = stats["x"].iloc[0], stats["x"].iloc[-1]
    log_x = lo > 0 and hi / lo >= 20
    rng = np.random.default_rng(0)  # a little horizontal jitter so overlapping images stay visible
    jitter = rng.uniform(-0.006, 0.006, len(pts))
    xs = pts["x"] * (1 + 3 * jitter) if log_x else pts["x"] + jitter * (hi - lo)
    for _, one in pts.assign(xs=xs).sort_values("x").groupby("image_id"):
        ax.plot(one["xs"], one["value"], "-", color="0.6", lw=0.5, alpha=0.5, zorder=1)
    ax.scatter(xs, pts["value"], s=6, color="0.55", alpha=0.45, linewidths=0, label="per image", zorder=2)
    ax.fill_between(stats["x"], stats["q25"], stats["q75"], color="tab:blue", alpha=0.2, label="IQR")
    ax.plot(stats["x"], stats["median"], "o-", color="tab:blue", ms=3.5, lw=1.2, label="median")
    if log_x:
        ax.set_xscale("log")
        crowded = np.any(np.diff(np.log(stats["x"])) < np.log(1.4))  # e.g. 20 and 25 on a 1-50 axis
        ax.set_xticks(stats["x"], [f"{v:g}" for v in stats["x"]], rotation=90 if crowded else 0,
                      fontsize=7 if crowded else None)
        ax.minorticks_off()
    grid = np.geomspace(lo, hi, 400) if log_x else np.linspace(lo, hi, 400)
    ax.plot(grid, e(grid), color="tab:red", lw=2, label="fit")
    for name, (px, py) in (("A", (e.ax, e.ay)), ("B", (e.bx, e.by))):
        cx, cy = curve.ci[name.lower() + "x"], curve.ci[name.lower() + "y"]
        xerr = None if np.isnan(cx[0]) else [[max(px - cx[0], 0)], [max(cx[1] - px, 0)]]
        yerr = None if np.isnan(cy[0]) else [[max(py - cy[0], 0)], [max(cy[1] - py, 0)]]
        ax.errorbar([px], [py], xerr=xerr, yerr=yerr, fmt="s", color="black", ms=5, capsize=3, zorder=5)
        ax.annotate(f"{name} ({px:.4g}, {py:.4g})", (px, py), textcoords="offset points",
                    xytext=(6, -12 if name == "A" and not curve.higher_is_better else 6), fontsize=7)
    stop = curve.stop
    ax.axvline(stop["x"], color="tab:green", ls=":", lw=1.2, label=f"stop: {stop['steps']} steps")
    labels = [flag_label(curve, f) for f in curve.flags]
    if labels:
        ax.text(0.98, 0.02 if curve.higher_is_better else 0.98, "\n".join(labels), transform=ax.transAxes,
                ha="right", va="bottom" if curve.higher_is_better else "top", fontsize=7, color="tab:red")
    better = "higher" if curve.higher_is_better else "lower"
    ax.set_xlabel(X_UNITS[x])
    ax.set_ylabel(f"{curve.key['metric']} (unitless, {better} is better)")
    ax.set_title(title or curve.key["metric"], fontsize=10)
    r2 = f"R² within {curve.r2_within:.2f} · pooled {curve.r2_pooled:.2f} · medians {curve.r2_medians:.2f}"
    ax.text(0.02, 0.98 if curve.higher_is_better else 0.02, r2, transform=ax.transAxes,
            ha="left", va="top" if curve.higher_is_better else "bottom", fontsize=7)
    ax.grid(alpha=0.3)


def plot_curve(curve: CurveFit, path: Path, x: str = "steps") -> Path:
    """One curve as a PNG."""
    key = curve.key
    fig, ax = plt.subplots(figsize=(6, 4.2), dpi=110)
    draw_curve(ax, curve, x, title=f"{key['metric']} · {panel_title(key)}")
    ax.legend(fontsize=7, loc="center right")
    fig.subplots_adjust(left=0.12, right=0.97, bottom=0.12, top=0.92)  # fixed margins: tight_layout costs a draw
    save_figure(fig, path)
    plt.close(fig)
    return path


def panel_metrics(curves: list[CurveFit]) -> list[str]:
    """The metrics a panel shows, in order: the six of ``core.curve_keys.METRIC_NAMES`` (always, so panels line
    up), then any other metric the curves have, sorted by name."""
    extra = sorted({c.key["metric"] for c in curves} - set(curve_keys.METRIC_NAMES))
    return [*curve_keys.METRIC_NAMES, *extra]


PANEL_COLUMNS = 3
PANEL_ROW_INCHES = 3.75


def plot_panel(curves: list[CurveFit], path: Path, x: str = "steps") -> Path:
    """One panel of every metric (``panel_metrics``) of one model × mask × sampler × jump setting, three to a
    row."""
    by_metric = {c.key["metric"]: c for c in curves}
    names = panel_metrics(curves)
    rows = math.ceil(len(names) / PANEL_COLUMNS)
    height = PANEL_ROW_INCHES * rows
    fig, axes = plt.subplots(rows, PANEL_COLUMNS, figsize=(13, height), dpi=100, squeeze=False)
    for i, ax in enumerate(axes.ravel()):
        if i >= len(names):
            ax.set_axis_off()
        elif names[i] in by_metric:
            draw_curve(ax, by_metric[names[i]], x)
        else:
            ax.set_axis_off()
            ax.set_title(f"{names[i]}: not measured", fontsize=10)
    key = curves[0].key
    fig.suptitle(f"{panel_title(key)}: quality against compute (grey: images, band: IQR, red: four-parameter "
                 "fit, green: stop)", fontsize=11)
    # fixed margins in inches (tight_layout costs a draw): the title's 0.68 in at the top, 0.53 in below
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.53 / height, top=1 - 0.68 / height, wspace=0.28,
                        hspace=0.32)
    save_figure(fig, path)
    plt.close(fig)
    return path


def plot_all(curves: list[CurveFit], folder: Path, x: str = "steps") -> list[Path]:
    """Every curve's PNG and one panel per model × mask × sampler × jump setting, in ``folder``. Returns the
    paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written, groups = [], {}
    for curve in curves:
        stem = curve_stem(curve.key)
        groups.setdefault(stem, []).append(curve)
        written.append(plot_curve(curve, folder / f"{stem}_{_slug(curve.key['metric'])}.png", x))
    for stem, group in groups.items():
        written.append(plot_panel(group, folder / f"{stem}_panel.png", x))
    return written


def sampler_overlay(medians, title: str):
    """Each sampler setting's median curve of every metric on one UNet-calls axis (log when the calls span a
    factor of 20 or more), three metrics to a row; ``medians`` is ``analysis.sampler_medians``' table for one
    model × mask (columns metric, setting, unet_calls, value, higher_is_better). Returns the figure (the caller
    saves or embeds it, then ``close``s it)."""
    present = set(medians["metric"])
    names = [m for m in curve_keys.METRIC_NAMES if m in present] + sorted(present - set(curve_keys.METRIC_NAMES))
    rows = math.ceil(len(names) / PANEL_COLUMNS)
    height = PANEL_ROW_INCHES * rows
    fig, axes = plt.subplots(rows, PANEL_COLUMNS, figsize=(13, height), dpi=90, squeeze=False)
    settings = sorted(set(medians["setting"]))
    colours = {s: f"C{i % 10}" for i, s in enumerate(settings)}
    for ax, metric in zip(axes.ravel(), [*names, *[None] * (rows * PANEL_COLUMNS - len(names))], strict=True):
        if metric is None:
            ax.set_axis_off()
            continue
        these = medians[medians["metric"] == metric]
        for setting in settings:
            one = these[these["setting"] == setting].sort_values("unet_calls")
            if len(one):
                ax.plot(one["unet_calls"], one["value"], "o-", ms=3.5, lw=1.3, color=colours[setting], label=setting)
        calls = these["unet_calls"].to_numpy(float)
        if calls.min() > 0 and calls.max() / calls.min() >= 20:
            ax.set_xscale("log")
        better = "higher" if bool(these["higher_is_better"].iloc[0]) else "lower"
        ax.set_title(metric, fontsize=10)
        ax.set_xlabel(X_UNITS["unet_calls"])
        ax.set_ylabel(f"median {metric} ({better} is better)")
        ax.grid(alpha=0.3)
    fig.suptitle(f"{title}: samplers against compute (median over images)", fontsize=11)
    handles = [plt.Line2D([], [], color=colours[s], marker="o", ms=3.5, lw=1.3) for s in settings]
    # one legend for all panels, under the title (inside a panel it would hide curves or the axis label)
    fig.legend(handles, settings, loc="upper center", ncol=min(len(settings), 4), fontsize=8, frameon=False,
               bbox_to_anchor=(0.5, 1 - 0.4 / height))
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.53 / height, top=1 - 0.95 / height, wspace=0.28,
                        hspace=0.4)
    return fig


def close(fig) -> None:
    """Free a figure's memory (pyplot keeps every open figure)."""
    plt.close(fig)
