"""RePaint / guided-diffusion checkpoint import.

No real checkpoint can be downloaded here, so checkpoints are built from ``guided_layout`` (the converter's own
description of guided-diffusion's names and shapes) with random values. What keeps that from being circular:

* the full celeba256 layout is pinned to counts measured once on guided-diffusion's own ``UNetModel`` built with
  RePaint's conf (566 tensors, 552,814,086 parameters, and a few spot shapes);
* the converted network's forward pass is compared with ``reference_forward`` below, an independent plain-torch
  reading of guided-diffusion's UNet that works on the *unconverted* state dict.

Forward passes use a REDUCED variant of celeba256 (``reduce()``: same levels, blocks, attention rates and
parameter names, 32 base channels, 32 px) so that they take seconds on a CPU.
"""

from __future__ import annotations

import json
import math
import re

import pytest
import torch
import torch.nn.functional as F
from conftest import write_images
from typer.testing import CliRunner

from aaas_profile import models, runs, sweep
from aaas_profile import repaint_import as ri
from aaas_profile.cli import app
from aaas_profile.cli import common as terminal
from aaas_profile.cli import models as cli_models
from aaas_profile.models import sha256_file

FULL = ri.CONFIGS["celeba256"]
REDUCED = FULL.reduce(model_channels=32, image_size=32)  # the 8 px level of 256 px is 1 px here


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small convolutions on a shared, oversubscribed CPU run ~50× faster on one thread than on two (OpenMP
    workers spin waiting for each other); restored afterwards for the other test modules."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def random_checkpoint(config: ri.GuidedUNetConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    """A guided-diffusion state dict with random values of a sane scale (weights ~ 1/√fan-in, norm gains ~ 1),
    and no zero tensors, so that a wrongly placed tensor changes the output."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in ri.guided_layout(config).items():
        noise = torch.randn(shape, generator=generator)
        if len(shape) > 1:
            state[key] = noise / math.sqrt(math.prod(shape[1:]))
        elif re.search(r"(norm|in_layers\.0|out_layers\.0|out\.0)\.weight$", key):
            state[key] = 1 + 0.1 * noise
        else:
            state[key] = 0.05 * noise
    return state


def reference_forward(sd: dict[str, torch.Tensor], config: ri.GuidedUNetConfig, x: torch.Tensor,
                      t: torch.Tensor) -> torch.Tensor:
    """guided-diffusion's UNet (scale-shift norm, residual up/down-sampling, legacy qkv order) written as plain
    functions over its own state dict: which block holds what is read from the keys present."""

    def norm(h, p):
        return F.group_norm(h, 32, sd[f"{p}.weight"], sd[f"{p}.bias"], eps=1e-5)

    def conv(h, p):
        w = sd[f"{p}.weight"]
        return F.conv2d(h, w, sd[f"{p}.bias"], padding=w.shape[-1] // 2)

    def resblock(h, p, emb, resample=None):
        a = F.silu(norm(h, f"{p}.in_layers.0"))
        if resample is not None:
            a, h = resample(a), resample(h)
        a = conv(a, f"{p}.in_layers.2")
        scale, shift = F.linear(F.silu(emb), sd[f"{p}.emb_layers.1.weight"], sd[f"{p}.emb_layers.1.bias"]).chunk(2, 1)
        a = norm(a, f"{p}.out_layers.0") * (1 + scale[:, :, None, None]) + shift[:, :, None, None]
        a = conv(F.silu(a), f"{p}.out_layers.3")
        if f"{p}.skip_connection.weight" in sd:
            h = conv(h, f"{p}.skip_connection")
        return h + a

    def attention(h, p):
        b, c, height, width = h.shape
        d = config.num_head_channels
        qkv = F.conv1d(norm(h, f"{p}.norm").reshape(b, c, -1), sd[f"{p}.qkv.weight"], sd[f"{p}.qkv.bias"])
        q, k, v = qkv.reshape(b, c // d, 3, d, -1).unbind(2)  # per head: [q, k, v], each d channels
        weights = torch.softmax(torch.einsum("bhdn,bhdm->bhnm", q, k) / math.sqrt(d), dim=-1)
        a = torch.einsum("bhnm,bhdm->bhdn", weights, v).reshape(b, c, -1)
        a = F.conv1d(a, sd[f"{p}.proj_out.weight"], sd[f"{p}.proj_out.bias"])
        return h + a.reshape(b, c, height, width)

    def down(h):
        return F.avg_pool2d(h, 2)

    def up(h):
        return F.interpolate(h, scale_factor=2, mode="nearest")

    def block(h, p, emb, resample=None):
        h = resblock(h, f"{p}.0", emb, resample)
        k = 1
        if f"{p}.1.qkv.weight" in sd:
            h, k = attention(h, f"{p}.1"), 2
        if f"{p}.{k}.in_layers.0.weight" in sd:  # an upsampling ResBlock closes the level
            h = resblock(h, f"{p}.{k}", emb, up)
        return h

    half = config.model_channels // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
    angles = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)
    emb = F.linear(F.silu(F.linear(emb, sd["time_embed.0.weight"], sd["time_embed.0.bias"])),
                   sd["time_embed.2.weight"], sd["time_embed.2.bias"])
    count = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("input_blocks."))
    h = conv(x, "input_blocks.0.0")
    skips = [h]
    for i in range(1, count):
        is_down = i % (config.num_res_blocks + 1) == 0
        h = block(h, f"input_blocks.{i}", emb, down if is_down else None)
        skips.append(h)
    h = resblock(h, "middle_block.0", emb)
    h = attention(h, "middle_block.1")
    h = resblock(h, "middle_block.2", emb)
    for i in range(len(skips)):
        h = block(torch.cat([h, skips.pop()], dim=1), f"output_blocks.{i}", emb)
    return conv(F.silu(norm(h, "out.0")), "out.2")


def save_checkpoint(path, config=REDUCED, seed=0):
    state = random_checkpoint(config, seed)
    torch.save(state, path)
    return state


# --- the layout of the real checkpoints ------------------------------------------------------------------------

def test_celeba256_layout_matches_guided_diffusions_counts():
    """Numbers measured on guided-diffusion's UNetModel built with RePaint's celeba256 / places256 conf."""
    layout = ri.guided_layout(FULL)
    assert len(layout) == 566
    assert sum(math.prod(s) for s in layout.values()) == 552_814_086
    assert layout["time_embed.0.weight"] == (1024, 256)
    assert layout["input_blocks.3.0.emb_layers.1.weight"] == (512, 1024)  # level 0's downsampling ResBlock
    assert layout["input_blocks.10.1.qkv.weight"] == (1536, 512, 1)  # first attention: 32 px, 8 heads
    assert layout["middle_block.1.proj_out.weight"] == (1024, 1024, 1)
    assert layout["output_blocks.2.2.in_layers.0.weight"] == (1024,)  # 8 px level's upsampling ResBlock
    assert layout["output_blocks.17.0.skip_connection.weight"] == (256, 512, 1, 1)
    assert layout["out.2.weight"] == (6, 256, 3, 3)
    assert ri.CONFIGS["places256"].unet_config() == FULL.unet_config()


def test_full_celeba256_converts_and_loads_strictly():
    """Every name and shape at full size, without memory: meta tensors through the same conversion."""
    from diffusers import UNet2DModel

    state = {k: torch.empty(s, device="meta") for k, s in ri.guided_layout(FULL).items()}
    converted = ri.convert_state_dict(state, FULL)
    with torch.device("meta"):
        unet = UNet2DModel(**FULL.unet_config())
    target = unet.state_dict()
    assert set(converted) == set(target)
    assert all(tuple(converted[k].shape) == tuple(target[k].shape) for k in target)
    result = unet.load_state_dict(converted, strict=True, assign=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert sum(t.numel() for t in target.values()) == 552_814_086
    assert unet.config.out_channels == 6 and unet.config.attention_head_dim == 64


def test_reduced_variant_keeps_the_architecture():
    assert REDUCED.reduced and "reduced" in REDUCED.name
    assert REDUCED.attention_rates == FULL.attention_rates == (8, 16, 32)
    full_names = [re.sub(r"\d+", "#", k) for k in ri.guided_layout(FULL)]
    assert [re.sub(r"\d+", "#", k) for k in ri.guided_layout(REDUCED)] == full_names
    assert REDUCED.unet_config()["down_block_types"] == FULL.unet_config()["down_block_types"]


# --- conversion --------------------------------------------------------------------------------------------------

def test_qkv_split_follows_the_legacy_head_order():
    width, d = 128, 64  # two heads
    rows = torch.arange(3 * width, dtype=torch.float32)[:, None]  # row r holds r
    q, k, v = ri._split_qkv(rows, width, d)
    assert q[:64, 0].tolist() == list(range(0, 64)) and q[64:, 0].tolist() == list(range(192, 256))
    assert k[:64, 0].tolist() == list(range(64, 128)) and v[64:, 0].tolist() == list(range(320, 384))


def test_converted_forward_equals_an_independent_reference():
    from diffusers import UNet2DModel

    state = random_checkpoint(REDUCED, seed=1)
    unet = UNet2DModel(**REDUCED.unet_config())
    unet.load_state_dict(ri.convert_state_dict(state, REDUCED), strict=True)
    unet.eval()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    t = torch.tensor([3, 871])
    with torch.no_grad():
        ours = unet(x, t).sample
        reference = reference_forward(state, REDUCED, x, t)
    assert ours.shape == (2, 6, 32, 32)
    assert reference.abs().max() > 0.5  # a real signal, not zero-initialised layers
    torch.testing.assert_close(ours, reference, atol=1e-4, rtol=1e-4)


def test_import_writes_a_folder_that_loads_and_samples(tmp_path):
    checkpoint = tmp_path / "celeba256_250000.pt"
    state = save_checkpoint(checkpoint)
    folder = ri.import_repaint(checkpoint, "rp-tiny", REDUCED, models_dir=tmp_path / "models")
    assert folder == tmp_path / "models" / "rp-tiny"
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "model_index.json", "scheduler", "unet"]
    assert (folder / "unet" / ri.WEIGHTS_FILE).is_file()
    card = models.ModelCard.from_toml(tmp_path / "models" / "rp-tiny.toml")
    assert (card.local_dir, card.resolution, card.licence) == (folder, 32, "cc-by-nc-sa-4.0")

    readme = (folder / "README.md").read_text()
    assert "license: cc-by-nc-sa-4.0" in readme.splitlines()[:5]
    assert sha256_file(checkpoint) in readme and "celeba256_250000.pt" in readme
    assert "REDUCED" in readme and "ε only" in readme
    scheduler = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    assert scheduler["_class_name"] == "DDPMScheduler" and scheduler["variance_type"] == "learned_range"
    assert (scheduler["beta_start"], scheduler["beta_end"], scheduler["num_train_timesteps"]) == (1e-4, 0.02, 1000)

    loaded = models.load(str(folder))
    assert loaded.learned_variance and loaded.licence == "cc-by-nc-sa-4.0"
    assert loaded.scheduler_config["beta_schedule"] == "linear"
    weights = loaded.unet.state_dict()
    converted = ri.convert_state_dict(state, REDUCED)
    assert set(weights) == set(converted)
    assert all(torch.equal(weights[k], converted[k]) for k in converted)
    assert torch.equal(weights["conv_in.weight"], state["input_blocks.0.0.weight"])


def test_a_sweep_runs_on_an_imported_model_by_name(tmp_path, monkeypatch):
    checkpoint = tmp_path / "ckpt.pt"
    save_checkpoint(checkpoint)
    models_dir = tmp_path / "models"
    ri.import_repaint(checkpoint, "rp-tiny", REDUCED, models_dir=models_dir)
    real_cards = models.cards
    monkeypatch.setattr(models, "cards", lambda models_dir=models_dir: real_cards(models_dir))
    config = sweep.SweepConfig.from_sources(
        model="rp-tiny", data=str(write_images(tmp_path / "images", n=1)), masks="half", steps="1,2", seeds="0",
        jump_length=1, jump_n_sample=1, out=str(tmp_path / "run"), batch_size=1, save_images=0,
        metrics="tv,haarpsi",
    )
    result = sweep.run(config)
    table = runs.read_scores(result.run_dir)
    assert len(table) == 2 * 2  # steps × metrics
    assert set(table["model"]) == {"rp-tiny"} and sorted(set(table["unet_calls"])) == [1, 2]
    assert table["value"].notna().all()
    manifest = json.loads((result.run_dir / "manifest.json").read_text())
    assert manifest["model"]["learned_variance"] is True


def test_converter_errors_are_one_line(tmp_path):
    with pytest.raises(ri.ConversionError, match="does not exist"):
        ri.import_repaint(tmp_path / "nope.pt", "x", models_dir=tmp_path)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ri.ConversionError, match="not a PyTorch checkpoint"):
        ri.import_repaint(junk, "x", models_dir=tmp_path)
    torch.save({"encoder.weight": torch.zeros(2)}, other := tmp_path / "other.pt")
    with pytest.raises(ri.ConversionError, match="not a guided-diffusion UNet state dict"):
        ri.import_repaint(other, "x", models_dir=tmp_path)
    torch.save([1, 2], listed := tmp_path / "list.pt")
    with pytest.raises(ri.ConversionError, match="not a guided-diffusion state dict"):
        ri.import_repaint(listed, "x", models_dir=tmp_path)
    with pytest.raises(ri.ConversionError, match="unknown config 'ffhq'"):
        ri.import_repaint(other, "x", "ffhq", models_dir=tmp_path)
    with pytest.raises(ri.ConversionError, match="must be letters"):
        ri.import_repaint(other, "../x", REDUCED, models_dir=tmp_path)


def test_checks_name_the_first_bad_key():
    state = {k: torch.empty(s, device="meta") for k, s in ri.guided_layout(REDUCED).items()}
    wrong = dict(state, **{"input_blocks.4.0.in_layers.2.weight": torch.empty(1, device="meta")})
    with pytest.raises(ri.ConversionError, match=r"shape mismatch at input_blocks\.4\.0\.in_layers\.2\.weight: "
                                                 r"checkpoint \(1,\), config .* expects \(32, 32, 3, 3\)"):
        ri.check_state_dict(wrong, REDUCED)
    with pytest.raises(ri.ConversionError, match=r"shape mismatch at time_embed\.0\.weight"):
        ri.check_state_dict(state, FULL)  # a reduced checkpoint read as the full config
    missing = {k: v for k, v in state.items() if k != "middle_block.1.qkv.bias"}
    with pytest.raises(ri.ConversionError, match=r"key middle_block\.1\.qkv\.bias missing .*\(1 of 566"):
        ri.check_state_dict(missing, REDUCED)
    with pytest.raises(ri.ConversionError, match="unexpected key extra.weight"):
        ri.check_state_dict(dict(state, **{"extra.weight": torch.empty(1)}), REDUCED)
    with pytest.raises(ri.ConversionError, match="class-conditional"):
        ri.check_state_dict(dict(state, **{"label_emb.weight": torch.empty(1)}), REDUCED)
    with pytest.raises(ri.ConversionError, match="channel_mult must start with 1"):
        ri.GuidedUNetConfig(name="half", channel_mult=(2, 2))


# --- the command ----------------------------------------------------------------------------------------------

@pytest.fixture
def cli(tmp_path, monkeypatch):
    """`aaas-profile models import-repaint` on the project's app, writing into a temporary models/ folder, with the
    reduced config selectable as --config tiny."""
    monkeypatch.setattr(ri, "MODELS_DIR", tmp_path / "models")
    monkeypatch.setitem(ri.CONFIGS, "tiny", REDUCED)
    monkeypatch.setattr(cli_models.console, "width", 200)
    monkeypatch.setattr(terminal.err_console, "width", 400)

    def invoke(*args):
        return CliRunner().invoke(app, ["models", "import-repaint", *map(str, args)])

    return invoke


def test_cli_imports_and_summarises(cli, tmp_path):
    checkpoint = tmp_path / "celeba256_250000.pt"
    save_checkpoint(checkpoint)
    result = cli(checkpoint, "--name", "rp-tiny", "--config", "tiny")
    assert result.exit_code == 0, result.output
    assert "imported celeba256_250000.pt as model 'rp-tiny'" in result.output
    params = sum(math.prod(s) for s in ri.guided_layout(REDUCED).values())
    assert f"{params:,}" in result.output and "learned variance" in result.output
    assert "use it: aaas-profile sweep --model rp-tiny" in result.output
    assert (tmp_path / "models" / "rp-tiny.toml").is_file()
    again = cli(checkpoint, "--name", "rp-tiny", "--config", "tiny")
    assert again.exit_code == 2 and "already exists" in again.output
    assert cli(checkpoint, "--name", "rp-tiny", "--config", "tiny", "--force").exit_code == 0


def test_cli_errors_are_one_line(cli, tmp_path):
    checkpoint = tmp_path / "c.pt"
    state = random_checkpoint(REDUCED)
    state["output_blocks.5.0.skip_connection.weight"] = torch.zeros(3, 3, 1, 1)
    torch.save(state, checkpoint)
    cases = [
        ((tmp_path / "missing.pt", "--name", "a"), "does not exist"),
        ((checkpoint, "--name", "a", "--config", "tiny"),
         "shape mismatch at output_blocks.5.0.skip_connection.weight"),
        ((checkpoint, "--name", "a", "--config", "ffhq"), "unknown config 'ffhq'"),
        ((checkpoint, "--name", "a"), "shape mismatch at time_embed.0.weight"),  # default celeba256
    ]
    for args, message in cases:
        result = cli(*args)
        assert result.exit_code == 2, result.output
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1 and message in lines[0], result.output
    assert not (tmp_path / "models").exists() or not list((tmp_path / "models").iterdir())
    help_text = cli("--help").output
    assert "Examples" in help_text and "--config" in help_text and "--name" in help_text


# --- full size, slow -------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_full_celeba256_random_checkpoint_imports_and_runs(tmp_path):
    """The real size through files: ~2.2 GB written twice and a 256 px forward on the CPU."""
    checkpoint = tmp_path / "celeba256_250000.pt"
    state = random_checkpoint(FULL)
    torch.save(state, checkpoint)
    folder = ri.import_repaint(checkpoint, "rp-full", "celeba256", models_dir=tmp_path / "models")
    loaded = models.load(str(folder))
    assert loaded.resolution == 256 and loaded.learned_variance
    weights = loaded.unet.state_dict()
    assert sum(t.numel() for t in weights.values()) == 552_814_086
    proj_out = state["middle_block.1.proj_out.weight"][..., 0]
    assert torch.equal(weights["mid_block.attentions.0.to_out.0.weight"], proj_out)
    x = torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([500])
    with torch.no_grad():
        torch.testing.assert_close(loaded.unet(x, t).sample, reference_forward(state, FULL, x, t), atol=1e-3, rtol=1e-3)
