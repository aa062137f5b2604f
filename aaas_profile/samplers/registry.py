"""The samplers by name (``make_sampler``), and the respacing and parameters as the scores table writes them."""

from __future__ import annotations

import json

from aaas_profile.samplers.base import Sampler, SamplerError
from aaas_profile.samplers.repaint import RePaintSampler
from aaas_profile.samplers.replacement import DDIMSampler, DiffusersRePaintSampler, DPMSolverSampler

SAMPLERS: dict[str, type[Sampler]] = {
    s.name: s for s in (RePaintSampler, DiffusersRePaintSampler, DDIMSampler, DPMSolverSampler)}


class _SamplerDefault:
    """make_sampler's ``respacing`` when not given: the sampler's own default (250 for repaint, else None)."""

    def __repr__(self) -> str:
        return "<sampler default>"


SAMPLER_DEFAULT = _SamplerDefault()


def make_sampler(name: str, *, jump_length: int = 10, jump_n_sample: int = 10, eta: float = 0.0,
                 respacing: int | None | _SamplerDefault = SAMPLER_DEFAULT) -> Sampler:
    """The sampler ``name`` (a key of SAMPLERS). The RePaints take the jumps; ``repaint-diffusers`` takes eta;
    ``repaint`` takes a respacing (default 250, None for the steps walk). The others have no use for the jumps
    and eta and ignore them, and refuse an integer respacing (module docstring)."""
    if name not in SAMPLERS:
        raise SamplerError(f"unknown sampler '{name}': choose from {', '.join(SAMPLERS)}")
    if name == RePaintSampler.name:
        if respacing is SAMPLER_DEFAULT:
            return RePaintSampler(jump_length, jump_n_sample)
        return RePaintSampler(jump_length, jump_n_sample, respacing)
    if respacing is not SAMPLER_DEFAULT and respacing is not None:
        raise SamplerError(f"{name} walks only its own step grid: use respacing 'steps', not {respacing!r} "
                           f"(an integer respacing is repaint's)")
    if name == DiffusersRePaintSampler.name:
        return DiffusersRePaintSampler(jump_length, jump_n_sample, eta)
    return SAMPLERS[name]()


STEPS_WALK = "steps"  # respacing_label of None


def respacing_label(respacing: int | None) -> str:
    """The scores table's ``respacing`` column: "250" for an N-step grid, "steps" for the steps walk."""
    return STEPS_WALK if respacing is None else str(int(respacing))


def parse_respacing(text: str) -> int | None:
    """Inverse of :func:`respacing_label`: "steps" → None, "250" → 250; anything else is a one-line
    SamplerError."""
    value = str(text).strip()
    if value == STEPS_WALK:
        return None
    if value.isdigit() and int(value) >= 1:
        return int(value)
    raise SamplerError(f"respacing must be a positive step count (e.g. 250) or '{STEPS_WALK}', got '{text}'")


def sampler_params_json(sampler: Sampler) -> str:
    """``sampler.params()`` as canonical JSON (sorted keys, no spaces); "{}" when it has none."""
    return json.dumps(sampler.params(), sort_keys=True, separators=(",", ":"))
