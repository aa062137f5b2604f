"""Shared fixtures: a small UNet2DModel saved in diffusers format, a folder of images, an offline hub cache.

The model is real (diffusers' UNet2DModel with random weights) and is loaded through the same code path as a
hub model; it is only small, so sweeps run in seconds on a CPU.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

RESOLUTION = 64


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


def make_unet(resolution: int = RESOLUTION, seed: int = 0):
    from diffusers import UNet2DModel

    torch.manual_seed(seed)
    return UNet2DModel(
        sample_size=resolution,
        in_channels=3,
        out_channels=3,
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
    """A fast sweep on the small model: step counts 5 and 10 without resampling, seed 0, in fp32 (tests that
    compare values across runs rely on fp32's rounding; tests/test_precision.py covers auto and bf16)."""
    from aaas_profile.sweep import SweepConfig

    values = dict(model=str(model_dir), data=str(image_dir), masks="half,thick", steps="5,10", seeds="0",
                  jump_length=1, jump_n_sample=1, out=str(out), batch_size=4, save_images=0, dtype="fp32")
    return SweepConfig.from_sources(**{**values, **overrides})


@pytest.fixture
def image_dir(tmp_path) -> Path:
    return write_images(tmp_path / "images")
