"""The sweep's side of a run folder: its identity (default folder, resuming the same experiment, the content of
its images and masks), config.toml, and the manifest's record of each invocation.
"""

from __future__ import annotations

import copy
import platform
import tomllib
import uuid
from dataclasses import fields, replace
from datetime import UTC, datetime
from pathlib import Path

from aaas_profile import images as images_mod
from aaas_profile import masks as masks_mod
from aaas_profile import options, precision, runs, stored
from aaas_profile import samplers as samplers_mod
from aaas_profile.atomic import write_atomic
from aaas_profile.errors import UserError, check_writable
from aaas_profile.models import LoadedModel
from aaas_profile.sweep.cells import Prepared
from aaas_profile.sweep.config import DEFAULT_RESPACING, KEY_NAMES, SweepConfig

CONFIG_ADVICE = "restore it, or sweep into a new --out (a run folder's config.toml is written only by the sweep)"


def read_run_config(path: Path) -> dict:
    """A run folder's config.toml, checked (``stored.RunConfigFile``: keys and types; ``SweepConfig.validate``:
    values, in the ranges of ``options``), as the dict it holds. Raises RunError (one line naming the file and the
    key) otherwise.

    Read and checked once per version of the file: ``prepare`` asks for it several times (the dtype to keep, the
    sampler names of an old folder, the experiment's identity, the settings a resume must keep), and each later
    call gets a copy of the first one's result while the file's inode, size and mtime are unchanged."""
    try:
        stat = Path(path).stat()
        version = (str(Path(path).resolve()), stat.st_ino, stat.st_size, stat.st_mtime_ns)
    except OSError:
        version = None  # stored.read_toml says what is wrong, in one line
    if version is not None and version in _RUN_CONFIGS:
        return copy.deepcopy(_RUN_CONFIGS[version])
    before = stored.read_toml(path, stored.RunConfigFile, CONFIG_ADVICE)
    try:
        options.check_all("sweep", before, keyed=True)  # named as the file names them, before the flags' check
        SweepConfig.from_sources(**before)
    except UserError as err:  # SweepError, or a stage's own (an unknown metric: MetricError)
        raise runs.RunError(f"{path}: {err}; {CONFIG_ADVICE}") from None
    if version is not None:
        _RUN_CONFIGS.clear()  # one folder's at a time: an invocation reads one run folder
        _RUN_CONFIGS[version] = copy.deepcopy(before)
    return before


_RUN_CONFIGS: dict[tuple, dict] = {}  # read_run_config's checked result, by the file's version


def _legacy_samplers(out: Path, config: SweepConfig, warnings: list[str]) -> SweepConfig:
    """``config`` for resuming ``out``: a run folder swept before the respacing key (``runs.is_legacy_config``)
    meant diffusers' RePaint by "repaint", on the steps walk, so with the default respacing its "repaint" is
    resumed as "repaint-diffusers" (the same cells, never the authors' RePaint), with a warning line."""
    path = out / "config.toml"
    if config.respacing != [DEFAULT_RESPACING] or not path.is_file():
        return config
    before = read_run_config(path)
    renamed = [runs.LEGACY_NAMES.get(name, name) for name in config.samplers]
    if not runs.is_legacy_config(before) or renamed == config.samplers:
        return config
    warnings.append(f"{out} was swept before the authors' RePaint existed: its 'repaint' is diffusers' RePaint, "
                    "resumed as repaint-diffusers on the steps walk; use a new --out for the authors' RePaint")
    return replace(config, samplers=list(dict.fromkeys(renamed)))


def _check_writable_run(prepared: Prepared) -> None:
    """Raise UserError unless every folder the sweep writes in takes files (check first, write last)."""
    run_dir = prepared.run_dir
    for folder in (run_dir, runs.scores_dir(run_dir), *([run_dir / "images"] if prepared.config.save_images else [])):
        check_writable(folder, "--out")


# SweepConfig fields that say how a sweep runs, not which cells it makes or what their numbers mean: the only
# ones the default folder's digest leaves out. Every other field (and any added later) names the experiment.
HOW_IT_RUNS = ("batch_size", "device", "save_images", "out")


def experiment_identity(config: SweepConfig, model_name: str) -> dict:
    """What defines a sweep's cells and their numbers: every ``SweepConfig`` field but ``HOW_IT_RUNS``, the
    model by its resolved name and the data folder by its absolute path (however they were written)."""
    identity = {KEY_NAMES.get(f.name, f.name): getattr(config, f.name) for f in fields(config)
                if f.name not in HOW_IT_RUNS}
    identity.update(model=model_name, data=str(Path(config.data).resolve()))
    return identity


def default_out(config: SweepConfig, model: LoadedModel) -> Path:
    """``results/<model>-<data folder>-<8 hex>``: the hex is a digest of ``experiment_identity`` (model, data,
    masks, step counts, seeds, samplers, jumps, eta, dtype, metrics, limit, …), so the same command resumes the
    same folder and a different experiment gets its own. To add step counts, seeds, masks or images to a run,
    name its folder with ``--out``."""
    import hashlib

    identity = experiment_identity(config, model.name)
    digest = hashlib.sha256(repr(sorted(identity.items())).encode()).hexdigest()[:8]
    out = Path("results") / _slug(f"{model.name}-{Path(config.data).resolve().name}-{digest}")
    legacy = _legacy_default_out(config, model.name)
    if not out.exists() and _same_experiment(legacy, config):
        return legacy  # a folder named by the older, narrower digest that holds exactly this experiment
    return out


def _legacy_default_out(config: SweepConfig, model_name: str) -> Path:
    """The default folder as older versions named it: a digest of the model, data, eta, dtype and metrics only."""
    import hashlib

    identity = {"model": model_name, "data": str(Path(config.data).resolve()),
                **{k: getattr(config, k) for k in ("eta", "dtype", "metrics")}}
    digest = hashlib.sha256(repr(sorted(identity.items())).encode()).hexdigest()[:8]
    return Path("results") / _slug(f"{model_name}-{Path(config.data).resolve().name}-{digest}")


def _same_experiment(folder: Path, config: SweepConfig) -> bool:
    """Whether ``folder``'s config.toml records the same experiment as ``config`` (every field but
    ``HOW_IT_RUNS``; the model is compared by what was written)."""
    try:
        before = read_run_config(folder / "config.toml")
    except (OSError, UserError):
        return False  # not this experiment's folder: the default name makes a new one
    now = tomllib.loads(config.to_toml())
    keys = {KEY_NAMES.get(f.name, f.name) for f in fields(config) if f.name not in HOW_IT_RUNS} - {"data"}
    return all(before.get(k) == now.get(k) for k in keys) and Path(before.get("data", "")).resolve() == Path(
        config.data).resolve()


# Settings that change what a cell's numbers mean: a run folder never mixes two values of these.
FIXED = ("data", "eta", "dtype", "metrics")


def _check_resume(out: Path, config: SweepConfig, model: LoadedModel) -> Path | None:
    """Refuse to add cells to a run folder made with different fixed settings or weights. Returns the data
    folder the run folder records when ``config.data`` is another path (for ``_check_content`` to compare by
    content), else None."""
    if out.exists() and not out.is_dir():
        raise runs.RunError(f"{out} exists and is not a folder; choose another --out")
    config_path = out / "config.toml"
    if not out.exists():
        check_writable(out, "--out")  # the folder will be made: fail now, not after loading everything
        return
    if not config_path.exists():
        foreign = sorted(p.name for p in out.iterdir() if not p.name.startswith(".") and p.name != "scores")
        if foreign:
            raise runs.RunError(f"{out} holds files ({', '.join(foreign[:3])}{', …' if len(foreign) > 3 else ''}) "
                                "but is not a run folder (no config.toml); choose an empty or new --out")
        return
    before = read_run_config(config_path)
    changed = [k for k in FIXED if k != "data" and before.get(k) != getattr(config, k)]
    manifest = runs.Manifest(out / "manifest.json").read()
    moved = None
    if not same_data(before["data"], config.data):
        if manifest.get("content") is None:
            changed.insert(0, "data")
        else:  # the images it holds decide (_check_content): a moved or copied folder is the same data
            moved = Path(before["data"])
    weights = manifest.get("model", {}).get("weights_sha256")
    if weights and weights != model.weights_sha256:
        changed.append("model weights")
    if changed:
        raise runs.RunError(
            f"{out} was swept with other {', '.join(changed)}; resume with the same settings or use a new --out"
        )
    return moved


def same_data(recorded: str, given: str) -> bool:
    """Whether a run folder's data folder (``recorded``, absolute since the sweep resolves it; a relative one
    from an older folder is read from the current directory) is the folder the user gave now, however either is
    written (relative, absolute, through a symbolic link)."""
    return Path(recorded).expanduser().resolve() == Path(given).expanduser().resolve()


def content_of(prepared: Prepared) -> dict:
    """What the sweep's images and mask files are: manifest.json's ``content`` record."""
    return {"hash": stored.CONTENT_HASH, "images": {image.image_id: image.sha256 for image in prepared.images},
            "masks": {spec.name: spec.sha256 for spec in prepared.masks if spec.sha256}}


def _check_content(out: Path, data: Path, images: list[images_mod.Image], masks: list[masks_mod.MaskSpec],
                   warnings: list[str], moved: Path | None = None) -> None:
    """Refuse to add cells to ``out`` when an image or mask file already swept there under a name now holds
    other content (its cells would mix two images in one curve). A folder from before content hashes has
    nothing to compare with: the hashes of the files now are recorded, with a warning line.

    ``moved``: the data folder ``out`` recorded, when ``data`` is another path. It is the same data when every
    image swept there is in ``data`` under its name with its content (the folder was moved or copied); else
    the run folder was swept with other data."""
    manifest = runs.Manifest(out / "manifest.json")
    if not manifest.path.exists():
        return
    recorded = manifest.read().get("content")
    if recorded is None:
        if manifest.read().get("images"):
            warnings.append(f"{out} was swept before run folders recorded what their images and masks hold: the "
                            "content of the files now is recorded from this sweep on, a change made before "
                            "cannot be seen")
        return
    if moved is not None:
        absent = [name for name, digest in recorded["images"].items()
                  if not (data / name).is_file() or images_mod.file_sha256(data / name) != digest]
        if absent:
            raise runs.RunError(f"{out} was swept with other data ({moved}; {data / absent[0]} is not the image "
                                "swept there); give that --data, or use a new --out")
        warnings.append(f"{out} was swept with --data {moved}; {data} holds the same images: resumed, recorded "
                        "as the data folder from now on")
    now = [(data / image.image_id, "image", recorded["images"].get(image.image_id), image.sha256)
           for image in images]
    now += [(spec.path, "mask", recorded["masks"].get(spec.name), spec.sha256) for spec in masks if spec.sha256]
    for path, what, before, after in now:
        if before is not None and before != after:
            raise runs.RunError(
                f"{path}: this {what} holds other content than when {out} was swept (sha256 {before[:12]}… then, "
                f"{after[:12]}… now); put the original back, or give the new {what} another file name, or sweep "
                "into a new --out")


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text)


def _write_run_files(prepared: Prepared, done_before: int) -> str:
    """Write config.toml and add this invocation to manifest.json; returns the invocation's id."""
    run_dir = prepared.run_dir
    config_path, text = run_dir / "config.toml", prepared.config.to_toml()
    manifest = runs.Manifest(run_dir / "manifest.json")
    manifest.read()  # checked before anything is written (it was in prepare; another process may have been here)
    if not config_path.exists() or stored.read_text(config_path, CONFIG_ADVICE) != text:
        write_atomic(config_path, text)
    invocation = uuid.uuid4().hex[:12]
    with manifest.locked():
        _record_invocation(prepared, manifest, done_before, invocation)
    return invocation


def _record_invocation(prepared: Prepared, manifest: runs.Manifest, done_before: int, invocation: str) -> None:
    run_dir = prepared.run_dir
    data = manifest.read()
    data.update({
        "run_id": run_dir.name,
        "model": prepared.model.describe(),
        "environment": runs.environment(prepared.device),
        "dtype": prepared.config.dtype,
        "dtype_reason": prepared.dtype_reason,
        "channels_last": precision.channels_last(prepared.device.type, prepared.config.dtype),
        "cpu": precision.cpu_capability().describe(),
        "seeds": {
            "cell_seeds": prepared.config.seeds,
            "mask_seed": 'masks.mask_seed("mask", mask, image_id, seed)',
            "noise_seed": 'masks.mask_seed("noise", mask, image_id, seed), for every sampler',
            "generators": "samplers.make_generators(noise seeds, unet device): one per cell",
            "torch_generator_device": str(prepared.device),
        },
        "images": [image.image_id for image in prepared.images],
        "masks": [spec.name for spec in prepared.masks],
        # what each image and mask file is, by name: a resume refuses a name whose content changed
        "content": _merged_content(data.get("content"), content_of(prepared)),
        # every sampler this folder was swept with (a folder from before samplers: RePaint's rows only)
        "samplers": {**data.get("samplers", {}), **{name: _describe(sampler)
                                                    for name, sampler in prepared.samplers.items()}},
    })
    data.setdefault("invocations", []).append({
        "id": invocation,
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": _command_line(),
        "shard": str(prepared.shard),
        "samplers": list(prepared.samplers),
        "host": platform.node(),
        "cells_already_done": done_before,
    })
    manifest.write(data)


def _merged_content(before: dict | None, now: dict) -> dict:
    """manifest.json's ``content``: every name ever swept in the folder (a later sweep may use fewer images)."""
    before = before or {"images": {}, "masks": {}}
    return {"hash": now["hash"], "images": {**before["images"], **now["images"]},
            "masks": {**before["masks"], **now["masks"]}}


def _describe(sampler: samplers_mod.Sampler) -> dict:
    """A sampler as manifest.json records it: what its rows hold in the sampler columns."""
    return {"sampler": sampler.name, "sampler_params": samplers_mod.sampler_params_json(sampler),
            "respacing": samplers_mod.respacing_label(sampler.respacing), "jump_length": sampler.jump_length,
            "jump_n_sample": sampler.jump_n_sample}


def _finish_manifest(prepared: Prepared, invocation: str, ran: int, wall: float) -> None:
    manifest = runs.Manifest(prepared.run_dir / "manifest.json")
    with manifest.locked():
        data = manifest.read()
        for entry in reversed(data["invocations"]):
            if entry["id"] == invocation:
                entry.update({
                    "finished": datetime.now(UTC).isoformat(timespec="seconds"),
                    "cells_run": ran,
                    "wall_s": round(wall, 3),
                })
                break
        manifest.write(data)


def _command_line() -> str:
    import shlex
    import sys

    return " ".join(shlex.quote(a) for a in sys.argv)
