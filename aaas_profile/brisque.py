"""BRISQUE no-reference image quality, offline, exactly as piq 0.8.0 computes it.

BRISQUE (Blind/Referenceless Image Spatial QUality Evaluator) fits generalised Gaussian models to the
locally normalised luminance of an image and to products of neighbouring normalised values, at full and
at half resolution (36 features), and maps those features to a quality score with an epsilon-SVR (RBF
kernel) trained on the LIVE IQA database. The score is on LIVE's DMOS scale: usually 0 (best) to 100
(worst), lower is better; it can leave that range for images unlike LIVE's.

    A. Mittal, A. K. Moorthy, A. C. Bovik, "No-Reference Image Quality Assessment in the Spatial Domain",
    IEEE Transactions on Image Processing 21(12), 4695-4708, 2012.

piq's own ``piq.brisque`` downloads its SVR weights from GitHub at run time. This module instead reuses
piq's feature extraction and scaling unchanged and evaluates the SVR itself with weights the project
builds from the original LIVE release model (``allmodel``, ``allrange``) and ships in
``aaas_profile/data/brisque_live_svr.safetensors``. Rebuild them with::

    python -m aaas_profile.brisque build SRC_DIR [OUT_DIR]

The model is (c) 2011 The University of Texas at Austin, Laboratory for Image and Video Engineering
(LIVE, http://live.ece.utexas.edu) and Center for Perceptual Systems (CPS). Its copyright notice, which
must travel with every copy, is ``aaas_profile/data/BRISQUE_NOTICE.txt``; research that reports results
made with it cites the BRISQUE software release and the paper above.
"""

from __future__ import annotations

import argparse
import functools
import shutil
import sys
from pathlib import Path

import torch
from piq.brisque import _natural_scene_statistics, _scale_features
from piq.functional import imresize, rgb2yiq
from safetensors.torch import load_file, save_file

DATA_DIR = Path(__file__).parent / "data"
WEIGHTS_NAME = "brisque_live_svr.safetensors"
NOTICE_NAME = "BRISQUE_NOTICE.txt"
N_FEATURES = 36  # 18 per scale, two scales
MIN_SIDE = 64  # the project's minimum image side, see `brisque`
KERNEL_SIZE, KERNEL_SIGMA = 7, 7 / 6  # the paper's 7x7 Gaussian window, as piq's defaults


def parse_allmodel(path: Path) -> dict[str, torch.Tensor]:
    """Read a libsvm epsilon-SVR model file with an RBF kernel (the LIVE release's ``allmodel``).

    Returns float64 tensors ``sv_coef`` (n_sv,), ``sv`` (n_sv, 36), ``gamma`` and ``rho`` (scalars),
    with the decision function ``score = sum_i sv_coef_i * exp(-gamma * |f - sv_i|^2) - rho``.
    libsvm writes support vectors sparsely, so a feature absent from a line is 0.
    """
    lines = path.read_text().splitlines()
    header: dict[str, str] = {}
    start = None
    for i, line in enumerate(lines):
        key, _, value = line.strip().partition(" ")
        if key == "SV":
            start = i + 1
            break
        header[key] = value.strip()
    if start is None:
        raise ValueError(f"{path}: no 'SV' line, not a libsvm model file")
    if header.get("svm_type") != "epsilon_svr" or header.get("kernel_type") != "rbf":
        raise ValueError(f"{path}: expected an epsilon_svr model with an rbf kernel, got "
                         f"{header.get('svm_type')} / {header.get('kernel_type')}")

    coefs, vectors = [], []
    for line in lines[start:]:
        fields = line.split()
        if not fields:
            continue
        vector = [0.0] * N_FEATURES
        for field in fields[1:]:
            index, _, value = field.partition(":")
            if not 1 <= int(index) <= N_FEATURES:
                raise ValueError(f"{path}: feature index {index} outside 1..{N_FEATURES}")
            vector[int(index) - 1] = float(value)
        coefs.append(float(fields[0]))
        vectors.append(vector)
    if len(coefs) != int(header["total_sv"]):
        raise ValueError(f"{path}: header says {header['total_sv']} support vectors, found {len(coefs)}")

    f64 = torch.float64
    return {
        "sv_coef": torch.tensor(coefs, dtype=f64),
        "sv": torch.tensor(vectors, dtype=f64),
        "gamma": torch.tensor(float(header["gamma"]), dtype=f64),
        "rho": torch.tensor(float(header["rho"]), dtype=f64),
    }


def parse_allrange(path: Path) -> tuple[float, float, torch.Tensor]:
    """Read a libsvm ``svm-scale`` range file: target bounds and per-feature (min, max), float64 (36, 2)."""
    lines = [line.split() for line in path.read_text().splitlines() if line.strip()]
    if lines[0] != ["x"]:
        raise ValueError(f"{path}: expected an svm-scale range file starting with 'x'")
    lower, upper = float(lines[1][0]), float(lines[1][1])
    if len(lines) - 2 != N_FEATURES:
        raise ValueError(f"{path}: expected {N_FEATURES} feature ranges, found {len(lines) - 2}")
    ranges = torch.zeros(N_FEATURES, 2, dtype=torch.float64)
    for index, low, high in lines[2:]:
        ranges[int(index) - 1] = torch.tensor([float(low), float(high)], dtype=torch.float64)
    return lower, upper, ranges


def check_ranges_match_piq(lower: float, upper: float, ranges: torch.Tensor) -> None:
    """Raise ValueError unless piq's feature scaling is the affine map that the range file defines.

    piq keeps its ranges inside ``_scale_features``; two probe points (all features 0, all 1) pin down
    an affine map per feature, so agreeing there means agreeing everywhere.
    """
    probes = torch.stack([torch.zeros(N_FEATURES), torch.ones(N_FEATURES)]).double()
    ours = lower + (upper - lower) * (probes - ranges[:, 0]) / (ranges[:, 1] - ranges[:, 0])
    theirs = _scale_features(probes)
    if not torch.allclose(ours, theirs, rtol=1e-9, atol=1e-9):
        bad = sorted({int(i) + 1 for i in torch.nonzero(~torch.isclose(ours, theirs, 1e-9, 1e-9))[:, 1]})
        raise ValueError(f"allrange does not match the feature ranges piq uses (features {bad})")


def build_weights(model_dir: Path, out: Path) -> Path:
    """Build the bundled SVR weights from the LIVE BRISQUE release.

    Reads ``allmodel`` and ``allrange`` in `model_dir`, checks that ``allrange`` is the scaling piq
    applies (ValueError if not), writes ``sv_coef`` (774,), ``sv`` (774, 36), ``gamma`` and ``rho``
    (float64, exact to the model file's digits) to the safetensors file `out`, and copies the release's
    ``NOTICE.txt`` beside it as ``BRISQUE_NOTICE.txt``, as its licence requires. Returns `out`.
    """
    model_dir, out = Path(model_dir), Path(out)
    check_ranges_match_piq(*parse_allrange(model_dir / "allrange"))
    tensors = parse_allmodel(model_dir / "allmodel")
    out.parent.mkdir(parents=True, exist_ok=True)
    # One metadata key: safetensors writes several in hash order, and the file should rebuild byte for byte.
    about = (f"BRISQUE epsilon-SVR from the LIVE BRISQUE software release (allmodel), (c) 2011 The "
             f"University of Texas at Austin, see {NOTICE_NAME}. score = sum(sv_coef * exp(-gamma * "
             f"|f - sv|^2)) - rho, f = 36 features scaled to [-1, 1] as piq 0.8.0 does (allrange).")
    save_file(tensors, str(out), metadata={"about": about})
    shutil.copyfile(model_dir / "NOTICE.txt", out.parent / NOTICE_NAME)
    return out


@functools.lru_cache(maxsize=8)
def _svr_weights(device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, float, float]:
    """The bundled SVR as (sv_coef (774,), sv transposed (36, 774), gamma, rho), once per device/dtype."""
    path = DATA_DIR / WEIGHTS_NAME
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; run: python -m aaas_profile.brisque build SRC_DIR")
    weights = load_file(str(path))
    # Fresh copies: tensors from a safetensors buffer can sit at unaligned offsets, and BLAS then sums
    # in another order than it does for piq's freshly allocated ones (last-bit differences in float64).
    sv_coef = weights["sv_coef"].to(device=device, dtype=dtype, copy=True)
    sv_t = weights["sv"].to(device=device, dtype=dtype, copy=True).t()  # (36, 774), the layout piq uses
    return sv_coef, sv_t, weights["gamma"].item(), weights["rho"].item()


def brisque(x: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """BRISQUE score of each image, shape (N,), lower is better (LIVE DMOS scale, usually 0 to 100).

    Args:
        x: images, shape (N, 1, H, W) greyscale or (N, 3, H, W) RGB, values in [0, data_range].
            Any float dtype; the score has the same dtype and device, and is differentiable.
        data_range: the value of white (1.0 for [0, 1] images, 255 for 8-bit ones).

    Equal to ``piq.brisque(x, data_range=data_range, reduction='none')`` with piq's weights in place:
    colour is reduced to MATLAB-style rounded luma, piq extracts and scales the 36 features, and the
    LIVE SVR (Mittal, Moorthy, Bovik 2012) maps them to the score. See the module docstring for the
    model's notice.

    Raises:
        ValueError: on a wrong shape, values outside [0, data_range], a constant image, or a side below
            64 px. The minimum is the project's: features come from a 7x7 window at full and at half
            size, and below 64 px the half-size image is under 32 px, where the window's zero padding
            and the wrap-around of the neighbour products touch a large share of the pixels, so the
            statistics no longer describe the image the SVR was trained on (LIVE images are ~768x512).
    """
    if x.dim() != 4 or x.size(1) not in (1, 3):
        raise ValueError(f"BRISQUE needs images shaped (N, 1 or 3, H, W), got {tuple(x.shape)}")
    if min(x.shape[-2:]) < MIN_SIDE:
        raise ValueError(f"BRISQUE needs images of at least {MIN_SIDE} px on each side, "
                         f"got {x.size(-2)}x{x.size(-1)}")
    if x.min() < 0 or x.max() > data_range:
        raise ValueError(f"BRISQUE needs values in [0, {data_range}], got [{x.min():g}, {x.max():g}]")
    flat = x.flatten(1).amax(dim=1) == x.flatten(1).amin(dim=1)
    if flat.any():
        raise ValueError(f"BRISQUE is undefined for a constant image (index {flat.nonzero()[:, 0].tolist()})")

    luma = x / float(data_range) * 255
    if luma.size(1) == 3:
        luma = torch.round(rgb2yiq(luma)[:, :1])  # MATLAB's rgb2gray on uint8 rounds the luma
    half = imresize(luma, sizes=(luma.size(2) // 2, luma.size(3) // 2))
    features = torch.cat([_natural_scene_statistics(luma, KERNEL_SIZE, KERNEL_SIGMA),
                          _natural_scene_statistics(half, KERNEL_SIZE, KERNEL_SIGMA)], dim=-1)
    return _svr_score(_scale_features(features))


def _svr_score(scaled: torch.Tensor) -> torch.Tensor:
    """Epsilon-SVR with RBF kernel on scaled features (N, 36): sum_i c_i exp(-gamma |f - sv_i|^2) - rho.

    The operations and their order are piq's, so the result matches it to the last bit for equal weights.
    """
    sv_coef, sv_t, gamma, rho = _svr_weights(scaled.device, scaled.dtype)
    sq_dist = (scaled.unsqueeze(-1) - sv_t.unsqueeze(0)).pow(2).sum(dim=1)  # (N, 774)
    return torch.exp(-sq_dist * gamma) @ sv_coef - rho


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aaas_profile.brisque",
                                     description="Rebuild the bundled BRISQUE SVR weights.")
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="build weights from the LIVE BRISQUE release files")
    build.add_argument("src_dir", type=Path, help="folder with allmodel, allrange and NOTICE.txt")
    build.add_argument("out_dir", type=Path, nargs="?", default=DATA_DIR,
                       help=f"where to write {WEIGHTS_NAME} and {NOTICE_NAME} (default: the package's data/)")
    args = parser.parse_args(argv)
    try:
        out = build_weights(args.src_dir, args.out_dir / WEIGHTS_NAME)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {out} and {out.parent / NOTICE_NAME}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
