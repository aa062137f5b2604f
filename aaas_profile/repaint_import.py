"""Convert RePaint's guided-diffusion checkpoints into diffusers ``UNet2DModel`` folders.

Why one module of some 510 lines: it is one conversion. The architecture correspondence below, the key mapping
that implements it, the checks that every tensor was used exactly once, and the folder it writes are read
together when one of them changes; most of the length is the mapping itself.

RePaint (Lugmayr et al., CVPR 2022) samples with UNets trained by OpenAI's guided-diffusion code (Dhariwal &
Nichol 2021): ``celeba256_250000.pt`` (CelebA-HQ) and ``places256_300000.pt`` (Places2), plain PyTorch state
dicts. Both use the settings of RePaint's ``confs/test_c256_*.yml`` and ``confs/test_p256_*.yml``:

    image_size 256, num_channels 256, channel_mult (1, 1, 2, 2, 4, 4) (the default for 256 px), num_res_blocks 2,
    attention_resolutions 32,16,8, num_head_channels 64, use_scale_shift_norm, resblock_updown, learn_sigma,
    diffusion_steps 1000 with the linear β schedule 1e-4 … 0.02, no class conditioning, legacy attention order.

How the two architectures correspond (guided-diffusion module → diffusers module):

* ``time_embed.{0,2}`` → ``time_embedding.linear_{1,2}``; both embed t with [cos, sin] of t·10000^(−i/half),
  i.e. diffusers' ``flip_sin_to_cos=True, freq_shift=0`` over ``model_channels`` frequencies.
* ``input_blocks.0.0`` → ``conv_in``. Each level ℓ (feature maps downsampled by ds = 2^ℓ) has
  ``num_res_blocks`` ResBlocks, each followed by an AttentionBlock when ds is an attention rate, then (except
  at the last level) a ResBlock that downsamples (avg-pool inside the block): diffusers' ``AttnDownBlock2D``
  or ``ResnetDownsampleBlock2D`` with ``downsample_type="resnet"``.
* ``middle_block.{0,1,2}`` → ``mid_block.resnets.0``, ``mid_block.attentions.0``, ``mid_block.resnets.1``.
* ``output_blocks``: per level, deepest first, ``num_res_blocks + 1`` ResBlocks over [h, skip] concatenations,
  each with its attention, and an upsampling ResBlock (nearest ×2 inside the block) at the end of every level
  but the top one: ``AttnUpBlock2D`` / ``ResnetUpsampleBlock2D`` with ``upsample_type="resnet"``.
* ``out.{0,2}`` → ``conv_norm_out``, ``conv_out`` (6 channels: ε, then the variance interpolation v).
* ResBlock: ``in_layers.{0,2}`` → ``norm1``, ``conv1``; ``emb_layers.1`` → ``time_emb_proj``;
  ``out_layers.{0,3}`` → ``norm2``, ``conv2``; ``skip_connection`` (1×1, only when the width changes) →
  ``conv_shortcut``. Scale-shift norm: GroupNorm(h)·(1 + scale) + shift = ``resnet_time_scale_shift="scale_shift"``.
* AttentionBlock: ``norm`` → ``group_norm`` (32 groups; the mid-block needs ``attn_norm_num_groups=32``, as
  diffusers drops that norm there for scale-shift models otherwise); ``qkv`` (a 1×1 Conv1d to 3C channels laid
  out per head as [q_h, k_h, v_h], the "legacy" order) is split into ``to_q``, ``to_k``, ``to_v``;
  ``proj_out`` → ``to_out.0``. Heads = C / 64 = ``attention_head_dim=64``.

Equal up to float rounding, not bit for bit: guided-diffusion scales q and k by C^(−1/4) each before the dot
product, diffusers scales the product by C^(−1/2). What ``UNet2DModel`` cannot express (none of it is used by
RePaint's two checkpoints, and the converter refuses it): a fixed head count with varying width (``num_heads``
without ``num_head_channels``: diffusers has one head width per model), ``channel_mult[0] ≠ 1`` (guided-diffusion
embeds t with ``model_channels`` frequencies, diffusers with ``block_out_channels[0]``), class conditioning.
Conv up/down-sampling and plain (non scale-shift) norm would map too but are not offered, as no RePaint config
uses them and nothing here checks them.

The noise schedule is written as a ``DDPMScheduler`` config (linear, 1e-4 … 0.02, 1000 steps,
``variance_type="learned_range"``). guided-diffusion builds its β in float64, diffusers in float32: ᾱ_t
agree to within 4e-7 relative (β within 1.1e-7).
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import torch

from aaas_profile import __version__
from aaas_profile.atomic import write_atomic
from aaas_profile.errors import UserError, not_found
from aaas_profile.models import MODELS_DIR, sha256_file

WEIGHTS_FILE = "diffusion_pytorch_model.safetensors"
GROUPS = 32  # guided-diffusion's normalization(): GroupNorm(32, channels), eps 1e-5
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# RePaint's own repository (and so its released checkpoints) is CC BY-NC-SA 4.0, research use only.
LICENCE = "cc-by-nc-sa-4.0"


class ConversionError(UserError, ValueError):
    """A checkpoint that cannot be converted; the message is one line meant for the user."""


@dataclass(frozen=True)
class GuidedUNetConfig:
    """A guided-diffusion ``UNetModel`` as RePaint configures it, with its training noise schedule.

    ``attention_resolutions`` are feature-map sizes in pixels, as RePaint's YAML writes them ("32,16,8" at
    256 px); attention sits where ``image_size // resolution`` equals a level's downsampling rate 2^ℓ.
    Scale-shift norm, residual up/down-sampling, 32 norm groups and the legacy attention order are fixed:
    they are what RePaint's configs use.
    """

    name: str
    image_size: int = 256
    model_channels: int = 256
    channel_mult: tuple[int, ...] = (1, 1, 2, 2, 4, 4)
    num_res_blocks: int = 2
    attention_resolutions: tuple[int, ...] = (32, 16, 8)
    num_head_channels: int = 64
    learn_sigma: bool = True
    diffusion_steps: int = 1000
    beta_start: float = 0.0001
    beta_end: float = 0.02
    domain: str = ""
    description: str = ""
    reduced: bool = False  # a smaller copy for tests; no released checkpoint has it

    def __post_init__(self):
        if self.channel_mult[0] != 1:
            raise ConversionError(f"config {self.name}: channel_mult must start with 1 (see module docstring)")
        for width in self.widths:
            if width % GROUPS:
                raise ConversionError(f"config {self.name}: width {width} is not a multiple of {GROUPS} groups")
        for level in range(len(self.channel_mult)):
            if self.has_attention(level) and self.widths[level] % self.num_head_channels:
                raise ConversionError(f"config {self.name}: width {self.widths[level]} at level {level} is not a "
                                      f"multiple of num_head_channels {self.num_head_channels}")
        if self.widths[-1] % self.num_head_channels:  # the middle block always has attention
            raise ConversionError(f"config {self.name}: width {self.widths[-1]} is not a multiple of "
                                  f"num_head_channels {self.num_head_channels}")

    @property
    def widths(self) -> tuple[int, ...]:
        return tuple(m * self.model_channels for m in self.channel_mult)

    @property
    def out_channels(self) -> int:
        return 6 if self.learn_sigma else 3

    @property
    def attention_rates(self) -> tuple[int, ...]:
        """Downsampling rates (1, 2, 4, …) of the levels with attention."""
        return tuple(sorted(self.image_size // r for r in self.attention_resolutions))

    def has_attention(self, level: int) -> bool:
        return 2**level in self.attention_rates

    def reduce(self, model_channels: int = 32, image_size: int = 64) -> GuidedUNetConfig:
        """The same layer graph (levels, blocks, attention at the same downsampling rates, parameter names)
        with fewer channels and smaller images, for fast tests. Labelled ``reduced``; its name says so."""
        rates = self.attention_rates
        if any(image_size % rate for rate in rates) or image_size < 2 ** (len(self.channel_mult) - 1):
            raise ConversionError(f"image_size {image_size} too small for {len(self.channel_mult)} levels")
        return replace(
            self, name=f"{self.name}-reduced-c{model_channels}-{image_size}px", image_size=image_size,
            model_channels=model_channels, attention_resolutions=tuple(image_size // r for r in rates),
            description=f"REDUCED test variant of {self.name} ({model_channels} channels, {image_size} px): "
                        "same architecture, not a released checkpoint", reduced=True,
        )

    def unet_config(self) -> dict:
        """Keyword arguments of the ``UNet2DModel`` with this architecture."""
        levels = range(len(self.channel_mult))
        down = ["AttnDownBlock2D" if self.has_attention(lv) else "ResnetDownsampleBlock2D" for lv in levels]
        up = ["AttnUpBlock2D" if self.has_attention(lv) else "ResnetUpsampleBlock2D" for lv in reversed(levels)]
        return dict(
            sample_size=self.image_size, in_channels=3, out_channels=self.out_channels,
            center_input_sample=False, time_embedding_type="positional", flip_sin_to_cos=True, freq_shift=0,
            down_block_types=tuple(down), up_block_types=tuple(up), block_out_channels=self.widths,
            layers_per_block=self.num_res_blocks, mid_block_scale_factor=1, downsample_padding=1,
            downsample_type="resnet", upsample_type="resnet", dropout=0.0, act_fn="silu",
            attention_head_dim=self.num_head_channels, norm_num_groups=GROUPS, attn_norm_num_groups=GROUPS,
            norm_eps=1e-5, resnet_time_scale_shift="scale_shift", add_attention=True,
        )

    def scheduler_config(self) -> dict:
        """Keyword arguments of the ``DDPMScheduler`` holding the training noise schedule."""
        return dict(
            num_train_timesteps=self.diffusion_steps, beta_start=self.beta_start * 1000 / self.diffusion_steps,
            beta_end=self.beta_end * 1000 / self.diffusion_steps, beta_schedule="linear",
            variance_type="learned_range" if self.learn_sigma else "fixed_large", clip_sample=True,
            prediction_type="epsilon",
        )


CONFIGS: dict[str, GuidedUNetConfig] = {
    "celeba256": GuidedUNetConfig(
        name="celeba256", domain="faces",
        description="RePaint's CelebA-HQ 256 px guided-diffusion model (celeba256_250000.pt, confs/test_c256_*.yml)",
    ),
    "places256": GuidedUNetConfig(
        name="places256", domain="scenes",
        description="RePaint's Places2 256 px guided-diffusion model (places256_300000.pt, confs/test_p256_*.yml)",
    ),
}


# --- the layout: one walk over the network gives both names and shapes ----------------------------------------

@dataclass(frozen=True)
class Module:
    """One parametrised module: its kind, its prefix in each format, and its widths."""

    kind: str  # linear, conv3, norm, resblock, attention
    guided: str
    diffusers: str
    cin: int
    cout: int


def modules(config: GuidedUNetConfig) -> Iterator[Module]:
    """Every parametrised module of the network, in guided-diffusion's state-dict order."""
    mc, nrb, widths = config.model_channels, config.num_res_blocks, config.widths
    emb = 4 * mc
    yield Module("linear", "time_embed.0", "time_embedding.linear_1", mc, emb)
    yield Module("linear", "time_embed.2", "time_embedding.linear_2", emb, emb)
    ch = widths[0]
    yield Module("conv3", "input_blocks.0.0", "conv_in", 3, ch)
    skips, i = [ch], 1
    for level, width in enumerate(widths):
        for j in range(nrb):
            yield Module("resblock", f"input_blocks.{i}.0", f"down_blocks.{level}.resnets.{j}", ch, width)
            ch = width
            if config.has_attention(level):
                yield Module("attention", f"input_blocks.{i}.1", f"down_blocks.{level}.attentions.{j}", ch, ch)
            skips.append(ch)
            i += 1
        if level < len(widths) - 1:
            yield Module("resblock", f"input_blocks.{i}.0", f"down_blocks.{level}.downsamplers.0", ch, ch)
            skips.append(ch)
            i += 1
    yield Module("resblock", "middle_block.0", "mid_block.resnets.0", ch, ch)
    yield Module("attention", "middle_block.1", "mid_block.attentions.0", ch, ch)
    yield Module("resblock", "middle_block.2", "mid_block.resnets.1", ch, ch)
    i = 0
    for up, level in enumerate(reversed(range(len(widths)))):
        width = widths[level]
        for j in range(nrb + 1):
            skip = skips.pop()
            yield Module("resblock", f"output_blocks.{i}.0", f"up_blocks.{up}.resnets.{j}", ch + skip, width)
            ch, k = width, 1
            if config.has_attention(level):
                yield Module("attention", f"output_blocks.{i}.1", f"up_blocks.{up}.attentions.{j}", ch, ch)
                k = 2
            if level > 0 and j == nrb:
                yield Module("resblock", f"output_blocks.{i}.{k}", f"up_blocks.{up}.upsamplers.0", ch, ch)
            i += 1
    yield Module("norm", "out.0", "conv_norm_out", ch, ch)
    yield Module("conv3", "out.2", "conv_out", ch, config.out_channels)


def _tensors(module: Module, emb: int) -> Iterator[tuple[str, str, tuple[int, ...]]]:
    """(guided-diffusion suffix, diffusers suffix, guided-diffusion shape) of one module's tensors."""
    cin, cout = module.cin, module.cout
    if module.kind == "linear":
        yield "weight", "weight", (cout, cin)
        yield "bias", "bias", (cout,)
    elif module.kind == "conv3":
        yield "weight", "weight", (cout, cin, 3, 3)
        yield "bias", "bias", (cout,)
    elif module.kind == "norm":
        yield "weight", "weight", (cin,)
        yield "bias", "bias", (cin,)
    elif module.kind == "resblock":
        yield "in_layers.0.weight", "norm1.weight", (cin,)
        yield "in_layers.0.bias", "norm1.bias", (cin,)
        yield "in_layers.2.weight", "conv1.weight", (cout, cin, 3, 3)
        yield "in_layers.2.bias", "conv1.bias", (cout,)
        yield "emb_layers.1.weight", "time_emb_proj.weight", (2 * cout, emb)  # scale and shift
        yield "emb_layers.1.bias", "time_emb_proj.bias", (2 * cout,)
        yield "out_layers.0.weight", "norm2.weight", (cout,)
        yield "out_layers.0.bias", "norm2.bias", (cout,)
        yield "out_layers.3.weight", "conv2.weight", (cout, cout, 3, 3)
        yield "out_layers.3.bias", "conv2.bias", (cout,)
        if cin != cout:
            yield "skip_connection.weight", "conv_shortcut.weight", (cout, cin, 1, 1)
            yield "skip_connection.bias", "conv_shortcut.bias", (cout,)
    elif module.kind == "attention":
        yield "norm.weight", "group_norm.weight", (cin,)
        yield "norm.bias", "group_norm.bias", (cin,)
        yield "qkv.weight", "to_qkv.weight", (3 * cin, cin, 1)  # split in convert_state_dict
        yield "qkv.bias", "to_qkv.bias", (3 * cin,)
        yield "proj_out.weight", "to_out.0.weight", (cin, cin, 1)
        yield "proj_out.bias", "to_out.0.bias", (cin,)
    else:
        raise AssertionError(module.kind)


def guided_layout(config: GuidedUNetConfig) -> dict[str, tuple[int, ...]]:
    """Parameter names and shapes of guided-diffusion's ``UNetModel`` with ``config``, in state-dict order."""
    emb = 4 * config.model_channels
    return {f"{m.guided}.{g}": shape for m in modules(config) for g, _, shape in _tensors(m, emb)}


# --- conversion -------------------------------------------------------------------------------------------------

def check_state_dict(state: Mapping[str, torch.Tensor], config: GuidedUNetConfig) -> None:
    """Raise ConversionError naming the first key (in guided-diffusion's order) that is missing or has the
    wrong shape for ``config``, or the first unexpected key."""
    if "label_emb.weight" in state:
        raise ConversionError("a class-conditional guided-diffusion model (label_emb.weight): RePaint's CelebA-HQ "
                              "and Places2 models are unconditional and only those are supported")
    expected = guided_layout(config)
    for key, shape in expected.items():
        if key not in state:
            missing = sum(1 for k in expected if k not in state)
            raise ConversionError(f"key {key} missing for config {config.name} ({missing} of {len(expected)} "
                                  "expected keys missing)")
        if tuple(state[key].shape) != shape:
            raise ConversionError(f"shape mismatch at {key}: checkpoint {tuple(state[key].shape)}, config "
                                  f"{config.name} expects {shape}")
    extra = [k for k in state if k not in expected]
    if extra:
        raise ConversionError(f"unexpected key {extra[0]} for config {config.name} ({len(extra)} unexpected)")


def _split_qkv(tensor: torch.Tensor, width: int, head_channels: int) -> tuple[torch.Tensor, ...]:
    """Split a legacy-order qkv projection, rows laid out as (head, q|k|v, channel), into q, k and v with
    rows (head, channel), the layout of diffusers' ``to_q``/``to_k``/``to_v``."""
    heads = width // head_channels
    per_head = tensor.reshape(heads, 3, head_channels, *tensor.shape[1:])
    return tuple(per_head[:, part].reshape(width, *tensor.shape[1:]).contiguous() for part in range(3))


def convert_state_dict(state: Mapping[str, torch.Tensor], config: GuidedUNetConfig) -> dict[str, torch.Tensor]:
    """A guided-diffusion state dict (checked against ``config``) as the state dict of the ``UNet2DModel`` of
    ``config.unet_config()``, float32."""
    check_state_dict(state, config)
    emb = 4 * config.model_channels
    out: dict[str, torch.Tensor] = {}
    for module in modules(config):
        for g, d, _ in _tensors(module, emb):
            tensor = state[f"{module.guided}.{g}"].to(torch.float32)
            if g.startswith("qkv."):
                if g == "qkv.weight":
                    tensor = tensor[..., 0]  # Conv1d kernel 1 → Linear
                suffix = g.split(".")[1]
                for name, part in zip(("to_q", "to_k", "to_v"), _split_qkv(tensor, module.cin,
                                                                         config.num_head_channels), strict=True):
                    out[f"{module.diffusers}.{name}.{suffix}"] = part
                continue
            if g == "proj_out.weight":
                tensor = tensor[..., 0]
            out[f"{module.diffusers}.{d}"] = tensor.contiguous()
    return out


def strict_check(converted: Mapping[str, torch.Tensor], config: GuidedUNetConfig) -> None:
    """Load ``converted`` into a ``UNet2DModel`` built on the meta device (no memory, no init): raises
    ConversionError on any missing or unexpected key or unequal shape."""
    from diffusers import UNet2DModel

    with torch.device("meta"):
        unet = UNet2DModel(**config.unet_config())
    target = unet.state_dict()
    missing = [k for k in target if k not in converted]
    extra = [k for k in converted if k not in target]
    bad = [k for k in target if k in converted and tuple(converted[k].shape) != tuple(target[k].shape)]
    if missing or extra or bad:
        raise ConversionError(f"converted weights do not fit UNet2DModel: {len(missing)} missing (first: "
                              f"{missing[:1]}), {len(extra)} unexpected ({extra[:1]}), {len(bad)} shapes ({bad[:1]})")


def read_checkpoint(checkpoint: Path) -> dict[str, torch.Tensor]:
    """A guided-diffusion checkpoint file as a flat name → tensor dict (memory-mapped when the file allows).
    Accepts a bare state dict (what guided-diffusion saves), one wrapped under "state_dict" or "model", and
    DataParallel's "module." prefixes."""
    if not checkpoint.is_file():
        raise ConversionError(not_found(checkpoint, "checkpoint file", folder=False,
                                         hint="e.g. celeba256_250000.pt from RePaint's download.sh"))
    try:
        try:
            state = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as err:
            if "mmap" not in str(err):  # mmap needs the zip format; older files load without it
                raise
            state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling, zip and weights-only errors all mean "not a checkpoint"
        # torch's own text advises `weights_only=False` (unsafe on a file from elsewhere) or prints a bare
        # pickle opcode; neither helps here, so say what the file is not and what to give instead.
        raise ConversionError(f"{checkpoint}: not a PyTorch checkpoint that loads safely ({type(err).__name__}); "
                              "give RePaint's celeba256_250000.pt or places256_300000.pt") from None
    if isinstance(state, Mapping):
        for wrapper in ("state_dict", "model"):
            if isinstance(state.get(wrapper), Mapping):
                state = state[wrapper]
                break
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConversionError(f"{checkpoint}: not a guided-diffusion state dict (expected a dict of tensors)")
    state = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}
    if "input_blocks.0.0.weight" not in state or "time_embed.0.weight" not in state:
        example = next(iter(state), "none")
        raise ConversionError(f"{checkpoint}: not a guided-diffusion UNet state dict (no input_blocks.0.0.weight "
                              f"or time_embed.0.weight; first key: {example})")
    return state


def resolve_config(config: str | GuidedUNetConfig) -> GuidedUNetConfig:
    if isinstance(config, GuidedUNetConfig):
        return config
    if config not in CONFIGS:
        raise ConversionError(f"unknown config '{config}': use one of {', '.join(CONFIGS)}")
    return CONFIGS[config]


def import_repaint(
    checkpoint: Path,
    name: str,
    config: str | GuidedUNetConfig = "celeba256",
    models_dir: Path = MODELS_DIR,
    overwrite: bool = False,
) -> Path:
    """Convert a RePaint / guided-diffusion checkpoint into ``models_dir/name/`` and register it as
    ``models_dir/name.toml``, so that ``--model name`` uses it.

    The folder is a diffusers pipeline folder: ``unet/`` (``UNet2DModel`` config + safetensors weights,
    float32), ``scheduler/`` (``DDPMScheduler`` config of the training schedule), ``model_index.json`` and a
    model card ``README.md`` (licence, source file and its sha256, the config, the learned-variance note).
    Returns the folder. Raises ConversionError (one line) for a missing file, a file that is no
    guided-diffusion state dict, a shape mismatch (naming the first bad key), an unknown config or a name
    already taken (unless ``overwrite``).
    """
    from diffusers import DDPMScheduler, UNet2DModel
    from safetensors.torch import save_file

    checkpoint = Path(checkpoint)
    cfg = resolve_config(config)
    if not NAME_PATTERN.fullmatch(name):
        raise ConversionError(f"model name '{name}' must be letters, digits, '.', '_' or '-' (at most 64)")
    folder, card = models_dir / name, models_dir / f"{name}.toml"
    if not overwrite and (folder.exists() or card.exists()):
        raise ConversionError(f"model '{name}' already exists in {models_dir}: choose another --name, or pass --force "
                              "to replace it")
    state = read_checkpoint(checkpoint)
    converted = convert_state_dict(state, cfg)
    strict_check(converted, cfg)

    models_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=models_dir))
    try:
        with torch.device("meta"):
            UNet2DModel(**cfg.unet_config()).save_config(staging / "unet")
        save_file(converted, staging / "unet" / WEIGHTS_FILE, metadata={"format": "pt"})
        DDPMScheduler(**cfg.scheduler_config()).save_pretrained(staging / "scheduler")
        (staging / "model_index.json").write_text(json.dumps({
            "_class_name": "DDPMPipeline", "unet": ["diffusers", "UNet2DModel"],
            "scheduler": ["diffusers", "DDPMScheduler"],
        }, indent=2) + "\n")
        source = {"file": checkpoint.name, "sha256": sha256_file(checkpoint), "bytes": checkpoint.stat().st_size}
        parameters = sum(t.numel() for t in converted.values())
        (staging / "README.md").write_text(model_card(name, cfg, source, parameters))
        if folder.exists():
            shutil.rmtree(folder)
        staging.rename(folder)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    write_atomic(card, card_toml(name, cfg))
    return folder


def card_toml(name: str, config: GuidedUNetConfig) -> str:
    """The ``models/<name>.toml`` that makes ``--model name`` find the converted folder."""
    import tomli_w

    card = {"name": name, "local_dir": name, "resolution": config.image_size, "licence": LICENCE,
            "domain": config.domain, "description": config.description}
    header = (f"# Converted by `aaas-profile models import-repaint` from RePaint's guided-diffusion checkpoint; "
              f"see {name}/README.md.\n")
    return header + tomli_w.dumps(card)


def model_card(name: str, config: GuidedUNetConfig, source: dict, parameters: int) -> str:
    """The README.md model card of a converted folder."""
    fields = {k: v for k, v in asdict(config).items() if k not in ("description", "domain")}
    config_lines = "\n".join(f"| {k} | {v} |" for k, v in fields.items())
    reduced = ("\n**This is a REDUCED test variant (fewer channels, smaller images), not RePaint's released "
               "network; its weights mean nothing.**\n" if config.reduced else "")
    return f"""---
license: {LICENCE}
library_name: diffusers
tags: [repaint, guided-diffusion, inpainting, converted]
---

# {name}

{config.description}, converted to a diffusers `UNet2DModel` by aaas-profile {__version__}
(`aaas_profile.repaint_import`, {datetime.now(UTC).strftime("%Y-%m-%d")}).
{reduced}
## Source

| | |
|---|---|
| checkpoint file | `{source["file"]}` |
| sha256 | `{source["sha256"]}` |
| size | {source["bytes"]:,} bytes |
| trained by | Lugmayr et al., RePaint (CVPR 2022), with OpenAI's guided-diffusion code |
| parameters | {parameters:,} |

Licence: RePaint's repository, which distributes these checkpoints, is CC BY-NC-SA 4.0 (research use only; for
commercial use contact Huawei). The conversion changes nothing about that.

## Config used (`{config.name}`)

| field | value |
|---|---|
{config_lines}

In guided-diffusion's terms: `use_scale_shift_norm`, `resblock_updown`, legacy attention order, no class
conditioning, dropout 0; linear β from {config.beta_start} to {config.beta_end} over {config.diffusion_steps}
steps; ε prediction. The diffusers config is in `unet/config.json`, the schedule in
`scheduler/scheduler_config.json`. The forward pass equals guided-diffusion's on the same weights to float
rounding (attention scales q·k once by 1/√d instead of q and k by d^(−1/4) each).

## Learned variance

The UNet outputs {config.out_channels} channels: ε (channels 0–2) and v (3–5), the interpolation between
log β_t and log β̃_t that RePaint samples with (σ² = exp(v' log β_t + (1 − v') log β̃_t), v' = (v + 1) / 2).
aaas-profile's `repaint` sampler samples with this v, as RePaint's own code does (`docs/samplers.md`); the
other samplers (`repaint-diffusers`, `ddim`, `dpm-solver`) use **ε only** (diffusers' `RePaintScheduler` draws
its noise from `--eta` and the fixed posterior variance β̃_t), so their curves are this network's ε under
another sampler, not a rerun of RePaint's.

## Use

    aaas-profile sweep --model {name} --steps 25,50,100,250

`models/{name}.toml` registers this folder under the name `{name}`.
"""
