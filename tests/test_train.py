"""Training end to end on CPU with a tiny UNet: saved folder, EMA, checkpoints, resume, the CLI, the bundled models."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_images
from safetensors import safe_open
from typer.testing import CliRunner

from aaas_profile import models
from aaas_profile.cli import app
from aaas_profile.cli import train as cli_train
from aaas_profile.train import (
    CHECKPOINT,
    TrainConfig,
    TrainError,
    augment,
    build_unet,
    ema_decay_at,
    load_training_images,
    train,
)

ROOT = Path(__file__).resolve().parents[1]
# On the CPU in fp32: "auto" would train in bf16 or fp16 where there is CUDA (test_mixed_precision_on_cuda)
TINY = dict(resolution=16, channels=(8, 16), batch_size=2, warmup_steps=2, checkpoint_every=2, device="cpu",
            precision="fp32")


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # torch on one thread (conftest)


@pytest.fixture
def data_dir(tmp_path):
    folder = write_images(tmp_path / "data", n=3, size=40)
    (folder / "PROVENANCE.md").write_text("# test images\n\nlicence: CC0-1.0\n")
    write_images(folder / "eval", n=1, size=8)  # too small to train on: proves subfolders are skipped
    return folder


def state(out: Path) -> dict:
    return torch.load(out / CHECKPOINT, weights_only=True)  # what train writes must load as tensors only


class _RunsCode:
    """An object whose unpickling runs code (writes a file): what a crafted checkpoint would carry."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "code ran"))


def test_train_saves_a_diffusers_folder_of_ema_weights_that_loads(data_dir, tmp_path):
    out = tmp_path / "model"
    result = train(data_dir, out, TrainConfig(steps=3, **TINY), command="aaas-profile train --test")
    assert result.steps == 3 and not result.stopped_early and result.precision == "fp32"
    assert (out / "model_index.json").is_file() and (out / ".gitignore").read_text() == "checkpoint/\n"
    scheduler = json.loads((out / "scheduler" / "scheduler_config.json").read_text())
    assert (scheduler["num_train_timesteps"], scheduler["beta_schedule"], scheduler["prediction_type"]) == (
        1000, "linear", "epsilon")
    assert (scheduler["beta_start"], scheduler["beta_end"]) == (0.0001, 0.02)
    with safe_open(out / "unet" / "diffusion_pytorch_model.safetensors", "pt") as f:
        saved = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    assert {t.dtype for t in saved.values()} == {torch.float16}
    ckpt = state(out)
    assert ckpt["step"] == 3 and len(ckpt["losses"]) == 3
    # The saved weights are the EMA's (to fp16 rounding), not the raw weights of the last step.
    key = "conv_in.weight"
    assert torch.allclose(saved[key].float(), ckpt["ema"][key], atol=1e-3)
    assert not torch.allclose(ckpt["ema"][key], ckpt["unet"][key], atol=1e-5)

    loaded = models.load(str(out))
    assert loaded.resolution == 16 and loaded.licence == "CC0-1.0"
    assert loaded.scheduler_config["beta_schedule"] == "linear"
    assert loaded.unet(torch.zeros(1, 3, 16, 16), 10).sample.shape == (1, 3, 16, 16)
    card = (out / "README.md").read_text()
    assert card.startswith("---\nlicense: CC0-1.0\n")
    assert "Steps: 3 of batch 2" in card and "`aaas-profile train --test`" in card and "3 images" in card


def test_resumed_training_equals_uninterrupted(data_dir, tmp_path):
    whole, split = tmp_path / "whole", tmp_path / "split"
    train(data_dir, whole, TrainConfig(steps=5, **TINY))
    first = train(data_dir, split, TrainConfig(steps=2, **TINY))
    assert first.steps == 2 and state(split)["step"] == 2
    second = train(data_dir, split, TrainConfig(steps=5, **TINY))  # a new process would do exactly this
    assert second.steps == 5
    a, b = state(whole), state(split)
    assert a["losses"] == pytest.approx(b["losses"], rel=1e-5)
    for part in ("unet", "ema"):
        for name, value in a[part].items():
            assert torch.allclose(value, b[part][name], atol=1e-6), (part, name)
    assert a["optimizer"]["state"][0]["step"] == b["optimizer"]["state"][0]["step"] == 5
    # Without resume the run starts over, from the same seed: the first two losses repeat.
    restarted = train(data_dir, split, TrainConfig(steps=2, **TINY), resume=False)
    assert restarted.steps == 2 and state(split)["losses"] == pytest.approx(a["losses"][:2], rel=1e-5)


def test_resume_refuses_a_checkpoint_made_with_other_settings(data_dir, tmp_path):
    out = tmp_path / "model"
    train(data_dir, out, TrainConfig(steps=2, **TINY))
    with pytest.raises(TrainError, match=r"other settings \(lr\)"):
        train(data_dir, out, TrainConfig(steps=4, **TINY), lr=3e-4)
    with pytest.raises(TrainError, match="beyond --steps 1"):
        train(data_dir, out, TrainConfig(steps=1, **TINY))


def test_resume_never_runs_code_from_a_crafted_checkpoint(data_dir, tmp_path):
    out, marker = tmp_path / "model", tmp_path / "pwned"
    (out / CHECKPOINT).parent.mkdir(parents=True)
    torch.save({"step": 0, "unet": _RunsCode(marker)}, out / CHECKPOINT)
    with pytest.raises(TrainError, match=r"state\.pt: not a training checkpoint this tool can load safely"):
        train(data_dir, out, TrainConfig(steps=2, **TINY))
    assert not marker.exists()
    # The same object loaded the unsafe way does run its code: the test's pickle is a real exploit.
    torch.load(out / CHECKPOINT, weights_only=False)
    assert marker.read_text() == "code ran"


def test_resume_refuses_a_checkpoint_that_is_no_training_state(data_dir, tmp_path):
    out = tmp_path / "model"
    (out / CHECKPOINT).parent.mkdir(parents=True)
    torch.save({"step": 3}, out / CHECKPOINT)
    with pytest.raises(TrainError, match="lacks unet, ema, optimizer"):
        train(data_dir, out, TrainConfig(steps=2, **TINY))
    (out / CHECKPOINT).write_bytes(b"not a pickle")
    with pytest.raises(TrainError, match="not a training checkpoint"):
        train(data_dir, out, TrainConfig(steps=2, **TINY))


def test_a_model_is_never_lost_or_mixed_with_an_earlier_one(data_dir, tmp_path):
    import shutil

    out = tmp_path / "model"
    train(data_dir, out, TrainConfig(steps=2, **TINY))
    weights = sorted((out / "unet").iterdir())
    before = {path.name: path.read_bytes() for path in weights}
    shutil.rmtree(out / "checkpoint")
    # Nothing to resume: training again into a finished model would replace it, so it is refused and kept.
    with pytest.raises(TrainError, match=r"holds a trained model and no checkpoint to resume"):
        train(data_dir, out, TrainConfig(steps=2, **TINY))
    assert {path.name: path.read_bytes() for path in sorted((out / "unet").iterdir())} == before
    # --no-resume replaces the model as a set: no file of the earlier model stays, nothing staged is left.
    (out / "unet" / "stale.safetensors").write_bytes(b"from an earlier model")
    train(data_dir, out, TrainConfig(steps=1, **TINY), resume=False)
    assert sorted(path.name for path in (out / "unet").iterdir()) == sorted(before)
    assert not any(path.name.startswith(".model-") for path in out.iterdir())
    assert "Steps: 1 of batch" in (out / "README.md").read_text()


def test_time_limit_stops_early_saved_and_resumable(data_dir, tmp_path):
    out = tmp_path / "model"
    result = train(data_dir, out, TrainConfig(steps=50, time_limit_s=0.0, **TINY))
    assert result.stopped_early and result.steps == 1 and state(out)["step"] == 1
    assert "stopped by the time limit" in (out / "README.md").read_text()
    assert train(data_dir, out, TrainConfig(steps=3, **TINY)).steps == 3


def test_keyword_options_override_without_touching_the_given_config(data_dir, tmp_path):
    config = TrainConfig(steps=1, **TINY)
    result = train(data_dir, tmp_path / "m", config, steps=2, seed=3)
    assert result.steps == 2 and config.steps == 1 and config.seed == 0
    card = (tmp_path / "m" / "README.md").read_text()
    assert "aaas_profile.train.train(" in card and "steps=2" in card and "seed=3" in card
    with pytest.raises(TypeError, match="unknown training option"):
        train(data_dir, tmp_path / "m", config, step=2)


def test_ema_decay_warms_up_then_caps():
    assert ema_decay_at(0, 0.999) == pytest.approx(0.1)
    assert ema_decay_at(90, 0.999) == pytest.approx(91 / 100)
    assert ema_decay_at(100_000, 0.999) == 0.999


def test_augment_crops_resizes_and_flips_reproducibly():
    ramp = torch.linspace(0, 1, 32).expand(3, 32, 32).clone()  # brightness grows left to right
    images = [ramp]
    gen = torch.Generator().manual_seed(0)
    whole = augment(images, 64, 16, gen, min_crop=1.0, flip=False)
    assert whole.shape == (64, 3, 16, 16) and 0 <= whole.min() and whole.max() <= 1
    assert torch.allclose(whole, whole[:1].expand_as(whole))  # min_crop 1 on a square image: the whole image
    assert whole[0, 0, 0, -1] > whole[0, 0, 0, 0]
    flipped = augment(images, 64, 16, gen, min_crop=1.0, flip=True)
    mirrored = flipped[:, 0, 0, -1] < flipped[:, 0, 0, 0]
    assert 10 < mirrored.sum() < 54  # about half
    crops = augment(images, 64, 16, torch.Generator().manual_seed(1), min_crop=0.5, flip=False)
    assert crops[:, 0].amax(dim=(1, 2)).std() > 0.01  # crops at different places see different ranges
    again = augment(images, 64, 16, torch.Generator().manual_seed(1), min_crop=0.5, flip=False)
    assert torch.equal(crops, again)


def test_training_data_checks(tmp_path, data_dir):
    assert len(load_training_images(data_dir, 16)) == 3  # eval/ is not read
    with pytest.raises(TrainError, match="does not exist"):
        load_training_images(tmp_path / "nope", 16)
    with pytest.raises(TrainError, match="too small for resolution 64"):
        load_training_images(data_dir / "eval", 64)
    with pytest.raises(TrainError, match="divisible by 2"):
        train(data_dir, tmp_path / "m", TrainConfig(**{**TINY, "resolution": 17}))
    with pytest.raises(TrainError, match="needs CUDA"):
        train(data_dir, tmp_path / "m", TrainConfig(**{**TINY, "precision": "bf16"}))


def test_training_learns(tmp_path):
    """60 steps on smooth images bring the denoising loss well under its starting value of about 1."""
    data = write_images(tmp_path / "data", n=3, size=40)
    train(data, tmp_path / "m", TrainConfig(steps=60, resolution=16, channels=(16, 32), batch_size=8,
                                            warmup_steps=5, lr=2e-3, device="cpu", precision="fp32"))
    losses = state(tmp_path / "m")["losses"]
    assert np.mean(losses[:5]) > 0.7 and np.mean(losses[-10:]) < 0.5 * np.mean(losses[:5])


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_on_cuda(data_dir, tmp_path, precision):
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    out = tmp_path / precision
    result = train(data_dir, out, TrainConfig(**{**TINY, "steps": 3, "device": "cuda", "precision": precision}))
    assert result.precision == precision and result.device.startswith("cuda")
    assert all(np.isfinite(state(out)["losses"]))
    assert models.load(str(out)).resolution == 16


def test_build_unet_levels_and_attention():
    unet = build_unet(TrainConfig(channels=(8, 16, 16), resolution=32, attention=True))
    assert unet.config.down_block_types == ("DownBlock2D", "DownBlock2D", "AttnDownBlock2D")
    assert unet.config.up_block_types == ("AttnUpBlock2D", "UpBlock2D", "UpBlock2D")
    assert build_unet(TrainConfig(channels=(8, 16), attention=False)).config.down_block_types == (
        "DownBlock2D", "DownBlock2D")


# ---- the command line -----------------------------------------------------------------------------------------

runner = CliRunner()
CLI_TINY = ["--resolution", "16", "--channels", "8,16", "--batch-size", "2", "--warmup-steps", "1"]


def test_cli_trains_prints_a_summary_and_resumes(data_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(cli_train.console, "width", 200)
    out = tmp_path / "m"
    result = runner.invoke(app, ["train", "--data", str(data_dir), "--out", str(out), "--steps", "2", *CLI_TINY])
    assert result.exit_code == 0, result.output
    assert re.search(r"steps\s+│?\s*2", result.output) and "loss" in result.output
    assert models.load(str(out)).resolution == 16
    again = runner.invoke(app, ["train", "--data", str(data_dir), "--out", str(out), "--steps", "3", *CLI_TINY])
    assert again.exit_code == 0, again.output
    assert state(out)["step"] == 3 and "Steps: 3 of batch 2" in (out / "README.md").read_text()


@pytest.mark.parametrize(("args", "words"), [
    (["--data", "MISSING"], "image folder does not exist"),
    (["--lr", "2"], "--lr must be a finite number in (0, 1)"),
    (["--channels", "8,x"], "--channels: expected integers"),
    (["--precision", "fp16", "--device", "cpu"], "needs CUDA"),
])
def test_cli_bad_input_is_one_line(data_dir, tmp_path, args, words):
    base = {"--data": str(data_dir), "--out": str(tmp_path / "m"), "--steps": "1"}
    base.update(dict(zip(CLI_TINY[::2], CLI_TINY[1::2], strict=True)))
    base.update(dict(zip(args[::2], args[1::2], strict=True)))
    result = runner.invoke(app, ["train", *(v for kv in base.items() for v in kv)])
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert text.startswith("error:") and words.replace("MISSING", "") in text, result.output
    assert len(result.output.strip().splitlines()) <= 2  # rich may wrap a long line once


def test_cli_help_has_examples():
    result = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "Examples" in result.output and "--time-limit" in result.output


# ---- the bundled models ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["faces", "scenes"])
def test_bundled_model_loads_offline_by_name(name):
    card = models.cards()[name]
    if card.local_dir is None or not (card.local_dir / "unet").is_dir():
        pytest.skip(f"models/{name}/ is not trained in this checkout")
    loaded = models.load(name)
    assert loaded.source.startswith("local:") and loaded.resolution == card.resolution == 64
    assert loaded.scheduler_config["num_train_timesteps"] == 1000
    weights = card.local_dir / "unet" / "diffusion_pytorch_model.safetensors"
    assert weights.stat().st_size < 20_000_000  # small enough for git
    readme = (card.local_dir / "README.md").read_text()
    assert readme.startswith("---\nlicense: ") and "aaas-profile train" in readme


def noise_prediction_mse(unet, scheduler_config: dict, folder: Path, resolution: int) -> float:
    """Mean squared error of the predicted noise on noised held-out images, x_t = √ᾱ_t·x0 + √(1 − ᾱ_t)·eps, at
    t = 100, 250, 500 and 750 (the training loss of Ho et al. 2020 on images the model never saw)."""
    from diffusers import DDPMScheduler

    from aaas_profile.images import load_folder

    x0 = torch.stack([image.tensor for image in load_folder(folder, resolution)]) * 2 - 1
    alpha_bar = DDPMScheduler(**scheduler_config).alphas_cumprod
    t = torch.tensor([100, 250, 500, 750]).repeat_interleave(len(x0))
    x0 = x0.repeat(4, 1, 1, 1)
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
    a = alpha_bar[t].view(-1, 1, 1, 1)
    with torch.no_grad():
        predicted = unet(a.sqrt() * x0 + (1 - a).sqrt() * noise, t).sample
    return ((predicted - noise) ** 2).mean().item()


@pytest.mark.parametrize("name", ["faces", "scenes"])
def test_bundled_model_predicts_the_noise_on_held_out_images(name):
    """Trained, not merely loadable: measured MSE 0.017 (faces, 10 held-out faces) and 0.040 (scenes, 2 held-out
    photographs); a random UNet of the same architecture gives 1.05-1.13 (3 weight seeds), as any predictor
    that knows nothing of the noise does (its variance is 1). 0.1 leaves 2.5x room over the weaker model and
    sits 10x under an untrained one."""
    card = models.cards()[name]
    if card.local_dir is None or not (card.local_dir / "unet").is_dir():
        pytest.skip(f"models/{name}/ is not trained in this checkout")
    from diffusers import UNet2DModel

    loaded = models.load(name)  # on the CPU, in fp32
    held_out = ROOT / "datasets" / name / "eval"
    trained = noise_prediction_mse(loaded.unet, loaded.scheduler_config, held_out, loaded.resolution)
    torch.manual_seed(0)
    untrained = UNet2DModel.from_config(loaded.unet.config).eval()
    random = noise_prediction_mse(untrained, loaded.scheduler_config, held_out, loaded.resolution)
    assert trained < 0.1, trained
    assert random > 0.9, random  # the same measurement tells an untrained UNet apart
