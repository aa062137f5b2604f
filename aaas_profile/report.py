"""One self-contained HTML page of a run folder: configuration, image grid, metric curves and fits, simulator.

Why one module of some 540 lines: it is one page. Every section renders into the same HTML skeleton with the same
few helpers (tables, figures, data URIs) and reads what the run folder holds; the numbers behind the sections
are computed in ``analysis`` and the fit, so what is left here is markup, and splitting it by section would
scatter one page's layout over files that each import all the helpers.

Every image is embedded as a data URI, so ``report.html`` can be mailed, archived or printed on its own; the
page loads nothing from the network (no fonts, scripts or style sheets from elsewhere). Each section appears
only when the run folder holds its data:

- where to stop (first): per metric, the step count beyond which the per-step median gains less than 1 % of
  the curve's range, its UNet calls and seconds per image, the curve's flags from ``fit.json``, and the
  image grid at those step counts (``fit.stop_point``; from ``scores/`` alone when there is no fit yet);
- run: ``manifest.json`` and ``config.toml`` (model, device, versions, time taken, UNet calls);
- outputs: ``images/<cell>/`` as the paper's Figure 2 (original, corrupted, the output at each step count);
- quality: the sweep's per-step medians from ``scores/``, the 2×3 metric panels from ``plots/*_panel.png``
  (Figure 3) and the (Ax, Ay, Bx, By) table from ``fit.json``;
- samplers (a run with more than one): per model × mask, each sampler's median curve of every metric on one
  UNet-calls axis, the best sampler at each UNet-call budget (``analysis.best_by_budget``), and the saved outputs
  side by side at comparable budgets (``images/<cell>/steps-<n>.png`` for RePaint,
  ``images/<cell>/<sampler>-steps-<n>.png`` for another sampler);
- simulator: each ``sim/<policy>/summary.json`` as a table, with ``figure5.png`` and ``figure6.png``.

Tables show model, sampler and jumps columns where the run has more than one of them; fit.json is read once,
through ``fitfile.load``. The numbers behind the tables that no other stage computes are ``analysis``'s; this
module turns tables into HTML.
"""

from __future__ import annotations

import base64
import html
import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from aaas_profile import analysis, fitfile, runs, stored
from aaas_profile import fit as fit_mod
from aaas_profile.atomic import write_atomic
from aaas_profile.core import acceptance, curve_keys
from aaas_profile.errors import UserError, check_writable

STYLE = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1b1b1b; max-width: 1180px;
       margin: 2rem auto; padding: 0 1rem; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; } h2 { border-bottom: 1px solid #ccc; margin-top: 2.2rem; }
.muted { color: #666; } table { border-collapse: collapse; margin: .6rem 0 1rem; }
th, td { border: 1px solid #d6d6d6; padding: .25rem .55rem; text-align: right; vertical-align: top; }
table { max-width: 100%; display: block; overflow-x: auto; } figcaption, p { overflow-wrap: anywhere; }
td.text, th.text { overflow-wrap: break-word; } td.flag { min-width: 16rem; }
.panels { display: grid; grid-template-columns: repeat(auto-fit, minmax(30rem, 1fr)); gap: 0 1rem; }
.recommend { font-size: 1.05rem; } .recommend li { margin: .2rem 0; }
th { background: #f3f3f3; } td.text, th.text { text-align: left; }
figure { margin: .8rem 0 1.4rem; } figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { color: #555; font-size: .9rem; }
.grid td { padding: 2px; border: none; text-align: center; font-size: .8rem; }
.grid img { width: 96px; height: 96px; image-rendering: pixelated; display: block; }
.flag { color: #a40000; } .lead { background: #f7f9fc; border: 1px solid #d8e0ec; padding: .2rem 1rem .6rem; }
@media print { body { margin: 0; max-width: none; } h2 { break-after: avoid; } figure, table { break-inside: avoid; } }
"""


class ReportError(UserError, ValueError):
    """A folder that cannot be reported on; the message is one line."""


def data_uri(path: Path) -> str:
    """``path`` (PNG) as a data URI."""
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _table(frame: pd.DataFrame, text_columns: tuple[str, ...] = (), flag_column: str | None = None) -> str:
    """An HTML table; ``flag_column``'s cells are shown as warnings unless they read "–"."""
    head = "".join(f'<th class="{"text" if c in text_columns else ""}">{html.escape(str(c))}</th>'
                   for c in frame.columns)
    rows = []
    for row in frame.itertuples(index=False):
        cells = []
        for column, value in zip(frame.columns, row, strict=True):
            text = f"{value:.4g}" if isinstance(value, float) else str(value)
            css = "text" if column in text_columns else ""
            if column == flag_column and text != "–":
                css += " flag"
            cells.append(f'<td class="{css}">{html.escape(text)}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _readable(cells: dict[str, str]) -> dict[str, str]:
    """``curve_keys.setting_cells`` for a page: a sampler's JSON parameters as words that can wrap
    ("dpm-solver (algorithm_type dpmsolver++, solver_order 2)"), never a bare "{}"."""
    out = dict(cells)
    if "sampler" in out:
        name, _, params = out["sampler"].partition(" ")
        try:
            values = json.loads(params) if params else {}
        except json.JSONDecodeError:
            values = None
        if isinstance(values, dict):
            out["sampler"] = name + (f" ({', '.join(f'{k} {v}' for k, v in values.items())})" if values else "")
    return out


def _figure(path: Path, caption: str) -> str:
    return (f'<figure><img src="{data_uri(path)}" alt="{html.escape(caption)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def run_section(run: Path, scores: pd.DataFrame | None) -> str:
    from aaas_profile import sweep as sweep_mod  # its config checks; imported here, the report stays light

    manifest = runs.Manifest(run / "manifest.json").read()
    config_path = run / "config.toml"
    config = sweep_mod.read_run_config(config_path) if config_path.exists() else {}
    env, model = manifest.get("environment", {}), manifest.get("model", {})
    invocations = manifest.get("invocations", [])
    wall = sum(i.get("wall_s", 0.0) for i in invocations)
    facts = [
        ("model", f"{model.get('name', config.get('model', '?'))} ({model.get('source', '?')}, "
                  f"{model.get('resolution', '?')} px, licence {model.get('licence', '?')})"),
        ("weights sha256", model.get("weights_sha256", "?")),
        ("device", f"{env.get('device', '?')} ({env.get('device_name', '?')}), dtype {manifest.get('dtype', '?')}"),
        ("versions", ", ".join(f"{k} {env[k]}" for k in ("aaas_profile", "python", "torch", "diffusers", "piq")
                               if env.get(k))),
        ("git", env.get("git") or "not a checkout"),
        ("sweep time", f"{wall:.1f} s over {len(invocations)} invocation(s)"),
    ]
    if scores is not None and len(scores):
        cells = scores.drop_duplicates(list(runs.CELL_KEY))
        facts.append(("cells", f"{len(cells)} (image × mask × seed × steps), {cells['image_id'].nunique()} images"))
        facts.append(("UNet image-forwards", f"{int(cells['unet_calls'].sum()):,}"))
    rows = "".join(f'<tr><th class="text">{html.escape(k)}</th><td class="text">{html.escape(str(v))}</td></tr>'
                   for k, v in facts)
    config_rows = "".join(
        f'<tr><th class="text">{html.escape(k)}</th><td class="text">{html.escape(str(v))}</td></tr>'
        for k, v in config.items()
    )
    section = f"<h2>Run</h2><table>{rows}</table>"
    if config_rows:
        section += f"<details><summary>configuration (config.toml)</summary><table>{config_rows}</table></details>"
    return section


def _grid_table(run: Path, max_cells: int = 6, only_steps: set[int] | None = None) -> str:
    folders = sorted(p for p in (run / "images").glob("*") if p.is_dir())[:max_cells]
    if not folders:
        return ""
    # One sampler setting's outputs (runs.output_image_name): the first by name that was saved; a run with
    # several shows the others side by side in the samplers section.
    saved = [(parsed, p.stem) for f in folders for p in f.glob("*steps-*.png")
             if (parsed := runs.parse_output_image_name(p.name)) is not None]
    if saved:
        first = min(parsed[:2] for parsed, _ in saved)
        saved = [(parsed, stem) for parsed, stem in saved if parsed[:2] == first]
    by_steps = {parsed[2]: stem for parsed, stem in saved}
    numbers = sorted(by_steps) if only_steps is None else [n for n in sorted(by_steps) if n in only_steps]
    steps = [by_steps[n] for n in numbers]
    header = "<tr><td></td><td>original</td><td>corrupted</td>" + "".join(
        f"<td>{n} step{'' if n == 1 else 's'}</td>" for n in numbers) + "</tr>"
    rows = []
    for folder in folders:
        cells = [f'<td class="text">{html.escape(folder.name)}</td>']
        for name in ("original", "corrupted", *steps):
            path = folder / f"{name}.png"
            cells.append(f'<td><img src="{data_uri(path)}" alt="{html.escape(folder.name)} {name}"></td>'
                         if path.exists() else "<td>–</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table class='grid'>{header}{''.join(rows)}</table>"


def grid_section(run: Path, max_cells: int = 6) -> str:
    """The paper's Figure 2: per saved cell, the original, the corrupted input and each step count's output."""
    table = _grid_table(run, max_cells)
    if not table:
        return ""
    return ("<h2>Outputs across step counts</h2><p class='muted'>Grey in the corrupted input marks the pixels "
            f"to generate (mask 0); the rest is kept.</p>{table}")


def stop_section(run: Path, scores: pd.DataFrame | None, document: dict | None = None) -> str:
    """The page's lead: where each metric stops paying for steps, with the image grid at those steps.
    ``document``: the run's fit.json as ``fitfile.load`` reads it, or None."""
    curves, source = analysis.stop_points(scores, document)
    if not curves:
        return ""
    rows = []
    varying = curve_keys.varying_settings(curves)
    for c in curves:
        s = c["stop"]
        # the short form of each flag: the full messages are in the fit table further down
        flags = [f.get("summary") or f.get("message") or f.get("code", "") for f in c.get("flags") or []]
        flat = acceptance.has_no_stop(c.get("flags"))  # a curve steps do not improve has no place to stop
        if s.get("top_of_grid") and not flat:
            flags.append("still gaining at the top of the grid")
        r2 = c.get("r2")
        ci = s.get("ci") or [None, None]
        interval = f" [{ci[0]:g}–{ci[1]:g}]" if None not in ci and ci[0] == ci[0] else ""
        rows.append({
            **_readable(curve_keys.setting_cells(c, varying)),
            "mask": c.get("mask", "?"),
            "metric": f"{c.get('metric', '?')} {'↑' if c.get('higher_is_better', True) else '↓'}",
            "stop at steps": "–" if flat else f"{s['steps']}{interval}",
            "UNet calls": "–" if flat or s.get("unet_calls") is None else f"{s['unet_calls']:,.0f}",
            "s per image": "–" if flat or s.get("wall_s") is None else f"{s['wall_s']:.3g}",
            "median there": f"{s['median']:.4g}", "best median": f"{s['best_median']:.4g}",
            "R² within": (f"{r2['within_image']:.2f}" if isinstance(r2, dict) and r2.get("within_image") is not None
                          else "–"),
            "flags": "; ".join(flags) or "–",
        })
    frame = pd.DataFrame(rows)
    table = _table(frame, (*curve_keys.SETTING_COLUMNS, "mask", "metric", "flags"), flag_column="flags")
    steps = {int(c["stop"]["steps"]) for c in curves if not acceptance.has_no_stop(c.get("flags"))}
    levels = sorted({int(v) for c in curves for v in (c.get("levels") or {}).get("steps", [])})
    if scores is not None and len(scores):
        levels = sorted({int(v) for v in scores["steps"].unique()})
    if levels:
        steps |= {levels[0], levels[-1]}
    grid = _grid_table(run, max_cells=4, only_steps=steps)
    recommendations = (document or {}).get("recommendations") or fit_mod.recommendations(curves)
    advice = "".join(
        f"<li><b>{html.escape(' · '.join(_recommendation_label(r['group'], varying)))}</b>: "
        f"{html.escape(r['text'])}</li>" for r in recommendations)
    return ("<section class='lead'><h2>Where to stop paying for steps</h2>"
            f"<ul class='recommend'>{advice}</ul>"
            "<p>Per metric, the step count beyond which a further gain of 1 % of the curve's range (best minus "
            "worst per-step median) shows in fewer than 95 % of the bootstrap resamples of images, with the "
            "interval of the resamples' stops in brackets: more steps cost UNet calls and seconds but buy "
            f"nothing the images can show. Seconds are per image as measured in this run. Source: "
            f"{html.escape(source)}.</p>"
            + table
            + (f"<h3>Outputs at those step counts (and the grid's ends)</h3>{grid}" if grid else "")
            + "</section>")


def _recommendation_label(group: dict, varying: list[str]) -> list[str]:
    """A recommendation's group in words: the mask, and the model and sampler setting where the run has several."""
    cells = _readable(curve_keys.setting_cells(group, varying))
    return [*([cells.pop("model")] if "model" in cells else []), f"mask {group.get('mask', '?')}",
            *(v for v in cells.values() if v != "–")]


def quality_section(run: Path, scores: pd.DataFrame | None, document: dict | None = None) -> str:
    parts = []
    if scores is not None and len(scores):
        # Two models, samplers or resampling settings in one run are shown apart, never pooled into one median.
        keys = list(curve_keys.SETTING_KEYS)
        medians = (scores.groupby([*keys, "mask", "metric", "steps"])["value"].median().unstack("steps")
                   .reset_index())
        varying = curve_keys.varying_settings(medians.to_dict("records"))
        settings = pd.DataFrame([_readable(curve_keys.setting_cells(row, varying))
                                 for row in medians[keys].to_dict("records")], index=medians.index)
        medians = pd.concat([settings, medians.drop(columns=keys)], axis=1)
        medians.columns = [f"{c} steps" if not isinstance(c, str) else c for c in medians.columns]
        n_images = scores["image_id"].nunique()
        parts.append(f"<h3>Median score per step count</h3><p class='muted'>Medians over {n_images} images and "
                     f"{scores['seed'].nunique()} seed(s); every mask and setting apart.</p>"
                     + _table(medians.astype(object).where(medians.notna(), "–"),
                              (*curve_keys.SETTING_COLUMNS, "mask", "metric")))
    panels = [_figure(panel, f"Every metric against steps with the fitted four-parameter model ({panel.stem})")
              for panel in sorted((run / "plots").glob("*_panel.png"))]
    if panels:  # side by side where the page is wide enough: a run with several masks and samplers has many
        parts.append(f"<div class='panels'>{''.join(panels)}</div>")
    if document is not None:
        fit = document
        rows = []
        varying = curve_keys.varying_settings(fit.get("curves", []))
        for curve in fit.get("curves", []):
            row = {**_readable(curve_keys.setting_cells(curve, varying)), "mask": curve.get("mask", "?"),
                   "metric": curve.get("metric", "?")}
            for name in ("ax", "ay", "bx", "by"):
                part = curve.get(name)
                if part is None:  # a hand-written profile: scale01 only
                    row[name.capitalize()] = "–"
                    continue
                low, high = part.get("ci") or (None, None)
                row[name.capitalize()] = (f"{part['value']:.4g}" + (f" [{low:.4g}–{high:.4g}]"
                                                                     if low is not None and high is not None else ""))
            r2 = curve.get("r2")
            # one column for the three R² (schema 2 and later; schema 1 has the pooled one only): the page is
            # narrow enough for a run with several samplers
            if isinstance(r2, dict):
                row["R² within / pooled / medians"] = " / ".join(
                    f"{r2[name]:.2f}" if r2.get(name) is not None else "–" for name in ("within_image", "pooled",
                                                                                         "medians"))
            else:
                row["R² within / pooled / medians"] = f"– / {r2:.2f} / –" if r2 is not None else "–"
            effect = curve.get("effect") or {}
            p, trend = effect.get("p_value"), effect.get("trend")
            row["effect p (trend)"] = ("–" if p is None else f"{p:.2g}"
                                       + (f" ({trend:+.2f})" if trend is not None else ""))
            # the short form of each flag (fit.json and the fit's own output hold the full message)
            row["flags"] = "; ".join(f.get("summary") or f.get("message", "") for f in curve.get("flags") or []) or "–"
            rows.append(row)
        if rows:
            unit = fit.get("x", {}).get("unit", "steps")
            model = (fit.get("fit_model") or {}).get("name", "pooled")
            level = fit.get("bootstrap", {}).get("level", acceptance.INTERVAL_LEVEL)
            parts.append(f"<h3>Fitted (Ax, Ay, Bx, By), x in {html.escape(unit)}, "
                         f"{level:.0%} bootstrap intervals over images, "
                         f"model {html.escape(model)}</h3>"
                         + _table(pd.DataFrame(rows), (*curve_keys.SETTING_COLUMNS, "mask", "metric", "flags"),
                                  flag_column="flags"))
    return "<h2>Quality against steps</h2>" + "".join(parts) if parts else ""


# ---------------------------------------------------------------------------------------------------------
# Samplers compared on one compute axis (a run with more than one sampler)
# ---------------------------------------------------------------------------------------------------------

def _png_uri(fig) -> str:
    """A matplotlib figure as a PNG data URI (drawn in memory: the report writes no file but itself)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def walk_label(sampler: str, respacing: str) -> str:
    """A sampler on a walk, as the side-by-side outputs name it: "ddim", "repaint @250"."""
    return sampler if respacing == curve_keys.STEPS_WALK else f"{sampler} @{respacing}"


def _saved_outputs(folder: Path) -> dict[str, dict[int, Path]]:
    """A cell folder's saved outputs: ``walk_label`` → step count → PNG (``runs.output_image_name``)."""
    found: dict[str, dict[int, Path]] = {}
    for path in folder.glob("*steps-*.png"):
        parsed = runs.parse_output_image_name(path.name)
        if parsed is not None:
            found.setdefault(walk_label(parsed[0], parsed[1]), {})[parsed[2]] = path
    return found


def _side_by_side(run: Path, scores: pd.DataFrame, max_cells: int = 4, max_budgets: int = 6) -> str:
    """Saved outputs of each sampler for the same cell at comparable budgets: per budget B (UNet calls per image,
    from the saved step counts of every sampler), each sampler's output at its largest saved step count that
    costs at most B, as in ``analysis.best_by_budget``."""
    folders = sorted(p for p in (run / "images").glob("*") if p.is_dir())[:max_cells]
    # file names carry the sampler's name and walk only
    calls = scores.groupby(["sampler", "respacing", "steps"])["unet_calls"].median()
    calls.index = pd.MultiIndex.from_tuples([(walk_label(s, r), n) for s, r, n in calls.index])
    saved = {folder: _saved_outputs(folder) for folder in folders}
    samplers = sorted({s for found in saved.values() for s in found})
    if len(samplers) < 2:
        return ""
    cost = {s: {n: float(calls[(s, n)]) for found in saved.values() for n in found.get(s, {}) if (s, n) in calls}
            for s in samplers}
    budgets = sorted({c for by_steps in cost.values() for c in by_steps.values()})
    if len(budgets) > max_budgets:  # evenly spread picks, both ends kept
        budgets = [budgets[round(i * (len(budgets) - 1) / (max_budgets - 1))] for i in range(max_budgets)]
    parts = []
    for folder, found in saved.items():
        header = "<tr><td></td>" + "".join(f"<td>≤ {b:,.0f} UNet calls</td>" for b in budgets) + "</tr>"
        rows = []
        for sampler in samplers:
            cells = [f'<td class="text">{html.escape(sampler)}</td>']
            for budget in budgets:
                affordable = [n for n, c in cost[sampler].items() if c <= budget and n in found.get(sampler, {})]
                if not affordable:
                    cells.append("<td>–</td>")
                    continue
                n = max(affordable, key=lambda s: (cost[sampler][s], s))
                label = f"{sampler}, {n} step{'' if n == 1 else 's'}, {cost[sampler][n]:,.0f} calls"
                cells.append(f'<td><img src="{data_uri(found[sampler][n])}" alt="{html.escape(folder.name)} '
                             f'{html.escape(label)}"><br>{n} st. · {cost[sampler][n]:,.0f}</td>')
            rows.append("<tr>" + "".join(cells) + "</tr>")
        inputs = [f'<td><img src="{data_uri(folder / name)}" alt="{html.escape(folder.name)} {name[:-4]}">'
                  f'<br>{name[:-4]}</td>' for name in ("original.png", "corrupted.png") if (folder / name).exists()]
        inputs += ["<td></td>"] * (len(budgets) - len(inputs))  # one image a cell, side by side like the outputs
        parts.append(f"<h4>{html.escape(folder.name)}</h4><table class='grid'><tr><td class='text'>input</td>"
                     f"{''.join(inputs)}</tr>{header}{''.join(rows)}</table>")
    return ("<h3>Outputs side by side at comparable budgets</h3><p class='muted'>Per saved cell and UNet-call "
            "budget, each sampler's output at its largest saved step count costing at most that many UNet calls "
            "per image (under each: steps · UNet calls); – where it has none within the budget.</p>" + "".join(parts))


def sampler_section(run: Path, scores: pd.DataFrame | None) -> str:
    """A run with more than one sampler: per model × mask, each sampler's median curve of every metric on one
    UNet-calls axis, the best sampler at each budget (``analysis.best_by_budget``), and saved outputs side by side."""
    if scores is None or not len(scores):
        return ""
    if len(scores[["sampler", "sampler_params", "respacing"]].drop_duplicates()) < 2:
        return ""
    medians = analysis.sampler_medians(scores)
    from aaas_profile import plots  # here: matplotlib only for a run with several samplers

    best = analysis.best_by_budget(medians)
    parts = []
    for (model, mask), group in medians.groupby(["model", "mask"], sort=True):
        fig = plots.sampler_overlay(group, f"{model} · mask {mask}")
        parts.append(f'<figure><img src="{_png_uri(fig)}" alt="samplers: {html.escape(model)} {html.escape(mask)}">'
                     f"<figcaption>{html.escape(model)} · mask {html.escape(mask)}: the median over images of "
                     "each metric at each step count, against the median UNet calls per image of those cells "
                     "(log axis), one line per sampler.</figcaption></figure>")
        plots.close(fig)
        these = best[(best["model"] == model) & (best["mask"] == mask)]
        table = these.assign(cell=[f"{b} ({v:.4g})" for b, v in zip(these["best"], these["value"], strict=True)],
                             metric=[f"{m} {'↑' if h else '↓'}" for m, h in
                                     zip(these["metric"], these["higher_is_better"], strict=True)])
        wide = table.pivot(index="budget", columns="metric", values="cell").fillna("–").reset_index()
        wide["budget"] = [f"{b:,.0f}" for b in wide["budget"]]
        wide = wide.rename(columns={"budget": "UNet calls ≤"})
        wide.columns.name = None
        parts.append(f"<h3>Best sampler per UNet-call budget · {html.escape(model)} · mask {html.escape(mask)}</h3>"
                     "<p class='muted'>At each budget B (every UNet-call count per image at which some sampler was "
                     "measured), the sampler whose best per-step median over images among its step counts costing "
                     "at most B UNet calls is best: highest for a metric marked ↑, lowest for ↓ (in brackets). A "
                     "sampler with no step count within B is not compared at B; ties are joined by =.</p>"
                     + _table(wide, tuple(c for c in wide.columns if c != "UNet calls ≤")))
    parts.append(protocol_section(medians))
    parts.append(_side_by_side(run, scores))
    return "<h2>Samplers on one compute axis</h2>" + "".join(parts)


# The follow-up's Table III (Du et al., IEEE TMC 2024) on the agod preset, seed 0: each policy's best test
# episode during training (tianshou's "best reward"), as published. Our rows beside it use the same preset and
# seed; the convention differs from our mean over evaluation episodes, so both are shown (docs/leaderboard.md).
def leaderboard_section(run: Path) -> str:
    """``sim/leaderboard.parquet`` (the table, also written as .csv) and its figure; on the agod preset with seed
    0 among the seeds, Table III of the follow-up beside our seed-0 rows, as best episode and as mean."""
    path = run / "sim" / "leaderboard.parquet"
    if not path.exists():
        return ""
    advice = "run simulate --policy … --seeds … again into this folder"
    table = stored.read_parquet(path, stored.LEADERBOARD_COLUMNS, advice)
    shown = table.copy()
    for column in ("reward_mean", "reward_std", "best_episode", "pct_oracle_mean", "pct_oracle_std", "pct_bound",
                   "crashes"):
        shown[column] = shown[column].map(lambda v: f"{v:.1f}")
    for column in ("steps_to_97", "seconds_to_97"):
        shown[column] = [("" if not r else "not reached" if v != v else f"{v:.0f}")
                         for v, r in zip(shown[column], shown["reached_97"], strict=True)]
    parts = ["<h3>Leaderboard</h3><p class='muted'>Every policy on the same seeds and task streams: reward mean ± "
             "std over evaluation episodes and seeds, best episode, % of the greedy oracle (mean ± std over seeds), "
             "% of the hindsight bound, crashes per episode, and the training cost until the validated greedy "
             "reward first reached 97 % of the oracle's (seeds reached, mean env steps and seconds).</p>",
             _table(shown, tuple(shown.columns))]
    if (run / "sim" / "leaderboard.png").exists():
        parts.append(_figure(run / "sim" / "leaderboard.png", "% of the greedy oracle, mean ± std over seeds"))
    episodes_path = run / "sim" / "leaderboard_episodes.parquet"
    summaries = sorted((run / "seed-0" / "sim").glob("*/summary.json")) if (run / "seed-0").exists() else []
    agod = summaries and (stored.read_json(summaries[0], stored.SimSummary, advice).get("asps") or "").startswith(
        "agod preset")
    if agod and episodes_path.exists():
        episodes = stored.read_parquet(episodes_path, stored.LEADERBOARD_EPISODE_COLUMNS, advice).query("seed == 0")
        rows = []
        for policy, published in analysis.TABLE_III.items():
            mine = episodes[episodes["policy"] == policy]["reward"]
            rows.append({"policy": analysis.TABLE_III_NAMES.get(policy, policy),
                         "Table III (best test episode)": published,
                         "ours: best episode": f"{mine.max():.1f}" if len(mine) else "–",
                         "ours: mean ± std": f"{mine.mean():.1f} ± {mine.std(ddof=0):.1f}" if len(mine) else "–"})
        frame = pd.DataFrame(rows)
        parts.append("<h3>The follow-up's Table III beside ours (agod preset, seed 0)</h3><p class='muted'>"
                     "Table III quotes each policy's best test episode during training; our best episode is the "
                     "highest of the evaluation episodes, our mean their average.</p>"
                     + _table(frame, tuple(frame.columns)))
    return "".join(parts)


def protocol_section(medians: pd.DataFrame) -> str:
    """A run with more than one walk (``--respacing 250,steps``): per metric, the UNet calls each sampler
    setting needs to come within ``analysis.NEAR_BEST`` of its best median (``analysis.protocol_costs``), side
    by side: how much compute the paper's protocol spends for the quality a strided walk gets."""
    if medians["respacing"].nunique() < 2:
        return ""
    costs = analysis.protocol_costs(medians)
    parts = []
    for (model, mask), group in costs.groupby(["model", "mask"], sort=True):
        group = group.assign(cell=[f"{c:,.0f} ({s} st., best {b:.4g})" for c, s, b in
                                   zip(group["unet_calls"], group["steps"], group["best"], strict=True)])
        wide = group.pivot(index="metric", columns="setting", values="cell").fillna("–")
        names = curve_keys.METRIC_NAMES
        order = [m for m in names if m in wide.index] + [m for m in wide.index if m not in names]
        wide = wide.loc[order].reset_index()
        wide.columns.name = None
        parts.append(f"<h4>{html.escape(model)} · mask {html.escape(mask)}</h4>"
                     + _table(wide, tuple(wide.columns)))
    return (f"<h3>Compute to come within {analysis.NEAR_BEST:.0%} of the best median, per walk</h3>"
            "<p class='muted'>Per metric and sampler setting: the fewest UNet calls per image (median over its "
            "cells; the step count in brackets) at which the median over images is within "
            f"{analysis.NEAR_BEST:.0%} of that setting's own best median. The paper's protocol (@250: t_T on the "
            "250-step grid, resampling included) against a strided walk (steps spread over the whole training "
            "range): what the quality each reaches costs in compute.</p>" + "".join(parts))


def simulator_section(run: Path) -> str:
    parts = [leaderboard_section(run)]
    for folder in sorted(p for p in (run / "sim").glob("*") if p.is_dir()):
        summary_path = folder / "summary.json"
        if summary_path.exists():
            summary = stored.read_json(summary_path, stored.SimSummary, "run `aaas-profile simulate` again with "
                                       f"--out {run} to rewrite it, or move {folder} out of the run folder")
            rows = []
            for policy, columns in summary.get("policies", {}).items():
                row = {"policy": policy}
                for column, stats in columns.items():
                    mean, std = stats.get("mean"), stats.get("std")
                    row[column] = "–" if mean is None else f"{mean:.4g} ± {std or 0:.2g}"
                rows.append(row)
            optimum = (summary.get("optimum") or {}).get("mean")
            note = (f"{summary.get('episodes', '?')} evaluation episodes, seed {summary.get('seed', '?')}, ASPs: "
                    f"{summary.get('asps', '?')}" + (f"; hindsight optimum {optimum:.4g}" if optimum else ""))
            parts.append(f"<h3>{html.escape(folder.name)}</h3><p class='muted'>{html.escape(note)}</p>")
            if rows:
                parts.append(_table(pd.DataFrame(rows), tuple(pd.DataFrame(rows).columns)))
        for name, caption in (("figure5.png", "Learning curve against the baselines (paper's Figure 5)"),
                              ("figure6.png", "Crashes and mean reward per finished task (paper's Figure 6)")):
            if (folder / name).exists():
                parts.append(_figure(folder / name, f"{folder.name}: {caption}"))
    return "<h2>ASP selection simulator</h2>" + "".join(parts) if any(parts) else ""


def build(run: Path) -> str:
    """The report page of ``run`` as HTML text. Raises ReportError for a folder with nothing to show."""
    run = Path(run)
    if not run.is_dir():
        raise ReportError(f"{run} is not a run folder")
    # read_scores gives parts from before samplers their sampler columns; every section below relies on them
    scores = runs.read_scores(run) if runs.part_files(run) else None
    document = fitfile.load(run) if (run / fitfile.NAME).exists() else None
    sections = [stop_section(run, scores, document),
                run_section(run, scores) if (run / "manifest.json").exists() else "",
                grid_section(run), quality_section(run, scores, document), sampler_section(run, scores),
                simulator_section(run)]
    if not any(sections):
        raise ReportError(f"{run} holds no manifest, scores, images, fit or simulator results to report")
    created = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>aaas-profile · {html.escape(run.name)}"
            f"</title><style>{STYLE}</style></head><body><h1>{html.escape(run.name)}</h1>"
            f"<p class='muted'>aaas-profile report, made {created} from {html.escape(str(run.resolve()))}</p>"
            + "".join(sections) + "</body></html>")


def write(run: Path, out: Path | None = None) -> Path:
    """Write ``run``/report.html (or ``out``; ``out``/report.html when ``out`` is a folder) atomically and
    return its path. Checks that the page can be written there before building it."""
    path = Path(out) if out else Path(run) / "report.html"
    if path.is_dir():
        path = path / "report.html"
    if path.parent.exists() and not path.parent.is_dir():
        raise ReportError(f"--out {out}: {path.parent} is a file, not a folder; choose another --out")
    if not path.parent.exists():
        raise ReportError(f"--out {out}: the folder {path.parent} does not exist; create it or choose another --out")
    check_writable(path.parent, "--out")
    write_atomic(path, build(run))
    return path
