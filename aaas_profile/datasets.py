"""The bundled image sets, built only from images that ship inside installed Python packages.

Three sets, each written with a ``PROVENANCE.md`` (package and version, original file, what was done to it,
licence as the package documents it):

* ``sample`` (below): eight 256 px test photographs for sweeps;
* ``faces``: the 100 face crops of scikit-image's LFW subset (``skimage/data/lfw_subset.npy``, 25 x 25 px,
  greyscale), saved unchanged as PNGs; every tenth face goes to ``eval/`` (held out from training, for sweeps);
* ``scenes``: thirteen photographs and textures from scikit-image, matplotlib and scikit-learn, shorter side
  resized to 128 px (Lanczos) and otherwise uncropped; ``coffee`` and ``rocket`` go to ``eval/``.

Training (``aaas_profile.train``) reads only the files directly in a folder, so ``eval/`` stays unseen; its
random crops and flips are the only augmentation (see ``train.augment``).

``build_sample(out, size)`` writes eight RGB PNGs, each the centre square of an image from scikit-image's
``skimage/data`` folder or matplotlib's ``mpl-data/sample_data`` folder (files inside those wheels, never
fetched from the network), resized with `aaas_profile.images.load_image` (shorter side to `size` with
Lanczos, centre crop; greyscale copied to R, G and B), and a ``PROVENANCE.md`` naming for each PNG the
package and version, the original file, what was done to it and its licence as the package documents it.

Command line::

    python -m aaas_profile.datasets sample [--out datasets/sample] [--size 256]
    python -m aaas_profile.datasets faces [--out datasets/faces]
    python -m aaas_profile.datasets scenes [--out datasets/scenes] [--size 128]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from aaas_profile.images import load_image, open_image, pil_to_rgb


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


# ---- training sets -------------------------------------------------------------------------------------------

LFW_FILE = "skimage/data/lfw_subset.npy"
LFW_FACES = 100  # the array's first 100 images are faces, the next 100 background patches (its docstring)
FACES_EVAL_EVERY = 10  # faces 9, 19, ..., 99 are held out in eval/
FACES_LICENCE = "other (LFW news photographs, no licence stated by LFW or scikit-image, distributed for research)"
LFW_NOTE = (
    "scikit-image's `skimage.data.lfw_subset()` docstring: \"a subset of the LFW database containing 100 faces "
    "and 100 non-faces ... The faces were randomly selected from the LFW dataset ... The cropped ROIs have been "
    "resized to a 25 x 25 pixels\"; it cites Huang, Mattar, Lee and Learned-Miller (2012), \"Learning to align "
    "from scratch\", NIPS, and http://vis-www.cs.umass.edu/lfw/. Labeled Faces in the Wild (Huang, Ramesh, Berg "
    "and Learned-Miller 2007) is a set of news photographs of public figures collected from the web; it is "
    "distributed for research without a stated licence, and neither scikit-image (whose BSD-3-Clause licence "
    "covers its code) nor LFW gives one for these crops."
)

SKLEARN_README = "`sklearn/datasets/images/README.txt` in the scikit-learn wheel"
SCENES: tuple[SampleImage, ...] = (
    *SAMPLE,
    SampleImage(
        "brick.png", "scikit-image", "skimage/data/brick.png", "texture (greyscale): a brick wall",
        "From CC0Textures, \"licensed under the Creative Commons CC0 License\".", SKIMAGE_DOC.format("brick"),
    ),
    SampleImage(
        "grass.png", "scikit-image", "skimage/data/grass.png", "texture (greyscale): grass",
        "From DeviantArt (linolafett), \"licensed under the Creative Commons CC0 License\".",
        SKIMAGE_DOC.format("grass"),
    ),
    SampleImage(
        "gravel.png", "scikit-image", "skimage/data/gravel.png", "texture (greyscale): gravel",
        "From CC0Textures, \"licensed under the Creative Commons CC0 License\".", SKIMAGE_DOC.format("gravel"),
    ),
    SampleImage(
        "china.png", "scikit-learn", "sklearn/datasets/images/china.jpg",
        "scene: a Chinese temple roof against trees",
        "CC BY 2.0 (https://creativecommons.org/licenses/by/2.0/); \"Some rights reserved by danielbuechele\", "
        "Flickr photo 6061409035, retrieved 2011 by Robert Layton.",
        SKLEARN_README,
    ),
    SampleImage(
        "flower.png", "scikit-learn", "sklearn/datasets/images/flower.jpg",
        "scene: a flower (dahlia) close-up",
        "CC BY 2.0 (https://creativecommons.org/licenses/by/2.0/); photographer vultilion on Flickr, photo "
        "6056698931, retrieved 2011 by Robert Layton (the README's attribution line repeats danielbuechele).",
        SKLEARN_README,
    ),
)
SCENES_EVAL = ("coffee.png", "rocket.png")
SCENES_LICENCE = "CC-BY-2.0 AND CC0-1.0 AND public-domain (per image in PROVENANCE.md)"


def _lfw_faces() -> tuple[np.ndarray, str]:
    """The LFW subset's 100 faces, (100, 25, 25) uint8, and the scikit-image version that shipped them."""
    item = SampleImage("", "scikit-image", LFW_FILE, "", "", "")
    faces = np.load(source_path(item))[:LFW_FACES]
    if faces.dtype != np.uint8:  # older releases stored floats in [0, 1]
        faces = np.round(np.clip(faces, 0, 1) * 255).astype(np.uint8) if faces.max() <= 1 else faces.astype(np.uint8)
    return faces, importlib.metadata.version("scikit-image")


def build_faces(out: Path | str) -> list[Path]:
    """Write the 100 LFW face crops as 25 x 25 greyscale PNGs (unchanged pixels): 90 in `out`, every tenth
    in `out/eval`; and PROVENANCE.md. Returns the PNG paths."""
    out = Path(out)
    (out / "eval").mkdir(parents=True, exist_ok=True)
    faces, version = _lfw_faces()
    written = []
    for index, face in enumerate(faces):
        folder = out / "eval" if index % FACES_EVAL_EVERY == FACES_EVAL_EVERY - 1 else out
        target = folder / f"lfw_{index:03d}.png"
        PILImage.fromarray(face).save(target, optimize=True)
        written.append(target)
    n_eval = sum(1 for p in written if p.parent.name == "eval")
    intro = (
        "Written by `python -m aaas_profile.datasets faces` (`aaas_profile/datasets.py`) from the file "
        f"`{LFW_FILE}` that ships inside the `scikit-image` {version} wheel (no network access): the first "
        f"{LFW_FACES} images of that array, which its docstring says are faces, each a {faces.shape[1]} x "
        f"{faces.shape[2]} px greyscale crop saved unchanged as an 8-bit greyscale PNG `lfw_NNN.png` (NNN = its "
        f"index in the array). Faces whose index ends in 9 ({n_eval} of them) are in `eval/`, held out from "
        f"training for sweeps; the other {len(written) - n_eval} are the training set. Training upsamples them "
        "to the model's resolution after a random crop and flip (`aaas_profile/train.py`, `augment`)."
    )
    lines = [
        "# Faces training set: provenance", "", f"licence: {FACES_LICENCE}", "", textwrap.fill(intro, 100), "",
        "## Source and licence", "", textwrap.fill(LFW_NOTE, 100), "",
    ]
    (out / "PROVENANCE.md").write_text("\n".join(lines), encoding="utf-8")
    return written


def _resize_shorter(path: Path, side: int) -> tuple[np.ndarray, tuple[int, int]]:
    """An image file as uint8 RGB with its shorter side resized to `side` px (Lanczos, aspect kept)."""
    rgb = pil_to_rgb(open_image(path))
    height, width = rgb.shape[:2]
    scale = side / min(width, height)
    size = (max(side, round(width * scale)), max(side, round(height * scale)))
    im = PILImage.fromarray(np.round(rgb * 255).astype(np.uint8))
    return np.asarray(im.resize(size, PILImage.Resampling.LANCZOS)), (width, height)


def build_scenes(out: Path | str, size: int = 128) -> list[Path]:
    """Write the scenes PNGs (shorter side `size` px, whole image, RGB) into `out`, `SCENES_EVAL` into
    `out/eval`, and PROVENANCE.md. Returns the PNG paths."""
    out = Path(out)
    (out / "eval").mkdir(parents=True, exist_ok=True)
    intro = (
        "Written by `python -m aaas_profile.datasets scenes` (`aaas_profile/datasets.py`). Every image is a "
        "file that ships inside an installed Python wheel (listed in the wheel's RECORD; no network access). "
        "Each was decoded to RGB (greyscale copied to all three channels) and resized with Lanczos so that its "
        f"shorter side is {size} px, keeping the whole picture and its aspect ratio; nothing else was changed. "
        f"{' and '.join(SCENES_EVAL)} are in `eval/`, held out from training for sweeps. Training takes random "
        "square crops and flips of these (`aaas_profile/train.py`, `augment`)."
    )
    lines = [
        "# Scenes training set: provenance", "", f"licence: {SCENES_LICENCE}", "", textwrap.fill(intro, 100), "",
    ]
    written = []
    for item in SCENES:
        pixels, (width, height) = _resize_shorter(source_path(item), size)
        target = (out / "eval" if item.file in SCENES_EVAL else out) / item.file
        PILImage.fromarray(pixels).save(target, optimize=True)
        written.append(target)
        lines += [
            f"## {target.relative_to(out).as_posix()}",
            "",
            f"- Source: `{item.distribution}` {importlib.metadata.version(item.distribution)}, file `{item.path}` "
            f"({width} x {height} px)",
            f"- Subject: {item.subject}",
            f"- Done: resized to {pixels.shape[1]} x {pixels.shape[0]} (Lanczos)",
            f"- Licence / copyright: {item.licence}",
            f"- Documented in: {item.documented_in}",
            "",
        ]
    (out / "PROVENANCE.md").write_text("\n".join(lines), encoding="utf-8")
    return written


def data_licence(folder: Path | str) -> str | None:
    """The `licence:` line of a data folder's PROVENANCE.md (as the builders above write it), or None."""
    path = Path(folder) / "PROVENANCE.md"
    if not path.is_file():
        return None
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines()[:20]:
        if line.lower().startswith("licence:"):
            return line.split(":", 1)[1].strip()
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aaas_profile.datasets",
                                     description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    sample = commands.add_parser("sample", help="build the bundled sample set from packaged images")
    sample.add_argument("--out", type=Path, default=Path("datasets/sample"), help="output folder")
    sample.add_argument("--size", type=int, default=256, help="side of the square PNGs, px")
    faces = commands.add_parser("faces", help="build the faces training set (LFW subset from scikit-image)")
    faces.add_argument("--out", type=Path, default=Path("datasets/faces"), help="output folder")
    scenes = commands.add_parser("scenes", help="build the scenes training set from packaged photographs")
    scenes.add_argument("--out", type=Path, default=Path("datasets/scenes"), help="output folder")
    scenes.add_argument("--size", type=int, default=128, help="shorter side of the PNGs, px")
    args = parser.parse_args(argv)
    if getattr(args, "size", 16) < 16:
        parser.error("--size must be at least 16")
    try:
        if args.command == "sample":
            paths = build_sample(args.out, args.size)
        elif args.command == "faces":
            paths = build_faces(args.out)
        else:
            paths = build_scenes(args.out, args.size)
    except (FileNotFoundError, importlib.metadata.PackageNotFoundError) as err:
        parser.exit(1, f"error: {err} (install the package that ships it: pip install scikit-learn / "
                       "scikit-image / matplotlib)\n")
    total = sum(p.stat().st_size for p in paths)
    print(f"wrote {len(paths)} images ({total / 1e6:.2f} MB) and PROVENANCE.md to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
