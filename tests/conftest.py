"""Shared fixtures: a small UNet2DModel saved in diffusers format, a folder of images, an offline hub cache.

The model is real (diffusers' UNet2DModel with random weights) and is loaded through the same code path as a
hub model; it is only small, so sweeps run in seconds on a CPU.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

RESOLUTION = 64


@pytest.fixture
def one_torch_thread():
    """Torch on one thread for the test, restored after: small networks and UNets gain nothing from threads,
    and on a busy CPU the workers cost far more than they give."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def no_ray_left_running():
    """A test that reached Ray through the command line (`--ray local`) leaves it running in this process; shut
    it down after the test, so the next `ray.init` (tests/sweep/test_shard.py) starts a fresh one."""
    yield
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()


@pytest.fixture(autouse=True)
def offline_hub(tmp_path_factory, monkeypatch):
    """No test touches the network or the user's Hugging Face cache."""
    home = tmp_path_factory.mktemp("hf-home")
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return home


def make_unet(resolution: int = RESOLUTION, seed: int = 0, out_channels: int = 3):
    """``out_channels`` 6: a learned-variance model (epsilon, then guided-diffusion's variance interpolation)."""
    from diffusers import UNet2DModel

    torch.manual_seed(seed)
    return UNet2DModel(
        sample_size=resolution,
        in_channels=3,
        out_channels=out_channels,
        layers_per_block=1,
        block_out_channels=(16, 32, 32),  # attention only at 16 px keeps a forward pass in milliseconds
        down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        norm_num_groups=8,
    )


def save_model(folder: Path, layout: str = "pipeline", resolution: int = RESOLUTION, seed: int = 0) -> Path:
    """Save a small UNet the way diffusers does: a pipeline folder (unet/, scheduler/) or a flat UNet folder."""
    from diffusers import DDPMScheduler

    unet = make_unet(resolution, seed)
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear")
    if layout == "pipeline":
        unet.save_pretrained(folder / "unet")
        scheduler.save_pretrained(folder / "scheduler")
        (folder / "model_index.json").write_text(json.dumps({
            "_class_name": "DDPMPipeline", "unet": ["diffusers", "UNet2DModel"],
            "scheduler": ["diffusers", "DDPMScheduler"],
        }))
    else:
        unet.save_pretrained(folder)
        scheduler.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    return save_model(tmp_path_factory.mktemp("tiny-ddpm"))


def write_images(folder: Path, n: int = 2, size: int = 80) -> Path:
    """Smooth, distinct RGB test images (gradients and a disc), larger than the model so they get resized."""
    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:size, 0:size] / size
    for i in range(n):
        disc = ((xx - 0.3 - 0.2 * i) ** 2 + (yy - 0.5) ** 2 < 0.05).astype(float)
        rgb = np.stack([xx, yy * (1 - 0.3 * i), 0.5 * disc + 0.25], axis=-1)
        Image.fromarray((rgb * 255).astype(np.uint8)).save(folder / f"img{i}.png")
    return folder


def sweep_config(model_dir: Path, image_dir: Path, out: Path, **overrides):
    """A fast sweep on the small model: step counts 5 and 10 without resampling, seed 0, on the CPU in fp32
    (pinned: "auto" picks CUDA where there is one, and these tests compare with CPU runs; the gpu-marked
    tests pass device="cuda")."""
    from aaas_profile.sweep import SweepConfig

    values = dict(model=str(model_dir), data=str(image_dir), masks="half,thick", steps="5,10", seeds="0",
                  jump_length=1, jump_n_sample=1, out=str(out), batch_size=4, save_images=0, device="cpu",
                  dtype="fp32")
    return SweepConfig.from_sources(**{**values, **overrides})


@pytest.fixture
def image_dir(tmp_path) -> Path:
    return write_images(tmp_path / "images")


# How far one metric may move between two runs of the same cells that are not the same computation (another
# batch size, thread count or ATEN_CPU_CAPABILITY): the float32 UNet then sums in another order and the outputs
# differ in the last bits. Measured on the sweep tests' cells (batch 1 vs 4 and vs 8, which gave the same
# values as 4, 1 vs 2 threads, capability
# default/avx2 vs avx512), largest absolute difference: tv 3.0e-8, mdsi 2.4e-7, vif 7.2e-7, haarpsi 3.2e-6,
# dss 3.2e-6, brisque 0.013. The continuous metrics get about 30 times that. BRISQUE is not continuous in its
# input: it rounds RGB to integer luma first (MATLAB's rgb2gray), so a last-bit change can move one pixel by a
# whole grey level; raising one pixel of these 64-px outputs by one level moved the score by 0.014 (median) and
# 1.13 (largest, of 480 tries), so BRISQUE is allowed one such step.
SCORE_ATOL = {"tv": 1e-6, "mdsi": 1e-5, "vif": 3e-5, "haarpsi": 1e-4, "dss": 1e-4, "brisque": 1.2}


def assert_scores_close(a, b, key) -> None:
    """Two score tables hold the same rows (by `key`, which includes "metric") with values within SCORE_ATOL."""
    merged = a.merge(b, on=key, suffixes=("_a", "_b"))
    assert len(merged) == len(a) == len(b)
    for metric, rows in merged.groupby("metric"):
        difference = (rows["value_a"] - rows["value_b"]).abs()
        assert (difference <= SCORE_ATOL[metric]).all(), f"{metric}: differs by up to {difference.max():.3g}"


class OracleUNet(torch.nn.Module):
    """A stand-in UNet that knows the originals: it returns exactly the noise that separates the sample it is
    given from the original at the timestep it is given, eps = (x_t − √ᾱ_t·x0) / √(1 − ᾱ_t) (Ho et al. 2020,
    eq. 4 solved for the noise). A sampler that walks the right timesteps then predicts x0 exactly at every
    step and must return the original, also in the generated region. ``variance`` (learned-variance models,
    6 channels): a second output half that is not epsilon. Every call's implied noise is kept in ``seen``, with
    the timestep of the call's first image.

    ``shift``: the oracle reads the timestep it is given as t + shift (clamped to the training range), as a
    sampler would that handed the UNet a timestep off by ``shift``.

    Images are matched to batch rows by position. With several step counts in one batch, the rows of finished
    chains drop out of the UNet's batch; give ``calls`` (each image's UNet calls, images in ascending order of
    step count, which is the samplers' chain order) and call k takes the images with more than k calls."""

    def __init__(self, originals: torch.Tensor, schedule: dict, variance: float | None = None, shift: int = 0,
                 calls: list[int] | None = None, alphas_cumprod: torch.Tensor | None = None):
        super().__init__()
        from diffusers import RePaintScheduler

        self.register_buffer("x0", originals.double() * 2 - 1)
        if alphas_cumprod is None:  # diffusers' (β in float32); a sampler on float64 ᾱ passes its own
            alphas_cumprod = RePaintScheduler(**schedule).alphas_cumprod
        self.register_buffer("alphas_cumprod", alphas_cumprod.double())
        self.variance, self.shift, self.calls = variance, shift, calls
        self.seen: list[tuple[int, torch.Tensor]] = []
        # the samplers read the device and dtype from the first parameter
        self.anchor = torch.nn.Parameter(torch.zeros(1), requires_grad=False)

    def forward(self, sample, t):
        if self.calls is None:
            assert len(set(t.tolist())) == 1, "one step count per batch, or give calls"
            x0 = self.x0
        else:
            x0 = self.x0[[i for i, c in enumerate(self.calls) if c > len(self.seen)]]
        assert x0.shape[0] == sample.shape[0], "the batch holds other images than the oracle expects"
        t_read = (t.long() + self.shift).clamp(0, len(self.alphas_cumprod) - 1)
        alpha_bar = self.alphas_cumprod[t_read].view(-1, 1, 1, 1)
        eps = (sample.double() - alpha_bar.sqrt() * x0) / (1 - alpha_bar).sqrt()
        self.seen.append((int(t[0]), eps.float()))
        out = eps.float()
        if self.variance is not None:
            out = torch.cat([out, torch.full_like(out, self.variance)], dim=1)
        return SimpleNamespace(sample=out)


def invoke(*args):
    """``aaas-profile ARGS...`` through the project's app (its one catch included), in this process."""
    from typer.testing import CliRunner

    from aaas_profile.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def one_line_error(result, *fragments, code: int = 2) -> None:
    """The command ended with exit ``code`` and one line starting 'error:' that names each fragment: no traceback,
    no second error (rich may wrap the one line on a narrow terminal, so continuation lines are allowed)."""
    assert result.exit_code == code and isinstance(result.exception, SystemExit | None), result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    text = " ".join(result.output.split())
    assert text.startswith("error:") and "Traceback" not in result.output, result.output
    assert all(not line.startswith("error:") for line in lines[1:]), result.output
    for fragment in fragments:
        assert fragment in text, result.output


# A cell's image alone and inside a batch is not the same computation (the float32 UNet sums in another order):
# measured largest |difference| 1.0e-5 over 3 draws x 6 cells x (10 steps with 5/2 jumps, 5 steps without), at 1
# and 2 threads; ten times that.
BATCH_ATOL = 1e-4
