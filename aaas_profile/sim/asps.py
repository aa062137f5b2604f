"""ASP sets: the paper preset drawn from a seed, a user's CSV table, or a ``fit.json`` profile.

Why one module of some 480 lines: the three sources share one ``AspSet`` and the same range checks of every
ASP field, and the profile source (most of the length) is the mapping from a fit's curves and runtime model to
ASPs, which is read as a whole.

An ASP (AIGC service provider) is a quality curve on the [0, 1] scale (the four-parameter model of docs/design.md:
``ax, ay, bx, by``; x in diffusion steps) and a ``capacity``, the total diffusion steps it runs at once.
The three sources all return an :class:`AspSet`; the environment never needs to know where one came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from aaas_profile import fitfile, limits
from aaas_profile.core.acceptance import refusal, runtime_problem, runtime_rank
from aaas_profile.core.curve_keys import STEPS_WALK
from aaas_profile.core.formulas import TASK_STEPS, paper_runtime_s, polynomial
from aaas_profile.errors import UserError, not_found

# The presets (docs/design.md, "The simulator"): the grids the authors' code draws the hidden parameters from
# (Du et al. 2023, GitHub Lizonghang/AGOD ``env/config.py`` and ``env/utils.py``).
PAPER_N_ASPS = 20
PAPER_CAPACITIES = np.arange(400, 1600, 100)  # 400, 500, …, 1500
AGOD_CAPACITIES = np.arange(400, 1000, 100)  # 400, …, 900: the follow-up's smaller grid (Du et al., TMC 2024)
PRESET_CAPACITIES = {"paper": PAPER_CAPACITIES, "agod": AGOD_CAPACITIES}
PAPER_AX = np.arange(0, 100, 10).astype(float)
PAPER_AY = np.round(np.arange(0.0, 0.5, 0.05), 2)
PAPER_BX = np.arange(150, 250, 10).astype(float)
PAPER_BY = np.round(np.arange(0.5, 1.0, 0.05), 2)
N_USERS = 1_000  # user locations the authors draw before the ASPs (unused here, but they consume the generator)

CSV_COLUMNS = ("sid", "ax", "ay", "bx", "by", "capacity")


class SimError(UserError, ValueError):
    """Input the simulator cannot use (a bad ASP table, profile or option); the message is one line."""


@dataclass(frozen=True, eq=False)
class AspSet:
    """A fixed set of ASPs: one quality curve (on the [0, 1] scale) and one capacity each.

    ``runtime_coef``, when given, is the task runtime in seconds as a polynomial in steps,
    ``c0 + c1·t + c2·t²`` (a profile's measured model, rescaled); ``None`` means the paper's runtime model.
    """

    sid: tuple[str, ...]
    ax: np.ndarray
    ay: np.ndarray
    bx: np.ndarray
    by: np.ndarray
    capacity: np.ndarray
    source: str = "custom"
    runtime_coef: tuple[float, ...] | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)
    # Where each ASP's curve comes from, one line each (a profile's model/mask/sampler/metric, a preset, a CSV
    # line); written to sim/asps.csv as its "source" column. Empty: ``source`` for every ASP.
    origin: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self):
        n = len(self.sid)
        if n == 0:
            raise SimError("the ASP set is empty")
        for name in ("ax", "ay", "bx", "by", "capacity"):
            try:
                value = np.asarray(getattr(self, name), dtype=np.float64)
            except (TypeError, ValueError, OverflowError):
                raise SimError(f"ASP column {name!r} holds a value that is not a number") from None
            if value.shape != (n,):
                raise SimError(f"ASP column {name!r} has {value.size} values for {n} ASPs")
            if not np.all(np.isfinite(value)):
                raise SimError(f"ASP column {name!r} has a missing or non-finite value")
            low, high = FIELD_RANGES[name]
            if np.any((value < low) | (value > high)):
                bad = float(value[int(np.argmax((value < low) | (value > high)))])
                raise SimError(f"ASP column {name!r} holds {bad:g}, outside [{low:g}, {high:g}]")
            if name == "capacity":  # checked as floats first: a huge capacity would wrap round in int64
                if np.any(value != np.round(value)):
                    raise SimError("every ASP capacity must be a whole number of diffusion steps")
                value = value.astype(np.int64)
            object.__setattr__(self, name, value)
        if np.any(self.capacity <= 0):
            raise SimError("every ASP capacity must be a positive number of diffusion steps")
        if np.any(self.bx <= self.ax):
            bad = self.sid[int(np.argmax(self.bx <= self.ax))]
            raise SimError(f"ASP {bad!r}: bx must be larger than ax")

    def __len__(self) -> int:
        return len(self.sid)

    def origins(self) -> list[str]:
        """Each ASP's source line (``origin``, else the set's ``source``)."""
        return list(self.origin) if len(self.origin) == len(self.sid) else [self.source] * len(self.sid)

    def table(self):
        """The set as a pandas DataFrame with the CSV columns and each row's ``source`` (read back, ignored)."""
        import pandas as pd

        return pd.DataFrame({"sid": list(self.sid), "ax": self.ax, "ay": self.ay, "bx": self.bx,
                             "by": self.by, "capacity": self.capacity, "source": self.origins()})

    def mapping(self) -> list[tuple[str, list[str]]]:
        """Which ASPs got which curve: (source line, the sids that have it), in first-seen order."""
        groups: dict[str, list[str]] = {}
        for sid, origin in zip(self.sid, self.origins(), strict=True):
            groups.setdefault(origin, []).append(sid)
        return list(groups.items())


def preset_asps(preset: str = "paper", seed: int = 0, n: int = PAPER_N_ASPS) -> AspSet:
    """A preset's ASP set, drawn exactly as the authors' code draws it, so ``seed`` 0 is their seed-0 table.

    The legacy ``numpy.random.seed(seed)`` generator (here a private ``RandomState(seed)``: the same numbers,
    no side effects on the global one) draws 1,000 user locations, each ``randint((0, 0), (100, 100),
    size=(1, 2))``; then, per ASP in order, ax, ay, bx, by, the capacity (``choice`` over each grid) and one
    more location. ``arange``'s float grids carry values such as 0.15000000000000002, so ay and by are
    rounded to 2 decimals. Presets: ``paper`` (capacities 400–1500; Du et al. 2023) and ``agod``
    (capacities 400–900; Du et al., "Diffusion-based Reinforcement Learning for Edge-enabled AI-Generated
    Content Services", IEEE TMC 2024).
    """
    if preset not in PRESET_CAPACITIES:
        raise SimError(f"unknown preset {preset!r}; choose from {', '.join(PRESET_CAPACITIES)}")
    rng = np.random.RandomState(seed)
    for _ in range(N_USERS):
        rng.randint((0, 0), (100, 100), size=(1, 2))
    ax, ay, bx, by, capacity = ([] for _ in range(5))
    for _ in range(n):
        # choice() draws an index, so the rounded grids give the authors' values, rounded
        ax.append(rng.choice(PAPER_AX))
        ay.append(rng.choice(PAPER_AY))
        bx.append(rng.choice(PAPER_BX))
        by.append(rng.choice(PAPER_BY))
        capacity.append(rng.choice(PRESET_CAPACITIES[preset]))
        rng.randint((0, 0), (100, 100), size=(1, 2))  # the ASP's location
    return AspSet(
        sid=tuple(f"asp{i:02d}" for i in range(n)),
        ax=np.asarray(ax), ay=np.asarray(ay), bx=np.asarray(bx), by=np.asarray(by),
        capacity=np.asarray(capacity), source=f"{preset} preset, seed {seed}",
    )


def paper_asps(seed: int = 0, n: int = PAPER_N_ASPS) -> AspSet:
    """The paper preset (``preset_asps("paper", seed)``): the authors' own table for ``seed``."""
    return preset_asps("paper", seed, n)


# The range of each ASP field, wherever it is read (a CSV table, a profile, the Python API): ax and bx are step
# counts, ay and by the [0, 1] quality scale, capacity the diffusion steps an ASP runs at once (1e9 is a
# million times the paper's largest; beyond int64 a capacity would wrap round).
FIELD_RANGES = {"ax": (0.0, 1e9), "bx": (0.0, 1e9), "ay": (-1e9, 1e9), "by": (-1e9, 1e9), "capacity": (1.0, 1e9)}


def read_asps_csv(path: Path) -> AspSet:
    """An ASP set from a CSV table with the columns ``sid, ax, ay, bx, by, capacity`` (one row per ASP); a
    ``source`` column (as ``write_asps_csv`` writes) is kept as each row's origin, other columns are ignored."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise SimError(not_found(path, "ASP table (CSV file)", folder=False))
    _check_fields(path)
    try:
        frame = pd.read_csv(path, index_col=False)
    except Exception as err:  # pandas raises many kinds for a malformed file
        raise SimError(f"cannot read ASP table {path}: {str(err).splitlines()[0]}") from None
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    missing = [c for c in CSV_COLUMNS if c not in frame.columns]
    if missing:
        raise SimError(
            f"ASP table {path} lacks column(s) {', '.join(missing)}; needs {', '.join(CSV_COLUMNS)}"
        )
    numbers = {}
    for name in CSV_COLUMNS[1:]:
        value = pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=float)
        if not np.isfinite(value).all():
            raise SimError(f"ASP table {path}, line {int(np.argmax(~np.isfinite(value))) + 2}: column {name!r} has "
                           "a missing, non-numeric or infinite value; give a finite number")
        low, high = FIELD_RANGES[name]
        outside = (value < low) | (value > high)
        if outside.any():
            raise SimError(f"ASP table {path}, line {int(np.argmax(outside)) + 2}: {name} = "
                           f"{value[int(np.argmax(outside))]:g} is outside [{low:g}, {high:g}]; give a value in range"
                           + (" (a positive number of diffusion steps)" if name == "capacity" else ""))
        numbers[name] = value
    fractional = numbers["capacity"] != np.round(numbers["capacity"])
    if fractional.any():
        raise SimError(f"ASP table {path}, line {int(np.argmax(fractional)) + 2}: capacity must be a whole number "
                       "of diffusion steps")
    _check_rows(path, frame["sid"].astype(str).tolist(), numbers)
    return AspSet(
        sid=tuple(str(s) for s in frame["sid"]),
        capacity=numbers["capacity"].astype(np.int64),
        ax=numbers["ax"],
        ay=numbers["ay"],
        bx=numbers["bx"],
        by=numbers["by"],
        source=f"table {path.name}",
        # a table written by a run (sim/asps.csv) says where each row came from; keep that, else name the line
        origin=tuple(f"table {path.name}, line {i + 2}" + (f" ({frame['source'].iloc[i]})"
                                                           if "source" in frame.columns else "")
                     for i in range(len(frame))),
    )


def write_asps_csv(asps: AspSet, path: Path) -> Path:
    """Write ``asps`` as the CSV table :func:`read_asps_csv` reads (atomically: ``atomic.write_atomic``)."""
    from aaas_profile.atomic import write_atomic

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, asps.table().to_csv(index=False))
    return path


def _check_fields(path: Path) -> None:
    """Every row has as many fields as the header (pandas would shift a longer row into the wrong columns)."""
    import csv

    try:
        with path.open(newline="") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise SimError(f"cannot read ASP table {path}: {err}; give a CSV text file") from None
    if not rows:
        raise SimError(f"ASP table {path} is empty; it needs a header {','.join(CSV_COLUMNS)} and one row per ASP")
    for line, row in enumerate(rows[1:], start=2):
        if row and len(row) != len(rows[0]):
            raise SimError(f"ASP table {path}, line {line}: {len(row)} fields, the header has {len(rows[0])}; "
                           "fix that row")


def _check_rows(path: Path, sids: list[str], numbers: dict[str, np.ndarray]) -> None:
    """One line naming the first bad row (its CSV line) and column: sids unique, ay and by in [0, 1] (the
    quality scale), by ≥ ay (quality does not fall with steps), ax ≥ 0 (steps)."""
    seen: dict[str, int] = {}
    for i, sid in enumerate(sids):
        line = i + 2  # the header is line 1
        if sid in seen:
            raise SimError(f"ASP table {path}, line {line}: sid {sid!r} repeats line {seen[sid]}; give each ASP "
                           "its own sid")
        seen[sid] = line
        ax, ay, bx, by = (float(numbers[k][i]) for k in ("ax", "ay", "bx", "by"))
        for name, value in (("ay", ay), ("by", by)):
            if not 0.0 <= value <= 1.0:
                raise SimError(f"ASP table {path}, line {line}: {name} = {value:g} is outside [0, 1]; the curves "
                               "are on the [0, 1] quality scale")
        if by < ay:
            raise SimError(f"ASP table {path}, line {line}: by = {by:g} is below ay = {ay:g}; by is the quality "
                           "at saturation and cannot be lower than the floor ay")
        if ax < 0:
            raise SimError(f"ASP table {path}, line {line}: ax = {ax:g} is negative; ax is a step count (≥ 0)")
        if bx <= ax:
            raise SimError(f"ASP table {path}, line {line}: bx must be larger than ax (bx = {bx:g}, ax = {ax:g}); "
                           "the curve rises from ax to bx")
        if numbers["capacity"][i] <= 0:
            raise SimError(f"ASP table {path}, line {line}: capacity = {numbers['capacity'][i]:g} must be a "
                           "positive number of diffusion steps")


def read_fit_profile(path: Path) -> tuple[list[dict], dict[str, list[float]]]:
    """What the simulator reads from ``fit.json``: the curves on the [0, 1] scale and each sampler's runtime
    model.

    Read by ``fitfile.load`` (the one fit.json reader, which refuses a ``schema_version`` it does not know).
    Keys read (everything else is ignored)::

        {"schema_version": 1 or 2,
         "x": {"name": "steps"},                            # optional; any other x axis is refused
         "curves": [{"model": str, "mask": str, "metric": str, "sampler": str,   # sampler: optional
                     "respacing": str,                                           # optional: "250" or "steps"
                     "scale01": {"ax": float, "ay": float, "bx": float, "by": float}}, ...],
         "runtime": {"steps": {"coef": [c0, c1, c2], "sampler": str, "respacing": str},  # optional
                     "fits": [{"sampler": str, "respacing": str, "vs_steps": {"coef": [...]}}, ...]}}

    ``scale01`` is the curve on the [0, 1] quality scale (higher is better, x in diffusion steps: the
    simulator's tasks ask for steps, so a profile fitted against UNet calls or seconds is refused). A curve
    or runtime without ``respacing`` was written before the respacing column: diffusers' RePaint on the steps
    walk (``runs.LEGACY_SAMPLER``; its "repaint" is "repaint-diffusers"). ``runtime.steps.coef`` is seconds per
    image as ``c0 + c1·steps + c2·steps²`` (ascending powers, any length) of the sampler it names, and
    ``runtime.fits`` holds the other samplers'. Returns ``(curves, coefs)``: each curve a dict with model,
    mask, metric, sampler, respacing, ax, ay, bx, by; ``coefs`` maps (sampler, respacing) to its runtime
    coefficients (empty when the profile has no runtime model).
    """
    path = Path(path)
    if path.is_dir():  # a profile is the file itself, not the run folder that holds it
        raise SimError(not_found(path, "profile (fit.json)", folder=False))
    try:
        data = fitfile.load(path)  # the one fit.json reader: checks schema_version
    except fitfile.FitFileError as err:
        raise SimError(str(err)) from None
    if not isinstance(data, dict) or not isinstance(data.get("curves"), list) or not data["curves"]:
        raise SimError(f"profile {path} has no 'curves' list")
    x = data["x"].get("name", "steps") if isinstance(data.get("x"), dict) else "steps"
    if x != "steps":
        raise SimError(f"profile {path} was fitted against {x}, but the simulator's tasks ask for diffusion steps: "
                       "run `aaas-profile fit RUN` (the default --x steps) for the profile")
    curves = []
    for i, curve in enumerate(data["curves"]):
        try:
            scale = curve["scale01"]
            row = {
                "model": str(curve.get("model", "?")),
                "mask": str(curve.get("mask", "?")),
                "metric": str(curve.get("metric", "?")),
                **dict(zip(("sampler", "respacing"), _walk_of(curve), strict=True)),
            }
            row.update({k: float(scale[k]) for k in ("ax", "ay", "bx", "by")})
        except (KeyError, TypeError, ValueError, OverflowError):
            raise SimError(f"profile {path}: curve {i} lacks scale01 with numeric ax, ay, bx, by") from None
        levels = curve.get("levels") if isinstance(curve.get("levels"), dict) else {}
        try:  # the step counts the curve was measured at (absent in hand-written profiles)
            measured = [float(v) for v in levels.get("steps") or []]
        except (TypeError, ValueError):
            measured = []
        for k in ("ax", "ay", "bx", "by"):
            low, high = FIELD_RANGES[k]
            limits.finite(f"profile {path}", f"curves[{i}].scale01.{k}", row[k], low, high, SimError)
        row["steps_range"] = (min(measured), max(measured)) if measured else None
        row["refusal"] = refusal(curve)
        curves.append(row)
    coefs: dict[str, list[float]] = {}
    runtime = data.get("runtime")
    if runtime is not None:
        try:
            coef = [float(c) for c in runtime["steps"]["coef"]]
        except (KeyError, TypeError, ValueError):
            raise SimError(f"profile {path}: runtime.steps.coef must be a list of numbers") from None
        if not coef:
            raise SimError(f"profile {path}: runtime.steps.coef is empty")
        for j, c in enumerate(coef):  # a NaN coefficient ran to the end with NaN rewards
            limits.finite(f"profile {path}", f"runtime.steps.coef[{j}]", c, error=SimError)
        coefs[_walk_of(runtime["steps"])] = coef
        for fit in runtime.get("fits", []) if isinstance(runtime.get("fits"), list) else []:
            try:  # the other samplers' steps → seconds fits (the first per sampler, as runtime.steps is)
                other = [float(c) for c in fit["vs_steps"]["coef"]]
            except (KeyError, TypeError, ValueError, OverflowError):
                continue  # a fit without a usable steps model: that sampler falls back to the paper's
            for j, c in enumerate(other):  # a model that is there but not finite is a damaged file: refused
                limits.finite(f"profile {path}", f"runtime.fits[].vs_steps.coef[{j}]", c, error=SimError)
            coefs.setdefault(_walk_of(fit), other)
    return curves, coefs


def reach_warnings(curves: list[dict], task_steps: tuple[int, ...] = TASK_STEPS) -> list[str]:
    """One line per curve whose measured step counts stop short of the tasks' steps (100–250 in the paper's
    preset): there the simulator serves every task on the curve's extrapolated plateau (By), a value no
    measurement supports. ``curves``: ``read_fit_profile``'s rows (``steps_range`` None: unknown, no line)."""
    lines = []
    for c in curves:
        if c.get("steps_range") is None:
            continue
        low, high = c["steps_range"]
        if high < max(task_steps):
            reach = "none of" if high < min(task_steps) else "only part of"
            lines.append(f"warning: curve {c['model']}/{c['mask']}/{c['metric']} was measured at {low:g}–{high:g} "
                         f"steps, {reach} the tasks' {min(task_steps)}–{max(task_steps)}: beyond {high:g} steps it "
                         f"is extrapolated flat at By; sweep up to {max(task_steps)} steps to measure that range")
    return lines


def _walk_of(entry: dict) -> tuple[str, str]:
    """(sampler, respacing) of a fit.json curve or runtime entry; one without ``respacing`` is from before the
    respacing column, whose sampler names were those of then (``runs.LEGACY_NAMES``)."""
    from aaas_profile.runs import LEGACY_NAMES, LEGACY_SAMPLER

    if "respacing" not in entry:
        name = str(entry.get("sampler", LEGACY_SAMPLER["sampler"]))
        return LEGACY_NAMES.get(name, name), LEGACY_SAMPLER["respacing"]
    return str(entry.get("sampler", LEGACY_SAMPLER["sampler"])), str(entry["respacing"])


# Why a profile on the steps walk does not fit the simulator's tasks (docs/protocol.md), for its warning line.
STEPS_WALK_WARNING = ("its curves are on the steps walk (diffusers' num_inference_steps over the whole training "
                      "range, saturating within a few steps), not the paper's t_T, so every task of 100-250 steps "
                      "gets nearly the best quality; sweep with --respacing 250 for a profile in task units")


def profile_capacities(seed: int, n: int) -> np.ndarray:
    """The capacities of a profile's ``n`` ASPs for ``seed``: drawn from the paper's grid, the only thing a
    profile's ASP set draws."""
    return np.random.default_rng(seed).choice(PAPER_CAPACITIES, n)


def with_profile_capacities(asp_set: AspSet, seed: int) -> AspSet:
    """A profile's ASP set (``profile_asps``) as seed ``seed`` draws it: the same curves and runtime model, the
    capacities drawn for that seed, so ``--seeds`` reads and checks the profile once, not once per seed."""
    return replace(asp_set, capacity=profile_capacities(seed, len(asp_set)))


def profile_asps(
    path: Path,
    metric: str | None = None,
    n: int = PAPER_N_ASPS,
    seed: int = 0,
    task_steps: tuple[int, ...] = TASK_STEPS,
    reference_runtime_s: float | None = None,
    allow_flagged: bool = False,
    measured_runtime: bool = True,
    sampler: str | None = None,
) -> AspSet:
    """ASPs from a profile: ASP i serves with curve i mod (number of curves) of ``metric`` and ``sampler``
    (default: the first by ``core.acceptance.runtime_rank``, the authors' RePaint when the profile has it), on one walk
    (the paper's respaced grid when the sampler has it, else the steps walk, with a warning line:
    ``STEPS_WALK_WARNING``), with that sampler's runtime model on that walk.

    A curve that ``fit`` flagged as under-determined, flat ("no measurable effect of steps") or getting worse
    with steps is refused with its reason unless ``allow_flagged``. Curves are ordered by (model, mask);
    capacities are drawn from the paper's grid with ``seed``. The measured runtime polynomial keeps its shape
    but is rescaled so that the largest task takes ``reference_runtime_s`` (the paper's runtime at 250 steps by
    default): a profiled model runs an image in seconds, and without the rescale the paper's arrival rate would
    leave every ASP idle. ``measured_runtime=False`` uses the paper's runtime model instead (``--runtime
    paper``): the fallback when the measured one is unusable (``core.acceptance.runtime_problem``).
    """
    curves, coefs = read_fit_profile(path)
    samplers = list(dict.fromkeys(c["sampler"] for c in curves))
    notes = []
    if sampler is None:
        sampler = min(samplers, key=lambda s: (min(runtime_rank(s, c["respacing"]) for c in curves
                                                   if c["sampler"] == s), samplers.index(s)))
        if len(samplers) > 1:
            notes.append(f"sampler {sampler} (choose with --sampler from {', '.join(samplers)})")
    elif sampler not in samplers:
        raise SimError(f"profile {path} has no curve of sampler {sampler!r}; it has {', '.join(samplers)}")
    curves = [c for c in curves if c["sampler"] == sampler]
    walks = sorted({c["respacing"] for c in curves}, key=lambda w: (w == STEPS_WALK, w))
    walk = walks[0]  # task units (an N-step grid) first: the simulator's tasks ask for t_T
    curves = [c for c in curves if c["respacing"] == walk]
    if len(walks) > 1:
        notes.append(f"walk: respacing {walk} (the profile also has {', '.join(walks[1:])})")
    if walk == STEPS_WALK:
        notes.append(f"warning: profile {Path(path).name} is not in task units: {STEPS_WALK_WARNING}")
    coef = coefs.get((sampler, walk))
    metrics = sorted({c["metric"] for c in curves})
    if metric is None:
        metric = curves[0]["metric"]
        if len(metrics) > 1:
            notes.append(
                f"metric {metric} (first in the profile; choose with --metric from {', '.join(metrics)})"
            )
    chosen = sorted((c for c in curves if c["metric"] == metric), key=lambda c: (c["model"], c["mask"]))
    if not chosen:
        raise SimError(f"profile {path} has no curve for metric {metric!r}; it has {', '.join(metrics)}")
    for c in chosen:  # a flat or under-determined curve would drive the simulator with noise
        if c["refusal"] and not allow_flagged:
            raise SimError(f"profile {path}: curve {c['model']}/{c['mask']}/{metric}: {c['refusal']}; "
                           "pass --allow-flagged-profile to simulate it anyway")
        if c["refusal"]:
            notes.append(f"flagged curve used on request: {c['model']}/{c['mask']}/{metric}: {c['refusal']}")
    picks = [chosen[i % len(chosen)] for i in range(n)]
    notes.extend(reach_warnings(chosen, task_steps))
    runtime_coef = None
    if not measured_runtime:
        notes.append("runtime: the paper's model (--runtime paper)")
    elif coef is None:
        notes.append(f"runtime: the paper's model (the profile has none for {sampler})")
    else:
        problem = runtime_problem(coef, min(task_steps), max(task_steps))
        if problem:
            raise SimError(f"profile {path}: the runtime model {problem}; refit with steady timings, or pass "
                           "--runtime paper to use the paper's runtime model")
        reference = paper_runtime_s(max(task_steps)) if reference_runtime_s is None else reference_runtime_s
        scale = reference / float(polynomial(coef, float(max(task_steps))))
        runtime_coef = tuple(float(c) * scale for c in coef)
        notes.append(
            f"runtime: the profile's model × {scale:.4g} (so {max(task_steps)} steps take {reference:.0f} s)"
        )
    return AspSet(
        sid=tuple(f"{c['model']}/{c['mask']}#{i}" for i, c in enumerate(picks)),
        origin=tuple(f"{Path(path).name}: model {c['model']}, mask {c['mask']}, sampler {c['sampler']}, metric "
                     f"{metric}" for c in picks),
        ax=[c["ax"] for c in picks],
        ay=[c["ay"] for c in picks],
        bx=[c["bx"] for c in picks],
        by=[c["by"] for c in picks],
        capacity=profile_capacities(seed, n),
        source=f"profile {Path(path).name}, metric {metric}" + (f", sampler {sampler}" if len(samplers) > 1 else ""),
        runtime_coef=runtime_coef,
        notes=tuple(notes),
    )
