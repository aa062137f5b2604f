"""The bundled sample image set, built only from images that ship inside installed Python packages.

``build_sample(out, size)`` writes eight RGB PNGs, each the centre square of an image from scikit-image's
``skimage/data`` folder or matplotlib's ``mpl-data/sample_data`` folder (files inside those wheels, never
fetched from the network), resized with `aaas_profile.images.load_image` (shorter side to `size` with
Lanczos, centre crop; greyscale copied to R, G and B), and a ``PROVENANCE.md`` naming for each PNG the
package and version, the original file, what was done to it and its licence as the package documents it.

Command line::

    python -m aaas_profile.datasets sample [--out datasets/sample] [--size 256]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from aaas_profile.images import load_image, open_image


@dataclass(frozen=True)
class SampleImage:
    """One sample PNG: where it comes from and what its source package says about its licence."""

    file: str  # output file name
    distribution: str  # the installed distribution (pip name) that ships the original
    path: str  # the original, relative to the distribution's install root
    subject: str
    licence: str  # as the package documents it
    documented_in: str  # where the package says so


SKIMAGE_DOC = "docstring of `skimage.data.{}`"

SAMPLE: tuple[SampleImage, ...] = (
    SampleImage(
        "astronaut.png", "scikit-image", "skimage/data/astronaut.png",
        "person: astronaut Eileen Collins, portrait with flag and shuttle model",
        "Downloaded from the NASA Great Images database. \"No known copyright restrictions, released into "
        "the public domain.\"",
        SKIMAGE_DOC.format("astronaut"),
    ),
    SampleImage(
        "grace_hopper.png", "matplotlib", "matplotlib/mpl-data/sample_data/grace_hopper.jpg",
        "person: portrait of Commodore Grace M. Hopper in U.S. Navy uniform",
        "matplotlib ships no per-file notice for its sample data (its LICENSE covers the code and fonts; "
        "matplotlib issue #4930 notes the missing notices). It was added as a public-domain image in place "
        "of \"Lena\" (matplotlib PR #1599, 2012): the U.S. Navy portrait of Grace Hopper, a work of the "
        "U.S. federal government.",
        "matplotlib PR #1599 and issue #4930 (github.com/matplotlib/matplotlib)",
    ),
    SampleImage(
        "chelsea.png", "scikit-image", "skimage/data/chelsea.png",
        "animal: Chelsea the cat, close-up",
        "\"No copyright restrictions. CC0 by the photographer (Stefan van der Walt).\"",
        SKIMAGE_DOC.format("chelsea"),
    ),
    SampleImage(
        "coffee.png", "scikit-image", "skimage/data/coffee.png",
        "object: cup of coffee on a saucer, wooden table",
        "Courtesy of Pikolo Espresso Bar. \"No copyright restrictions. CC0 by the photographer "
        "(Rachel Michetti).\"",
        SKIMAGE_DOC.format("coffee"),
    ),
    SampleImage(
        "coins.png", "scikit-image", "skimage/data/coins.png",
        "objects (greyscale): Greek coins from Pompeii",
        "Downloaded from the Brooklyn Museum Collection. \"No known copyright restrictions.\"",
        SKIMAGE_DOC.format("coins"),
    ),
    SampleImage(
        "camera.png", "scikit-image", "skimage/data/camera.png",
        "scene (greyscale): a man with a camera on a tripod, outdoors",
        "\"No copyright restrictions. CC0 by the photographer (Lav Varshney).\"",
        SKIMAGE_DOC.format("camera"),
    ),
    SampleImage(
        "rocket.png", "scikit-image", "skimage/data/rocket.jpg",
        "scene: Falcon 9 with DSCOVR on the launch pad at dusk",
        "Launch photo by SpaceX, \"released in the public domain\".",
        SKIMAGE_DOC.format("rocket"),
    ),
    SampleImage(
        "hubble_deep_field.png", "scikit-image", "skimage/data/hubble_deep_field.jpg",
        "scene: Hubble eXtreme Deep Field, galaxies on black",
        "Captured by NASA; \"may be freely used in the public domain\".",
        SKIMAGE_DOC.format("hubble_deep_field"),
    ),
)


def source_path(item: SampleImage) -> Path:
    """The original file inside the installed distribution; FileNotFoundError if it is not on disk."""
    dist = importlib.metadata.distribution(item.distribution)
    shipped = {str(f) for f in dist.files or ()}  # the wheel's RECORD: files installed with the package
    path = Path(str(dist.locate_file(item.path)))
    if item.path not in shipped or not path.is_file():
        raise FileNotFoundError(f"{item.path} is not shipped in {item.distribution} {dist.version}")
    return path


def provenance(size: int) -> str:
    """PROVENANCE.md for the sample built at `size` px from the installed package versions."""
    intro = (
        "Written by `python -m aaas_profile.datasets sample` (`aaas_profile/datasets.py`). Every image is a "
        "file that ships inside an installed Python wheel (listed in the wheel's RECORD; no network access). "
        "Each was decoded to RGB (greyscale copied to all three channels), resized so that its shorter side "
        f"is {size} px with Lanczos antialiasing, centre-cropped to {size} x {size} px (one resampling of "
        "the centre square, as `aaas_profile.images.load_image` does) and saved as an 8-bit RGB PNG. "
        "Nothing else was changed."
    )
    licences = (
        "The packages' own code licences (scikit-image: BSD-3-Clause; matplotlib: the PSF-based matplotlib "
        "licence) do not speak for these photographs; the licence lines below are what each package says "
        "about the image itself, quoted where it gives a wording."
    )
    lines = ["# Sample images: provenance", "", textwrap.fill(intro, 100), ""]
    lines += [textwrap.fill(licences, 100), ""]
    for item in SAMPLE:
        path = source_path(item)
        version = importlib.metadata.version(item.distribution)
        width, height = open_image(path).size
        side = min(width, height)
        lines += [
            f"## {item.file}",
            "",
            f"- Source: `{item.distribution}` {version}, file `{item.path}` ({width} x {height} px)",
            f"- Subject: {item.subject}",
            f"- Done: centre {side} x {side} square (left {(width - side) / 2:g}, "
            f"top {(height - side) / 2:g}), resized to {size} x {size} (Lanczos)",
            f"- Licence / copyright: {item.licence}",
            f"- Documented in: {item.documented_in}",
            "",
        ]
    return "\n".join(lines)


def build_sample(out: Path | str, size: int = 256) -> list[Path]:
    """Write the sample PNGs and PROVENANCE.md into `out` (created if needed); return the PNG paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for item in SAMPLE:
        rgb = load_image(source_path(item), size).permute(1, 2, 0).numpy()
        pixels = np.round(rgb * 255).astype(np.uint8)
        target = out / item.file
        PILImage.fromarray(pixels).save(target, optimize=True)
        written.append(target)
    (out / "PROVENANCE.md").write_text(provenance(size), encoding="utf-8")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aaas_profile.datasets",
                                     description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    sample = commands.add_parser("sample", help="build the bundled sample set from packaged images")
    sample.add_argument("--out", type=Path, default=Path("datasets/sample"), help="output folder")
    sample.add_argument("--size", type=int, default=256, help="side of the square PNGs, px")
    args = parser.parse_args(argv)
    if args.size < 16:
        parser.error("--size must be at least 16")
    paths = build_sample(args.out, args.size)
    total = sum(p.stat().st_size for p in paths)
    print(f"wrote {len(paths)} images ({total / 1e6:.2f} MB) and PROVENANCE.md to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
