"""Named models and local diffusers folders, resolved to a ``UNet2DModel`` and its noise schedule.

A model is named by a card in ``models/<name>.toml`` (hub id, optional local folder, resolution, licence)
or given as a path to any diffusers folder. Two folder layouts are read, the ones diffusers itself writes:

* a pipeline folder: ``model_index.json``, ``unet/`` (config + weights), ``scheduler/scheduler_config.json``;
* a flat UNet folder: ``config.json`` of a ``UNet2DModel`` with its weights, and ``scheduler_config.json``
  beside it (the layout of ``google/ddpm-ema-*`` on the Hugging Face hub).

Weights come from the card's local folder, else the Hugging Face cache, else (unless ``HF_HUB_OFFLINE`` is
set) a download from the hub. When none works the user gets one line saying how to get them. Nothing here
mocks a model: tests build a small ``UNet2DModel``, save it and load it through these same functions.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from aaas_profile import options, stored
from aaas_profile.errors import UserError

MODELS_DIR = Path(__file__).resolve().parents[1] / "models"

# Training noise schedule of Ho et al. (2020), the one google/ddpm-* models use, for folders without one.
DEFAULT_SCHEDULE = {
    "num_train_timesteps": 1000,
    "beta_start": 0.0001,
    "beta_end": 0.02,
    "beta_schedule": "linear",
    "clip_sample": True,
}
MODEL_ADVICE = "save the model folder again (train, models import-repaint or diffusers' save_pretrained)"
WEIGHT_FILES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")


class ModelError(UserError, RuntimeError):
    """A model that cannot be found or loaded; the message is one line meant for the user."""


@dataclass(frozen=True)
class ModelCard:
    """What ``models/<name>.toml`` says about a named model."""

    name: str
    resolution: int
    licence: str
    description: str = ""
    domain: str = ""
    hub_id: str | None = None
    local_dir: Path | None = None  # relative paths in the TOML are relative to models/
    # What `--dtype auto` runs this model in when it should not follow the hardware (precision.choose): set
    # where bf16 was measured to move the model's quality (README, "Precision").
    auto_dtype: str | None = None

    @classmethod
    def from_toml(cls, path: Path) -> ModelCard:
        try:
            raw = stored.read_toml(path, stored.ModelCardFile, "fix the model card or remove it")
        except stored.StoredFileError as err:
            raise ModelError(str(err)) from None
        local = raw.get("local_dir")
        return cls(
            name=raw.get("name", path.stem),
            resolution=int(raw["resolution"]),
            licence=raw.get("licence", "unknown"),
            description=raw.get("description", ""),
            domain=raw.get("domain", ""),
            hub_id=raw.get("hub_id"),
            local_dir=(path.parent / local).resolve() if local else None,
            auto_dtype=raw.get("auto_dtype"),
        )

    def how_to_get(self) -> str:
        """One line telling the user how to put this model's weights where ``find_weights`` looks."""
        if self.hub_id:
            return (
                f"weights for model '{self.name}' not found locally and the hub cannot be reached: on a machine "
                f"with internet run `hf download {self.hub_id}` (huggingface_hub's CLI) and copy its cache folder "
                f"(~/.cache/huggingface/hub/models--{self.hub_id.replace('/', '--')}) to this machine's "
                f"$HF_HOME/hub, or pass --model PATH to a diffusers folder"
            )
        return f"weights for model '{self.name}' not found: expected a diffusers folder at {self.local_dir}"


def cards(models_dir: Path = MODELS_DIR) -> dict[str, ModelCard]:
    """All model cards, by name, sorted."""
    found = {}
    for path in sorted(models_dir.glob("*.toml")):
        card = ModelCard.from_toml(path)
        found[card.name] = card
    return found


def _hub_snapshot(hub_id: str, download: bool) -> Path | None:
    """The cached snapshot folder of ``hub_id``; downloaded if ``download`` and the hub answers."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    patterns = ["*.json", *WEIGHT_FILES]
    try:
        path = Path(snapshot_download(hub_id, local_files_only=True, allow_patterns=patterns))
    except LocalEntryNotFoundError:
        if not download:
            return None
        try:
            path = Path(snapshot_download(hub_id, allow_patterns=patterns))
        except Exception:  # no network, unknown repo, auth: all mean "not available here"
            return None
    return path if _unet_dir(path, strict=False) is not None else None


def find_weights(card: ModelCard, download: bool | None = None) -> Path | None:
    """The folder holding ``card``'s weights, or None. Looks at the local folder, then the HF cache, then
    (when ``download``, by default unless ``HF_HUB_OFFLINE`` is set) the hub."""
    if card.local_dir is not None and _unet_dir(card.local_dir, strict=False) is not None:
        return card.local_dir
    if card.hub_id:
        if download is None:
            download = not options.env_flag(os.environ, "HF_HUB_OFFLINE")
        return _hub_snapshot(card.hub_id, download)
    return None


def _unet_dir(folder: Path, strict: bool = True) -> Path | None:
    """The folder inside ``folder`` that holds the UNet's config and weights."""
    for candidate in (folder / "unet", folder):
        config = candidate / "config.json"
        if not config.is_file():
            continue
        try:
            class_name = stored.read_json(config, stored.UNetConfigFile, MODEL_ADVICE).get("_class_name")
        except stored.StoredFileError as err:
            raise ModelError(str(err)) from None
        if class_name != "UNet2DModel":
            if strict:
                raise ModelError(
                    f"{config}: a {class_name}, but aaas-profile samples pixel-space UNet2DModel diffusion models"
                )
            return None
        if any((candidate / name).is_file() for name in WEIGHT_FILES):
            return candidate
        if strict:
            raise ModelError(f"{candidate}: config.json but no weights ({' or '.join(WEIGHT_FILES)})")
        return None
    if strict:
        raise ModelError(
            f"{folder}: not a diffusers model folder (expected unet/config.json or config.json of a UNet2DModel)"
        )
    return None


def _scheduler_config(folder: Path) -> tuple[dict, str]:
    """The training noise schedule saved with the model, and where it came from."""
    for path in (folder / "scheduler" / "scheduler_config.json", folder / "scheduler_config.json"):
        if path.is_file():
            try:
                raw = stored.read_json(path, stored.SchedulerConfigFile, MODEL_ADVICE)
            except stored.StoredFileError as err:
                raise ModelError(str(err)) from None
            # variance_type: the fixed variance RePaint's own sampler uses (samplers.RePaintSampler)
            keep = {k: v for k, v in raw.items() if k in DEFAULT_SCHEDULE or k in ("trained_betas", "variance_type")}
            return {**DEFAULT_SCHEDULE, **keep}, str(path.relative_to(folder))
    return dict(DEFAULT_SCHEDULE), "default (Ho et al. 2020 linear schedule; the folder has none)"


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class LoadedModel:
    """A UNet ready to sample, with what a run folder records about where it came from."""

    name: str
    unet: torch.nn.Module
    scheduler_config: dict
    schedule_source: str
    folder: Path
    source: str
    weights_sha256: str
    resolution: int
    licence: str

    @property
    def learned_variance(self) -> bool:
        """True for models that output epsilon and a variance interpolation (guided-diffusion's learn_sigma);
        the samplers use the epsilon half, see aaas_profile/samplers/."""
        return self.unet.config.out_channels == 2 * self.unet.config.in_channels

    def describe(self) -> dict:
        return {
            "name": self.name,
            "source": self.source,
            "folder": str(self.folder),
            "weights_sha256": self.weights_sha256,
            "resolution": self.resolution,
            "licence": self.licence,
            "scheduler": self.scheduler_config,
            "scheduler_source": self.schedule_source,
            "parameters": sum(p.numel() for p in self.unet.parameters()),
            "learned_variance": self.learned_variance,
        }


def resolve(model: str) -> tuple[Path, ModelCard | None]:
    """The folder of a model name or path. Raises ModelError (one line) for an unknown name or absent
    weights."""
    path = Path(model).expanduser()
    if path.exists():
        _unet_dir(path)
        return path.resolve(), None
    known = cards()
    if model not in known:
        if os.sep in model or model.startswith("."):
            raise ModelError(f"model folder {model} does not exist")
        names = ", ".join(known) or "none"
        raise ModelError(f"unknown model '{model}': use a name from `aaas-profile models` ({names}) or a folder")
    card = known[model]
    folder = find_weights(card)
    if folder is None:
        raise ModelError(card.how_to_get())
    return folder, card


def load(model: str, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
         channels_last: bool = False) -> LoadedModel:
    """Load a named model or a diffusers folder as an eval-mode ``UNet2DModel`` on ``device``, its weights in
    ``dtype`` (converted while loading, so no fp32 copy is cast afterwards) and, with ``channels_last``, in
    channels-last memory layout (faster convolutions on CPUs: precision.channels_last)."""
    from diffusers import UNet2DModel
    from diffusers.utils.import_utils import is_accelerate_available

    folder, card = resolve(model)
    unet_dir = _unet_dir(folder)
    weights = next(unet_dir / name for name in WEIGHT_FILES if (unet_dir / name).is_file())
    try:
        # low_cpu_mem_usage needs accelerate (an optional extra); asking for it without accelerate makes
        # diffusers print install advice on every load.
        unet = UNet2DModel.from_pretrained(unet_dir, torch_dtype=dtype, low_cpu_mem_usage=is_accelerate_available())
    except (OSError, ValueError, RuntimeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelError(f"{unet_dir}: cannot load the UNet ({first})") from None
    if unet.config.out_channels not in (unet.config.in_channels, 2 * unet.config.in_channels):
        raise ModelError(
            f"{unet_dir}: the UNet predicts {unet.config.out_channels} channels for {unet.config.in_channels} in; "
            "supported are epsilon (same count) and epsilon + learned variance (twice as many)"
        )
    schedule, schedule_source = _scheduler_config(folder)
    size = unet.config.sample_size
    resolution = int(size if isinstance(size, int) else size[0])
    if card is not None and card.hub_id and folder != card.local_dir:
        source = f"hub:{card.hub_id}@{folder.name}"  # HF cache snapshot folders are named by commit
    else:
        source = f"local:{folder}"
    return LoadedModel(
        name=card.name if card else folder.name,
        unet=unet.to(device, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        .eval().requires_grad_(False),
        scheduler_config=schedule,
        schedule_source=schedule_source,
        folder=folder,
        source=source,
        weights_sha256=sha256_file(weights),
        resolution=resolution,
        licence=card.licence if card else _folder_licence(folder),
    )


def cast(unet: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """``unet`` converted to ``dtype`` in place, except modules the model class keeps in float32
    (``_keep_in_fp32_modules``), as ``from_pretrained(torch_dtype=...)`` converts them. Prefer loading with the
    dtype; this is for models built in memory. (diffusers' own ``ModelMixin.to(dtype)`` warns that modules
    "should be kept in float32" even when the list is empty, as it is for ``UNet2DModel``.)"""
    keep = getattr(unet, "_keep_in_fp32_modules", None) or []
    torch.nn.Module.to(unet, dtype)
    for name, module in unet.named_modules():
        if any(part in keep for part in name.split(".")):
            torch.nn.Module.to(module, torch.float32)
    return unet


def _folder_licence(folder: Path) -> str:
    """A local folder's licence, from a model card README's front matter when there is one."""
    readme = folder / "README.md"
    if readme.is_file():
        for line in readme.read_text(errors="replace").splitlines()[:30]:
            if line.lower().startswith("license:"):
                return line.split(":", 1)[1].strip()
    return "unknown"
