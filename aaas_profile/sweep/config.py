"""A sweep's configuration (``SweepConfig``): its fields and defaults, the checks every value goes through on entry,
and how the same keys read from a ``--config`` file or a run folder's config.toml.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path

import tomli_w

from aaas_profile import limits, options, precision, stored
from aaas_profile import metrics as metrics_mod
from aaas_profile import samplers as samplers_mod
from aaas_profile.errors import UserError

# The defaults live with the options' declarations (aaas_profile/options.py); re-exported for the stages.
PROJECT_ROOT, DEFAULT_DATA, DEFAULT_STEPS = options.PROJECT_ROOT, options.DEFAULT_DATA, options.DEFAULT_STEPS
DEFAULT_JUMP_N_SAMPLE, DEFAULT_RESPACING = options.DEFAULT_JUMP_N_SAMPLE, options.DEFAULT_RESPACING


class SweepError(UserError, ValueError):
    """A sweep configuration that cannot run; the message is one line."""


@dataclass
class SweepConfig(options.SweepOptions):
    """Everything that defines a sweep (the fields, defaults, ranges and help of ``options.SweepOptions``), with the
    checks every value goes through, from the command line, a ``--config`` file or a run folder's config.toml
    alike; written to the run folder as config.toml."""

    @classmethod
    def from_sources(cls, file: Path | None = None, **overrides) -> SweepConfig:
        """Defaults, overridden by a TOML file's keys, overridden by the non-None keyword arguments."""
        values: dict = {}
        if file is not None:
            try:
                values.update(stored.load_toml(Path(file), "give a TOML file such as a run folder's config.toml"))
            except stored.StoredFileError as err:
                raise SweepError(f"{file}: cannot read the configuration ({err.problem})") from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        types = {KEY_NAMES.get(f.name, f.name): f.type for f in fields(cls)}  # by the names users write
        unknown = sorted(set(values) - set(types))
        if unknown:
            raise SweepError(f"unknown configuration key(s): {', '.join(unknown)}; choose from {', '.join(types)}")
        if isinstance(values.get("respacing"), str | int) and not isinstance(values.get("respacing"), bool):
            values["respacing"] = str(values["respacing"])
        if isinstance(values.get("respacing"), list):  # a TOML list may hold 250 and "steps" side by side
            values["respacing"] = [str(v) if isinstance(v, int) and not isinstance(v, bool) else v
                                   for v in values["respacing"]]
        for key in ("masks", "metrics", "sampler", "respacing"):
            if isinstance(values.get(key), str):
                values[key] = [v.strip() for v in values[key].split(",") if v.strip()]
        for key in ("steps", "seeds"):
            if isinstance(values.get(key), str):
                values[key] = limits.parse_ints(values[key], key, SweepError)
        for key, value in values.items():
            values[key] = _checked_type(key, value, types[key], file)
        fields_by_key = {key: name for name, key in KEY_NAMES.items()}
        config = cls(**{fields_by_key.get(k, k): v for k, v in values.items()})
        config.validate()
        return config

    def validate(self) -> None:
        # every range and no repeated list item (options.SweepOptions declares them), then what ranges cannot say
        # (so below: no item out of range or repeated in any list; the ranges say nothing of an empty list)
        options.check_all("sweep", {KEY_NAMES.get(k, k): v for k, v in asdict(self).items()}, SweepError)
        if not self.steps:
            raise SweepError(f"steps must be positive integers, got {self.steps}")
        if not self.seeds:
            raise SweepError("give at least one seed")
        if not self.masks:
            raise SweepError("give at least one mask")
        if self.dtype not in precision.CHOICES:
            raise SweepError(f"unknown dtype '{self.dtype}': choose from {', '.join(precision.CHOICES)}")
        if not self.samplers:
            raise SweepError("give at least one sampler")
        unknown = [name for name in self.samplers if name not in samplers_mod.SAMPLERS]
        if unknown:
            raise SweepError(f"unknown sampler(s) {', '.join(map(repr, unknown))}: choose from "
                             f"{', '.join(samplers_mod.SAMPLERS)}")
        self.steps = sorted(self.steps)
        self.metrics = list(metrics_mod.select(self.metrics))
        try:  # checked whichever samplers run: a run folder keeps one eta (FIXED)
            samplers_mod.DiffusersRePaintSampler(self.jump_length, self.jump_n_sample, self.eta)
        except ValueError as err:
            raise SweepError(str(err)) from None
        if not self.respacing:
            raise SweepError(f"give at least one respacing (an integer such as 250, '{samplers_mod.STEPS_WALK}' or "
                             f"'{DEFAULT_RESPACING}')")
        labels = []
        for text in self.respacing:
            try:
                labels.append(text if text == DEFAULT_RESPACING else
                              samplers_mod.respacing_label(samplers_mod.parse_respacing(text)))
            except samplers_mod.SamplerError as err:
                raise SweepError(f"--respacing: {err}") from None
        self.respacing = list(dict.fromkeys(labels))
        settings = self.make_samplers()  # any parameter a sampler refuses: now, in one line (SamplerError)
        grids = sorted({s.respacing for s in settings.values() if s.respacing is not None})
        if grids and max(self.steps) > grids[0]:
            raise SweepError(f"steps go up to {max(self.steps)} but respacing {grids[0]} walks a {grids[0]}-step grid "
                             f"(t_T = steps must be ≤ {grids[0]}): lower --steps or raise --respacing")

    def sampler_pairs(self) -> tuple[list[tuple[str, str]], list[str]]:
        """The (sampler name, respacing label) settings this sweep runs, in the configured order (samplers, then
        respacings), and one warning line per pair a sampler refuses (RESPACING_RULE). Raises SweepError when a
        sampler takes none of the respacings."""
        pairs = []
        for name in self.samplers:
            mine = []
            for label in self.respacing:
                if label == DEFAULT_RESPACING:
                    label = samplers_mod.respacing_label(samplers_mod.make_sampler(name).respacing)
                try:
                    samplers_mod.make_sampler(name, respacing=samplers_mod.parse_respacing(label))
                except samplers_mod.SamplerError:
                    continue
                mine.append((name, label))
            if not mine:
                raise SweepError(f"sampler {name} takes none of the respacings {', '.join(self.respacing)}: add "
                                 f"'{samplers_mod.STEPS_WALK}' or '{DEFAULT_RESPACING}' to --respacing")
            pairs.extend(p for p in mine if p not in pairs)
        warnings = [f"sampler {name} skips respacing {label}: it walks only its own step grid (an integer respacing "
                    "is repaint's)" for name in self.samplers for label in self.respacing
                    if label not in (DEFAULT_RESPACING, samplers_mod.STEPS_WALK) and (name, label) not in pairs]
        return pairs, warnings

    def make_samplers(self) -> dict[str, samplers_mod.Sampler]:
        """The sweep's samplers by setting key (``setting_key``), in ``sampler_pairs``' order, with this sweep's
        j, r and eta."""
        try:
            return {setting_key(name, label): samplers_mod.make_sampler(
                        name, jump_length=self.jump_length, jump_n_sample=self.jump_n_sample, eta=self.eta,
                        respacing=samplers_mod.parse_respacing(label))
                    for name, label in self.sampler_pairs()[0]}
        except samplers_mod.SamplerError as err:
            raise SweepError(str(err)) from None

    def to_toml(self) -> str:
        return tomli_w.dumps({KEY_NAMES.get(k, k): v for k, v in asdict(self).items() if v is not None})


# A sampler × respacing pair the sampler refuses (ddim, dpm-solver and repaint-diffusers walk only their own
# step grid) is skipped with a one-line warning, so `--sampler repaint,ddim --respacing 250,steps` runs the
# three pairs that exist; a sampler that takes none of the respacings is an error.
RESPACING_RULE = "skip refused pairs with a warning; refuse a sampler left with none"


def setting_key(name: str, respacing: str) -> str:
    """A sampler setting's key in ``Prepared.samplers`` and ``Cell.sampler``: the sampler's name on its own
    default walk, "name@respacing" on another."""
    default = samplers_mod.respacing_label(samplers_mod.make_sampler(name).respacing)
    return name if respacing == default else f"{name}@{respacing}"


# Fields whose configuration key (config.toml, --config files, from_sources' keywords) is not the field name
# (``samplers`` is written "sampler", as the --sampler option): from the declarations.
KEY_NAMES = {f.name: options.key_of(f) for f in fields(options.SweepOptions) if options.key_of(f) != f.name}


def _checked_type(key: str, value, kind: str, file: Path | None):
    """``value`` if it has the type the field ``key`` declares (``kind``, as written in SweepConfig), else a
    SweepError naming the key, as a --config TOML file can hold any type."""
    where = f"{file}: " if file is not None else ""
    optional = kind.endswith(" | None")
    base = kind.removesuffix(" | None")
    if value is None and optional:
        return value
    if base.startswith("list["):
        item = base[5:-1]
        if isinstance(value, list) and all(_is(v, item) for v in value):
            return [float(v) if item == "float" else v for v in value]
        raise SweepError(f"{where}{key} must be a list of {item}s, got {value!r}")
    if _is(value, base):
        return float(value) if base == "float" else value
    raise SweepError(f"{where}{key} must be {'an' if base == 'int' else 'a'} {base}, got {value!r}")


def _is(value, kind: str) -> bool:
    if kind == "str":
        return isinstance(value, str)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "float":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return True
