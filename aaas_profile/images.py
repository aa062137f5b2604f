"""Load a folder of the user's images as square float tensors for the sweep.

Every image becomes a float32 tensor of shape (3, R, R) with values in [0, 1], made in three steps:

1. Decode to RGB in [0, 1], whatever the file's PIL mode (`pil_to_rgb`):

   - ``RGB``, ``L``, ``1``: divided by 255 (grey is copied to all three channels).
   - ``P`` (palette): expanded to RGB, or to RGBA where the palette has a transparent entry.
   - ``RGBA``, ``LA``, ``PA`` and other modes with alpha: composited onto **white**,
     ``rgb * alpha + (1 - alpha)``. Dropping alpha instead would expose whatever colour the
     encoder left under fully transparent pixels (often black, sometimes garbage), which the
     full-reference metrics would then score; white is what a page or a slide shows.
   - ``CMYK`` (and any other colour space): PIL's own conversion to RGB.
   - ``I;16`` (16-bit grey PNG): divided by 65535, the real bit depth, instead of PIL's
     ``convert("L")`` which clips everything above 255 to white. PNG stores every sample
     scaled to the full range of its bit depth, so 65535 is right even for a 12-bit source.
   - ``I`` (32-bit int): PNG, JPEG and BMP can only yield it from 16-bit grey (older Pillow
     opens 16-bit PNGs as ``I``), so it is divided by 65535 as well and clipped to [0, 1].
   - ``F`` (32-bit float): taken to be in [0, 1] already, and clipped.

   The EXIF orientation tag is applied first, so a phone photo is the way a viewer shows it.

2. Resize so that the shorter side is R, with Lanczos antialiasing (done in float per channel, so
   16-bit precision survives), and

3. crop the centre R x R square (both done in one resampling of the centre square).

An image whose shorter side is under ``max(16, R // 4)`` pixels is refused: blowing it up more than 4x
would make the model inpaint, and the metrics score, interpolation blur rather than an image, and below
16 px (a 1x1 file, an icon) there is no image content left at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image as PILImage
from PIL import ImageOps

from aaas_profile.errors import UserError, not_found

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


class ImageError(UserError, ValueError):
    """A bad input image or image folder; the message is one line and names the file."""


@dataclass
class Image:
    """One input image: `image_id`, its file name relative to the folder; `tensor`, (3, R, R) in [0, 1];
    `sha256`, its file's content hash (``file_sha256``), which is what the image is (docs/run-folder.md,
    "Identity")."""

    image_id: str
    tensor: torch.Tensor
    sha256: str = ""


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, hex: an image's or mask's identity in a run folder. The bytes, not the
    decoded pixels: cheap, independent of the decoder's version, and any edit (even one that re-encodes the
    same pixels) is seen; re-saving an unchanged image therefore counts as a change (docs/run-folder.md)."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def min_side(resolution: int) -> int:
    """Smallest shorter side (px) accepted at `resolution`: at most 4x upscaling, and never under 16 px."""
    return max(16, resolution // 4)


def is_image_file(path: Path) -> bool:
    """True for a visible file whose extension (any case) is PNG, JPEG or BMP."""
    return path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_SUFFIXES


def open_image(path: Path) -> PILImage.Image:
    """Open and fully decode `path` (EXIF orientation applied); ImageError if it cannot be read."""
    try:
        with PILImage.open(path) as im:
            im.load()  # decode now so a truncated file fails here, not later
            return ImageOps.exif_transpose(im)
    except Exception as exc:  # PIL raises many types (OSError, SyntaxError, DecompressionBombError ...)
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ImageError(f"{path}: cannot read image ({reason})") from exc


def pil_to_rgb(im: PILImage.Image) -> np.ndarray:
    """Decode a PIL image of any mode to float32 (H, W, 3) RGB in [0, 1] (see the module docstring)."""
    mode = im.mode
    if mode.startswith("I;16"):
        grey = np.asarray(im, dtype=np.float32) / 65535.0
        return np.repeat(grey[..., None], 3, axis=2)
    if mode == "I":
        grey = np.clip(np.asarray(im, dtype=np.float64) / 65535.0, 0.0, 1.0).astype(np.float32)
        return np.repeat(grey[..., None], 3, axis=2)
    if mode == "F":
        grey = np.clip(np.asarray(im, dtype=np.float32), 0.0, 1.0)
        return np.repeat(grey[..., None], 3, axis=2)
    has_alpha = "A" in im.getbands() or "a" in im.getbands() or "transparency" in im.info
    if not has_alpha:
        return np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    rgba = np.asarray(im.convert("RGBA"), dtype=np.float32) / 255.0
    alpha = rgba[..., 3:4]
    return rgba[..., :3] * alpha + (1.0 - alpha)  # composite onto white


def square_box(width: int, height: int) -> tuple[float, float, float, float]:
    """The centre square of a width x height image, as a PIL box (left, top, right, bottom)."""
    side = min(width, height)
    left, top = (width - side) / 2, (height - side) / 2
    return (left, top, left + side, top + side)


def resize_crop(rgb: np.ndarray, resolution: int) -> np.ndarray:
    """Shorter side to `resolution` (Lanczos), centre square crop: (H, W, 3) -> (R, R, 3) in [0, 1]."""
    height, width = rgb.shape[:2]
    box = square_box(width, height)
    channels = [
        np.asarray(
            PILImage.fromarray(np.ascontiguousarray(rgb[..., c], dtype=np.float32)).resize(
                (resolution, resolution), PILImage.Resampling.LANCZOS, box=box
            )
        )
        for c in range(3)
    ]
    return np.clip(np.stack(channels, axis=2), 0.0, 1.0)  # Lanczos overshoots a little at edges


def load_image(path: Path | str, resolution: int) -> torch.Tensor:
    """Read one image file as float32 (3, resolution, resolution) in [0, 1]; ImageError if unusable."""
    path = Path(path)
    im = open_image(path)
    smallest = min_side(resolution)
    if min(im.size) < smallest:
        raise ImageError(
            f"{path}: {im.size[0]}x{im.size[1]} px is too small for resolution {resolution} "
            f"(shorter side must be at least {smallest} px, i.e. at most 4x upscaling)"
        )
    rgb = resize_crop(pil_to_rgb(im), resolution)
    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).float()


def list_images(folder: Path) -> list[Path]:
    """The image files directly inside `folder`, sorted by name; subfolders and hidden files are ignored."""
    return sorted((p for p in folder.iterdir() if is_image_file(p)), key=lambda p: p.name)


def load_folder(folder: Path | str, resolution: int, limit: int | None = None) -> list[Image]:
    """Load every image (or the first `limit`, by sorted name) in `folder` at `resolution`.

    All files are decoded and checked before anything is returned, so a sweep fails on bad input before
    it starts any work. Raises ImageError for a missing folder, a folder without PNG/JPEG/BMP files, or
    the first unusable file (the message counts any further bad ones).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageError(not_found(folder, "image folder", folder=True))
    if limit is not None and limit < 1:
        raise ImageError(f"{folder}: image limit must be at least 1, got {limit}")
    paths = list_images(folder)
    if not paths:
        raise ImageError(f"{folder}: no images (expected .png, .jpg, .jpeg or .bmp files)")
    paths = paths[:limit]
    images: list[Image] = []
    errors: list[ImageError] = []
    for path in paths:
        try:
            tensor = load_image(path, resolution)
            images.append(Image(image_id=path.relative_to(folder).as_posix(), tensor=tensor,
                                sha256=file_sha256(path)))
        except ImageError as exc:
            errors.append(exc)
    if errors:
        more = f" (and {len(errors) - 1} more bad file(s) in {folder})" if len(errors) > 1 else ""
        raise ImageError(f"{errors[0]}{more}")
    return images
