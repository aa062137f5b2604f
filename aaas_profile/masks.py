"""Inpainting masks: RePaint's six mask families and folders of user masks.

Convention (RePaint's ``gt_keep_mask``): **1 = keep** (a known pixel, copied from the original),
**0 = generate** (a pixel the model inpaints). A mask is a float32 tensor of shape (1, size, size)
holding exactly 0.0 and 1.0.

Families, as in RePaint (Lugmayr et al., CVPR 2022, section 5 and its test masks):

- ``thick``, ``thin``: random free-form brush strokes. RePaint's test masks were made with LaMa's
  irregular-mask generator (Suvorov et al., WACV 2022; ``configs/data_gen/random_{thick,thin}_256.yaml``
  with ``make_random_irregular_mask``); `StrokeParams` holds those settings, converted from pixels of
  a 256-px image to fractions of the image side so the same seed gives the same shapes at any size.
- ``half``: keep the left half, generate the right half.
- ``expand``: keep a centre square of 1/4 of the side, generate the border (RePaint's "ex64": 64 of 256 px).
- ``line``: keep the even rows (0, 2, 4, ...), generate the odd rows ("every second line").
- ``box``: generate a centre square of 1/2 of the side, keep the rest.

Geometry is defined on the unit square and rasterised at pixel centres ((j + 0.5) / size), so a mask
made at 64 px is (nearly) the 256-px mask downscaled; ``line`` is a pixel pattern and is the exception.

A user's mask folder (`parse_masks`) holds one PNG/JPEG/BMP file per mask. Each file is read in any PIL
mode (alpha composited onto white, as in `aaas_profile.images`), turned grey as the mean of R, G and B,
thresholded at half its range (value >= 0.5 of full scale: white = keep, black = generate), then
resized with nearest-neighbour so that its shorter side is the sweep resolution and centre-cropped,
the same geometry `aaas_profile.images` applies to the images, so a mask drawn on an original still
lines up with it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image as PILImage

from aaas_profile.errors import UserError
from aaas_profile.images import ImageError, file_sha256, is_image_file, open_image, pil_to_rgb, square_box

FAMILIES: tuple[str, ...] = ("thick", "thin", "half", "expand", "line", "box")
USER_FAMILY = "file"  # MaskSpec.family of a mask read from a user's folder

REFERENCE_SIZE = 256  # the resolution LaMa's stroke settings were made for; also where area is checked


class MaskError(UserError, ValueError):
    """A bad mask specification, mask file or mask; the message is one line."""


@dataclass(frozen=True)
class StrokeParams:
    """LaMa's random irregular mask, in units of 1/256 of the image side (px of a 256-px image).

    Per mask: `min_strokes`..`max_strokes` strokes, each a chain of 1..5 segments that starts at a
    uniform random point; a segment has direction 0.01 + {0, 1, 2, 3} rad (mirrored for every other
    stroke), length `min_len` + U[0, `max_len`) and brush width `min_width` + U[0, `max_width`), and its
    end is clipped to the image. LaMa draws integers in px; here the draws are continuous so that they do
    not depend on the size. With probability `box_proba` / (1 + `box_proba`) the mask is 1..3 random
    rectangles instead (LaMa's mixed generator, thick config only). A draw that would generate more than
    `max_generated` of the image is redrawn (LaMa's ``max_tamper_area``).
    """

    min_strokes: int
    max_strokes: int
    max_len: float
    max_width: float
    min_len: float = 10.0
    min_width: float = 5.0
    max_segments: int = 5
    max_angle: int = 4
    box_proba: float = 0.0
    box_min_size: float = 30.0
    box_max_size: float = 150.0
    box_margin: float = 10.0
    box_max_count: int = 3
    max_generated: float = 0.5


# LaMa configs/data_gen/random_thick_256.yaml and random_thin_256.yaml (irregular_kwargs, box_kwargs,
# box_proba, max_tamper_area).
THICK = StrokeParams(min_strokes=1, max_strokes=5, max_len=200.0, max_width=100.0, box_proba=0.3)
THIN = StrokeParams(min_strokes=4, max_strokes=50, max_len=40.0, max_width=10.0)
STROKES = {"thick": THICK, "thin": THIN}


def mask_seed(*parts: str | int) -> int:
    """A stable 63-bit seed from strings and integers, e.g. ``mask_seed("img01.png", "thick", 3)``.

    BLAKE2b over the length- and type-tagged parts, so it is the same in every process (unlike ``hash()``),
    ``("ab", "c")`` differs from ``("a", "bc")`` and ``1`` differs from ``"1"``.
    """
    digest = hashlib.blake2b(digest_size=8)
    for part in parts:
        if isinstance(part, str):
            token = f"s{len(part)}:{part}"
        elif isinstance(part, (int, np.integer)) and not isinstance(part, bool):
            token = f"i:{int(part)}"
        else:
            raise TypeError(f"mask_seed takes str or int parts, got {type(part).__name__}")
        digest.update(token.encode("utf-8") + b"\x00")
    return int.from_bytes(digest.digest(), "big") >> 1


_CHOICES = f"choose from {', '.join(FAMILIES)} or a folder of mask images"


def _unknown_family(name: str) -> MaskError:
    return MaskError(f"unknown mask family {name!r}; {_CHOICES}")


def check_mask(mask: torch.Tensor, name: str) -> None:
    """Raise MaskError unless `mask` holds only 0/1 and has both a known and a generated pixel."""
    if not bool(((mask == 0) | (mask == 1)).all()):
        raise MaskError(f"mask {name!r} holds values other than 0 and 1")
    if bool((mask == 1).all()):
        raise MaskError(f"mask {name!r} keeps every pixel: nothing to inpaint")
    if bool((mask == 0).all()):
        raise MaskError(f"mask {name!r} keeps no pixel: nothing known")


# ---- rasterising shapes on the unit square ----------------------------------------------------------

def _centres(size: int) -> np.ndarray:
    return (np.arange(size) + 0.5) / size


def _span(lo: float, hi: float, size: int) -> slice:
    """Pixel indices whose centres may fall in [lo, hi] (in fractions of the side)."""
    return slice(max(0, int(np.floor(lo * size - 0.5))), min(size, int(np.ceil(hi * size + 0.5)) + 1))


def _draw_segment(generated: np.ndarray, x0: float, y0: float, x1: float, y1: float, width: float) -> None:
    """Mark pixels whose centre lies within width / 2 of the segment (a brush stroke with round ends)."""
    size = generated.shape[0]
    radius = width / 2
    rows = _span(min(y0, y1) - radius, max(y0, y1) + radius, size)
    cols = _span(min(x0, x1) - radius, max(x0, x1) + radius, size)
    ys = _centres(size)[rows][:, None]
    xs = _centres(size)[cols][None, :]
    dx, dy = x1 - x0, y1 - y0
    length2 = dx * dx + dy * dy
    t = np.zeros_like(xs * ys) if length2 == 0 else np.clip(((xs - x0) * dx + (ys - y0) * dy) / length2, 0, 1)
    dist2 = (xs - x0 - t * dx) ** 2 + (ys - y0 - t * dy) ** 2
    generated[rows, cols] |= dist2 <= radius * radius


def _draw_box(generated: np.ndarray, x0: float, y0: float, x1: float, y1: float) -> None:
    """Mark pixels whose centre lies in [x0, x1) x [y0, y1)."""
    c = _centres(generated.shape[0])
    generated[np.ix_((c >= y0) & (c < y1), (c >= x0) & (c < x1))] = True


Shape = tuple[str, float, float, float, float, float]  # kind, x0, y0, x1, y1, width


def _rasterise(shapes: list[Shape], size: int) -> np.ndarray:
    generated = np.zeros((size, size), dtype=bool)
    for kind, x0, y0, x1, y1, width in shapes:
        if kind == "segment":
            _draw_segment(generated, x0, y0, x1, y1, width)
        else:
            _draw_box(generated, x0, y0, x1, y1)
    return generated


def _draw_strokes(p: StrokeParams, rng: np.random.Generator) -> list[Shape]:
    """One draw of LaMa's irregular strokes (or, sometimes, its boxes) as shapes on the unit square."""
    unit = 1.0 / REFERENCE_SIZE
    if p.box_proba > 0 and rng.random() < p.box_proba / (1.0 + p.box_proba):
        boxes: list[Shape] = []
        for _ in range(rng.integers(1, p.box_max_count + 1)):
            w, h = rng.uniform(p.box_min_size, p.box_max_size, size=2) * unit
            x0 = rng.uniform(p.box_margin * unit, 1 - p.box_margin * unit - w)
            y0 = rng.uniform(p.box_margin * unit, 1 - p.box_margin * unit - h)
            boxes.append(("box", x0, y0, x0 + w, y0 + h, 0.0))
        return boxes
    segments: list[Shape] = []
    for i in range(rng.integers(p.min_strokes, p.max_strokes + 1)):
        x, y = rng.random(2)
        for _ in range(1 + rng.integers(p.max_segments)):
            angle = 0.01 + rng.integers(p.max_angle)
            if i % 2 == 0:
                angle = 2 * np.pi - angle
            length = (p.min_len + rng.uniform(0, p.max_len)) * unit
            width = (p.min_width + rng.uniform(0, p.max_width)) * unit
            x_end = float(np.clip(x + length * np.sin(angle), 0, 1))
            y_end = float(np.clip(y + length * np.cos(angle), 0, 1))
            segments.append(("segment", float(x), float(y), x_end, y_end, width))
            x, y = x_end, y_end
    return segments


def stroke_mask(family: str, size: int, seed: int) -> np.ndarray:
    """Boolean (size, size) map of *generated* pixels for ``thick`` or ``thin``, from `seed` alone."""
    params = STROKES[family]
    rng = np.random.default_rng(seed)
    for _ in range(1000):
        shapes = _draw_strokes(params, rng)
        # Area is judged on the 256-px raster so that the accepted draw does not depend on `size`.
        reference = _rasterise(shapes, REFERENCE_SIZE)
        if 0 < reference.mean() <= params.max_generated:
            return reference if size == REFERENCE_SIZE else _rasterise(shapes, size)
    raise RuntimeError(f"no {family} mask within {params.max_generated:.0%} area in 1000 draws (seed {seed})")


def family_mask(family: str, size: int, seed: int) -> np.ndarray:
    """Boolean (size, size) map of *keep* pixels for one of FAMILIES."""
    c = _centres(size)
    if family in STROKES:
        return ~stroke_mask(family, size, seed)
    if family == "half":
        return np.broadcast_to(c[None, :] < 0.5, (size, size)).copy()
    if family == "expand":
        inside = (c >= 3 / 8) & (c < 5 / 8)  # a centre square of 1/4 of the side
        return inside[:, None] & inside[None, :]
    if family == "line":
        return np.broadcast_to((np.arange(size) % 2 == 0)[:, None], (size, size)).copy()
    if family == "box":
        inside = (c >= 1 / 4) & (c < 3 / 4)  # a centre square of 1/2 of the side
        return ~(inside[:, None] & inside[None, :])
    raise _unknown_family(family)


def read_mask_file(path: Path, size: int | None = None) -> np.ndarray:
    """Boolean keep map of a user's mask file: native size if `size` is None, else (size, size)."""
    try:
        im = open_image(path)
    except ImageError as exc:
        raise MaskError(str(exc).replace("cannot read image", "cannot read mask", 1)) from exc
    keep = pil_to_rgb(im).mean(axis=2) >= 0.5
    if size is None:
        return keep
    height, width = keep.shape
    resized = PILImage.fromarray(keep.astype(np.uint8) * 255).resize(
        (size, size), PILImage.Resampling.NEAREST, box=square_box(width, height)
    )
    return np.asarray(resized) >= 128


@dataclass(frozen=True)
class MaskSpec:
    """A named mask: one of FAMILIES (``path`` None) or a user's mask file (``family`` "file")."""

    name: str
    family: str
    path: Path | None = None
    sha256: str | None = None  # a mask file's content hash (images.file_sha256); None for a family (it is code)

    def make(self, size: int, seed: int) -> torch.Tensor:
        """The mask as float32 (1, size, size) of 0.0/1.0, 1 = keep. `seed` matters for thick/thin only."""
        if self.path is not None:
            keep = read_mask_file(self.path, size)
        else:
            keep = family_mask(self.family, size, seed)
        mask = torch.from_numpy(keep.astype(np.float32))[None]
        check_mask(mask, self.name)
        return mask


def _folder_specs(folder: Path) -> list[MaskSpec]:
    paths = sorted((p for p in folder.iterdir() if is_image_file(p)), key=lambda p: p.name)
    if not paths:
        raise MaskError(f"{folder}: mask folder holds no .png, .jpg, .jpeg or .bmp files")
    prefix = folder.resolve().name
    specs: list[MaskSpec] = []
    seen: dict[str, Path] = {}
    for path in paths:
        name = f"{prefix}/{path.stem}"
        if name in seen:
            raise MaskError(f"{path}: mask name {name!r} is already taken by {seen[name].name}")
        seen[name] = path
        # Check readability and that it is not all-keep / all-generate now, before any sweep work.
        check_mask(torch.from_numpy(read_mask_file(path).astype(np.float32)), name)
        specs.append(MaskSpec(name=name, family=USER_FAMILY, path=path, sha256=file_sha256(path)))
    return specs


def parse_masks(spec: str | list[str]) -> list[MaskSpec]:
    """Parse a comma list such as ``"thick,thin,half"`` or ``"box,my_masks/"`` (or a list of such items: a
    sweep's ``masks``, parsed together so that names are made unique across them) into MaskSpecs.

    An item that is an existing directory is a folder of user masks: each image file in it becomes
    one MaskSpec named ``"<folder name>/<file stem>"`` (files are read and checked here). Any other item
    must be one of FAMILIES.

    A mask is what it holds (docs/run-folder.md, "Identity"): the same file content met twice (a folder given
    twice, or a copy under another name) is kept once, under its first-seen name; two different files that
    would get one name (two folders with the same base name) are each named ``"<name>@<first 8 hex of their
    sha256>"``, so their cells never share a key. Order: first seen.
    """
    items = spec.split(",") if isinstance(spec, str) else [part for text in spec for part in text.split(",")]
    specs: list[MaskSpec] = []
    for item in (part.strip() for part in items):
        if not item:
            continue
        if Path(item).is_dir():
            specs.extend(_folder_specs(Path(item)))
        elif item in FAMILIES:
            specs.append(MaskSpec(name=item, family=item))
        else:
            raise _unknown_family(item)
    if not specs:
        raise MaskError(f"no masks in {spec!r}; {_CHOICES}")
    by_content: dict[str, MaskSpec] = {}
    for s in specs:
        by_content.setdefault(s.sha256 or s.name, s)
    kept = list(by_content.values())
    names = [s.name for s in kept]
    return [replace(s, name=f"{s.name}@{s.sha256[:8]}") if names.count(s.name) > 1 and s.sha256 else s
            for s in kept]
