"""The six image-quality metrics of Du et al. (2023), batched, on [0, 1] RGB tensors of shape (N, 3, H, W).

| name      | kind            | better | piq function / source                                    | min side |
|-----------|-----------------|--------|----------------------------------------------------------|----------|
| `tv`      | no-reference    | lower  | ``total_variation`` (l2), normalised per difference      | 2        |
| `brisque` | no-reference    | lower  | ``aaas_profile.brisque`` (piq's BRISQUE, offline weights) | 64       |
| `dss`     | full-reference  | higher | ``dss`` (Balanov et al. 2015)                            | 32       |
| `haarpsi` | full-reference  | higher | ``haarpsi`` (Reisenhofer et al. 2018)                    | 16       |
| `mdsi`    | full-reference  | lower  | ``mdsi`` (Nafchi et al. 2016)                            | 16       |
| `vif`     | full-reference  | higher | ``vif_p`` (Sheikh & Bovik 2006, pixel domain)            | 41       |

Full-reference metrics compare an output with the uncorrupted original. The minimum sides are where the
metric stops meaning anything: piq's VIF refuses under 41 px, its DSS returns NaN under 32 px without a word,
BRISQUE's features are computed at two scales and need room for both (and it is undefined, NaN here, for a
constant image). An image under a metric's minimum
raises ``MetricError`` instead of producing a meaningless number.

VIF is undefined when the reference has no detail: it is the information the distorted image keeps about the
reference, divided by the information in the reference, Σ log(1 + σ²_ref / σ²_n) over local windows, and a
flat reference makes that 0/0. piq keeps the division finite with a small constant, so an all-black
reference scores exactly 1.0 ("perfect") whatever the output, and an all-white one scores noise. Such an
image gets NaN for VIF (``vif_or_nan``); ``undefined_on`` names it before a sweep starts.

TV is normalised so images of different sizes compare: piq's l2 total variation is the square root of the sum
of squared neighbour differences over channels and pixels; dividing it by the square root of the number of
those differences, C·(H·(W−1) + (H−1)·W), gives the root-mean-square neighbour difference, in [0, 1] for
[0, 1] images.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import piq
import torch

from aaas_profile.brisque import brisque
from aaas_profile.errors import UserError


class MetricError(UserError, ValueError):
    """Input a metric cannot score meaningfully; the message is one line."""


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Root-mean-square neighbour difference of (N, C, H, W) images, per image (see module docstring)."""
    n, c, h, w = x.shape
    differences = c * (h * (w - 1) + (h - 1) * w)
    return piq.total_variation(x, reduction="none", norm_type="l2") / math.sqrt(differences)


def brisque_or_nan(x: torch.Tensor) -> torch.Tensor:
    """BRISQUE per image, computed in float64; NaN for a constant image, where BRISQUE is undefined (a sweep
    keeps going and the table says so, rather than one blank output stopping hours of work).

    float64 because BRISQUE amplifies rounding in its features: its shape parameters are an argmin over a grid
    and its asymmetric fits count the negative products of neighbouring normalised pixels, so a last-bit change
    can move the score by far more than the rounding. The same image scored in float32 moved by up to 1e-3
    relative between thread counts and ATEN_CPU_CAPABILITY settings; in float64 by 2e-12. (Outputs that differ
    in their last bits, as a batched and an unbatched UNet give, can still differ by a grey level after BRISQUE
    rounds RGB to integer luma: see tests/conftest.py's SCORE_ATOL.) It costs about 1.3x the float32 time.
    """
    flat = x.flatten(1).amax(dim=1) == x.flatten(1).amin(dim=1)
    values = torch.full((x.shape[0],), float("nan"), dtype=torch.float64, device=x.device)
    if (~flat).any():
        values[~flat] = brisque(x[~flat].double(), data_range=1.0)
    return values


# A reference counts as flat when all its pixels lie within one 8-bit level of each other.
FLAT_RANGE = 1 / 255


def _flat(x: torch.Tensor) -> torch.Tensor:
    """Per image of an (N, C, H, W) batch: True where every pixel is within FLAT_RANGE of every other."""
    flat = x.flatten(1)
    return (flat.amax(dim=1) - flat.amin(dim=1)) <= FLAT_RANGE


def vif_or_nan(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """piq's ``vif_p`` per image; NaN where the reference ``y`` is flat and VIF is 0/0 (module docstring)."""
    flat = _flat(y)
    values = torch.full((x.shape[0],), float("nan"), dtype=x.dtype, device=x.device)
    if (~flat).any():
        values[~flat] = piq.vif_p(x[~flat], y[~flat], reduction="none", data_range=1.0)
    return values


def undefined_on(reference: torch.Tensor, names: Sequence[str]) -> dict[str, str]:
    """The named metrics that are undefined on every output for this (3, H, W) original, with the reason."""
    if "vif" in names and bool(_flat(reference[None])[0]):
        return {"vif": "the image is one flat colour, and VIF divides by the detail in the original"}
    return {}


@dataclass(frozen=True)
class Metric:
    name: str
    higher_is_better: bool
    full_reference: bool
    min_size: int
    fn: Callable[..., torch.Tensor]

    def __call__(self, x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        if self.full_reference:
            return self.fn(x, reference)
        return self.fn(x)


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("tv", False, False, 2, total_variation),
        Metric("brisque", False, False, 64, brisque_or_nan),
        Metric("dss", True, True, 32, lambda x, y: piq.dss(x, y, reduction="none", data_range=1.0)),
        Metric("haarpsi", True, True, 16, lambda x, y: piq.haarpsi(x, y, reduction="none", data_range=1.0)),
        Metric("mdsi", False, True, 16, lambda x, y: piq.mdsi(x, y, reduction="none", data_range=1.0)),
        Metric("vif", True, True, 41, vif_or_nan),
    )
}
ALL = tuple(METRICS)


def select(names: Sequence[str] | str | None) -> tuple[str, ...]:
    """Validated metric names from a list or a comma-separated string (None or "all": every metric)."""
    if names is None or names == "all":
        return ALL
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in names if n not in METRICS]
    if unknown or not names:
        raise MetricError(f"unknown metric(s) {', '.join(unknown) or '(none given)'}: choose from {', '.join(ALL)}")
    return tuple(dict.fromkeys(names))


def check_size(names: Sequence[str], height: int, width: int) -> None:
    """Raise MetricError if (height, width) is under any named metric's minimum side."""
    side = min(height, width)
    too_small = [n for n in names if side < METRICS[n].min_size]
    if too_small:
        needs = ", ".join(f"{n} ≥ {METRICS[n].min_size} px" for n in too_small)
        raise MetricError(
            f"{height}×{width} images are too small for {needs}: use a larger resolution or leave them out "
            "with --metrics"
        )


def score(outputs: torch.Tensor, originals: torch.Tensor, names: Sequence[str] = ALL) -> dict[str, torch.Tensor]:
    """Score a batch: {metric name: (N,) float64 values on the CPU}.

    Args:
        outputs: (N, 3, H, W) in [0, 1], the images to judge.
        originals: (N, 3, H, W) in [0, 1], the references for the full-reference metrics.
    """
    if outputs.shape != originals.shape or outputs.ndim != 4 or outputs.shape[1] != 3:
        raise MetricError(f"need two (N, 3, H, W) batches of one shape, got {tuple(outputs.shape)} and "
                          f"{tuple(originals.shape)}")
    check_size(names, outputs.shape[-2], outputs.shape[-1])
    x = outputs.float().clamp(0, 1)
    y = originals.to(x.device, torch.float32).clamp(0, 1)
    with torch.inference_mode():
        return {name: METRICS[name](x, y).detach().double().cpu() for name in names}
